//! The inbound guard. Each request runs three phases: decide ([`guard::Guard`]:
//! the shared, I/O-free [`decide::Policy`], with the token verified through
//! the cache and the pure verifier) → forward (identity headers set, the canonical Host)
//! → complete (one point records every outcome).

mod client_cert;

use crate::body::{streamed, Body};
use crate::client::HttpClient;
use crate::config::{CertHeader, InboundConfig};
use crate::error::Failure;
use crate::guard::decide::{Connection, Decision, Verdict};
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::respond::{complete, Exchange};
use crate::server::Downstream;
use crate::server::Handler;
use crate::upstream::{Direction, Upstream, UpstreamUrlError};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Request, Response};
use std::sync::Arc;

/// Everything the inbound path needs, built once from the config.
pub struct Inbound {
    guard: Guard,
    upstream: Upstream,
    keep_authorization: bool,
    /// Where a proxy in front passes the client certificate, if one does.
    cert_header: Option<CertHeader>,
}

impl Inbound {
    pub fn new(
        config: &InboundConfig,
        client: HttpClient,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Inbound>, UpstreamUrlError> {
        let upstream = Upstream::new(
            client.clone(),
            &config.upstream,
            config.upstream_protocol,
            config.timeouts.upstream_response,
            config.timeouts.tunnel_idle,
            Direction::Inbound,
        )?;
        Ok(Arc::new(Inbound {
            guard: Guard::new(&config.guard, client, metrics, "inbound"),
            upstream,
            keep_authorization: config.guard.forward.keep_authorization,
            cert_header: config.client_certificate_header.clone(),
        }))
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Phase forward: the verified identity in, `Authorization` out (unless
    /// kept), the canonical Host, and on to the app.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        from: &Downstream,
        decision: Decision,
    ) -> Result<Response<Body>, Failure> {
        let identity = match &decision.verdict {
            Verdict::Allow(allowed) => allowed.identity(),
            Verdict::Audit(_) => None,
            Verdict::Deny(denial) => return Err(denial.clone().into()),
            Verdict::Refuse(e) => return Err(e.clone().into()),
        };
        if let Some(token) = identity {
            for (name, value) in token.identity.iter() {
                req.headers_mut().insert(name.clone(), value.clone());
            }
        }
        if !self.keep_authorization {
            req.headers_mut().remove(AUTHORIZATION);
        }
        self.upstream
            .forward(req.map(streamed), from, decision.hop, decision.host)
            .await
            .map_err(Failure::from)
    }
}

impl Handler for Inbound {
    async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        from: Downstream,
    ) -> Response<Body> {
        let exchange = Exchange::of(&req);
        // The connection's own certificate; else one a trusted proxy in
        // front passed (its header is removed before forwarding either way).
        let passed = self.cert_header.as_ref().and_then(|h| {
            let passed = client_cert::passed_certificate(h, req.headers(), from.peer.ip());
            req.headers_mut().remove(&h.name);
            passed
        });
        let connection = Connection {
            https: from.tls,
            certificate: from.certificate.as_deref().or(passed.as_deref()),
        };
        let decision = self.guard.decide(&mut req, connection).await;
        let counters = self.guard.counters(decision.rule);
        self.guard.record(&decision.verdict, &counters.route);
        let reason = decision.verdict.reason();
        let result = self.forward(req, &from, decision).await;
        complete(counters, result, exchange, reason, &self.guard.duration)
    }
}
