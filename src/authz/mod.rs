//! The authz listener: answers a fronting proxy's "may this request pass?"
//! (nginx `auth_request`, ingress-nginx `auth-url`, Traefik `forwardAuth`,
//! Envoy `ext_authz`) with the inbound guard's own decision, and forwards
//! nothing. Each request runs three phases: original (the request asked
//! about, [`original::read`]) → decide (the shared [`Guard`], as inbound) →
//! answer (200 with the identity headers, or the inbound guard's refusal).
//!
//! The listener trusts the headers that name the original request, because
//! only the fronting proxy can reach it: it binds loopback by default.

pub mod grpc;
pub mod original;

use crate::body::{full, Body};
use crate::client::HttpClient;
use crate::config::AuthzConfig;
use crate::error::{Failure, ProxyError};
use crate::inbound::decide::{Decision, Verdict};
use crate::inbound::guard::Guard;
use crate::inbound::verify::VerifiedToken;
use crate::metrics::Metrics;
use crate::respond::{complete, Exchange, Protocol};
use crate::server::{Downstream, Handler};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use original::Unread;
use std::sync::Arc;

/// Asks Envoy's HTTP-mode `ext_authz` to remove these headers from the
/// request it forwards: the identity headers this answer does not set, so a
/// caller's own cannot reach the app.
pub static HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

pub struct Authz {
    guard: Guard,
    /// The `claims_to_headers` header names, in file order.
    identity: Vec<HeaderName>,
}

impl Authz {
    pub fn new(config: &AuthzConfig, client: HttpClient, metrics: Arc<Metrics>) -> Arc<Authz> {
        Arc::new(Authz {
            guard: Guard::new(&config.guard, client, metrics, "authz"),
            identity: config
                .guard
                .forward
                .claims_to_headers
                .iter()
                .map(|(_, header)| header.clone())
                .collect(),
        })
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Phases original and decide: the guard's decision on the request a
    /// fronting proxy asks about, read from `req` (which becomes it).
    pub async fn decide<B>(&self, req: &mut Request<B>) -> Decision {
        match original::read(req.method(), req.uri(), req.headers(), &self.identity) {
            Ok(asked) => {
                original::into_original(req, asked);
                self.guard.decide(req).await
            }
            Err(Unread::NotHere) => Decision::refused(ProxyError::NotFound(original::PREFIX)),
            Err(Unread::Unknown(why)) => Decision::refused(ProxyError::BadRequest(why)),
        }
    }

    /// The identity headers an allow answers with, and the names of those it
    /// leaves unset (for the proxy to remove from what it forwards).
    pub fn identity<'a>(
        &'a self,
        token: Option<&'a VerifiedToken>,
    ) -> (&'a [(HeaderName, HeaderValue)], Vec<&'a HeaderName>) {
        let set: &[(HeaderName, HeaderValue)] = token.map_or(&[], |t| &t.identity);
        let unset = self
            .identity
            .iter()
            .filter(|name| !set.iter().any(|(n, _)| n == *name))
            .collect();
        (set, unset)
    }

    /// Phase answer: 200 with the identity for an allow (and for audit mode's
    /// would-be refusals, without one); the inbound guard's refusal otherwise.
    fn answer(&self, decision: &Decision) -> Result<Response<Body>, Failure> {
        let token = match &decision.verdict {
            Verdict::Allow(allowed) => allowed.identity(),
            Verdict::Audit(_) => None,
            Verdict::Deny(denial) => return Err(denial.clone().into()),
            Verdict::Refuse(e) => return Err(e.clone().into()),
        };
        let (set, unset) = self.identity(token);
        let mut resp = Response::new(full(""));
        let headers = resp.headers_mut();
        for (name, value) in set {
            headers.insert(name.clone(), value.clone());
        }
        if !unset.is_empty() {
            let names: Vec<&str> = unset.iter().map(|n| n.as_str()).collect();
            if let Ok(value) = HeaderValue::from_str(&names.join(",")) {
                headers.insert(HEADERS_TO_REMOVE.clone(), value);
            }
        }
        Ok(resp)
    }
}

impl Handler for Authz {
    async fn handle(self: Arc<Self>, mut req: Request<Incoming>, _: Downstream) -> Response<Body> {
        let started = std::time::Instant::now();
        let decision = self.decide(&mut req).await;
        // Logged as the original request; answered in plain HTTP whatever it
        // spoke, since the fronting proxy reads the status (a gRPC-style
        // refusal is a 200).
        let exchange = Exchange {
            started,
            protocol: Protocol::Http,
            ..Exchange::of(&req)
        };
        let counters = self.guard.counters(decision.rule);
        self.guard.record(&decision.verdict, &counters.route);
        let reason = decision.verdict.reason();
        let result = self.answer(&decision);
        complete(counters, result, exchange, reason, &self.guard.duration)
    }
}
