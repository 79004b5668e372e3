//! Admin listener: `/healthz` (process up), `/readyz` (every issuer's keys
//! loaded, every introspection endpoint answered once and every outbound
//! token fetched; else what is not, and why; and what fails while ready),
//! `/metrics` (Prometheus text).

use crate::authz::Authz;
use crate::body::{full, Body};
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::server::Downstream;
use crate::server::Handler;
use crate::swap::Swap;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub inbound: Option<Arc<Swap<Inbound>>>,
    pub authz: Option<Arc<Swap<Authz>>>,
    pub outbound: Option<Arc<Swap<Outbound>>>,
}

impl Admin {
    /// What is not ready yet, one line each; empty when ready.
    pub fn not_ready(&self) -> Vec<String> {
        let mut waiting = Vec::new();
        if let Some(inbound) = &self.inbound {
            waiting.extend(inbound.current().guard().not_ready());
        }
        if let Some(authz) = &self.authz {
            waiting.extend(authz.current().guard().not_ready());
        }
        if let Some(outbound) = &self.outbound {
            waiting.extend(outbound.current().not_ready());
        }
        waiting
    }

    /// What fails while ready (an introspection endpoint down: cached answers
    /// still serve, so the pod stays in rotation).
    fn degraded(&self) -> Vec<String> {
        let mut failing = Vec::new();
        if let Some(inbound) = &self.inbound {
            failing.extend(inbound.current().guard().degraded());
        }
        if let Some(authz) = &self.authz {
            failing.extend(authz.current().guard().degraded());
        }
        failing
    }
}

impl Handler for Admin {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, _: Downstream) -> Response<Body> {
        let (status, content_type, body) = match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            (&Method::GET, "/readyz") => match self.not_ready() {
                waiting if waiting.is_empty() => {
                    let degraded = self.degraded();
                    let body = match degraded.is_empty() {
                        true => "ready\n".to_string(),
                        false => format!("ready, degraded:\n  {}\n", degraded.join("\n  ")),
                    };
                    (StatusCode::OK, "text/plain", body)
                }
                waiting => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready:\n  {}\n", waiting.join("\n  ")),
                ),
            },
            (&Method::GET, "/metrics") => {
                if let Some(o) = &self.outbound {
                    o.current().update_expiry_gauges();
                }
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                )
            }
            (_, "/healthz" | "/readyz" | "/metrics") => (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".to_string(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_string(),
            ),
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        resp
    }
}
