//! The authz listener: answers a fronting proxy's "may this request pass?"
//! (nginx `auth_request`, ingress-nginx `auth-url`, Traefik `forwardAuth`,
//! Envoy `ext_authz`) with the inbound guard's own decision, and forwards
//! nothing. Each request runs three phases: original (the request asked
//! about, [`original::read`]) → decide (the shared [`Guard`], as inbound) →
//! answer (200 with the identity headers, or the inbound guard's refusal).
//!
//! The listener trusts the headers that name the original request, because
//! only the fronting proxy can reach it: it binds loopback by default. It
//! cannot strip what the app will read, so every naming must agree.

pub mod grpc;
pub mod original;

use crate::body::{full, Body};
use crate::client::HttpClient;
use crate::config::AuthzConfig;
use crate::error::Failure;
use crate::guard::decide::{Decision, Verdict};
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::respond::{complete, Exchange};
use crate::server::{Downstream, Handler};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use std::sync::Arc;
use std::time::Instant;

/// Asks Envoy's HTTP-mode `ext_authz` to remove these headers from the
/// request it forwards: the identity headers this answer does not set, so a
/// caller's own cannot reach the app.
pub static HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

pub struct Authz {
    guard: Guard,
    /// The `claims_to_headers` header names, in file order.
    identity: Vec<HeaderName>,
    /// [`HEADERS_TO_REMOVE`] for an allow without identity: every identity
    /// header (built once; `None` when there are none).
    remove_all: Option<HeaderValue>,
}

impl Authz {
    pub fn new(config: &AuthzConfig, client: HttpClient, metrics: Arc<Metrics>) -> Arc<Authz> {
        let identity: Vec<HeaderName> = config
            .guard
            .forward
            .claims_to_headers
            .iter()
            .map(|(_, header)| header.clone())
            .collect();
        Arc::new(Authz {
            guard: Guard::new(&config.guard, client, metrics, "authz"),
            remove_all: names(identity.iter()),
            identity,
        })
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Phases original and decide: the guard's decision on the request a
    /// fronting proxy asks about, read from `req` (which becomes it).
    pub async fn decide<B>(&self, req: &mut Request<B>) -> Decision {
        let read = original::asked(req.method(), req.uri(), req.headers())
            .and_then(|asked| original::read(&asked, req.headers(), &self.identity));
        match read {
            Ok(original) => {
                let connection = original::into_original(req, original);
                self.guard.decide(req, connection).await
            }
            Err(unread) => Decision::refused(unread.into()),
        }
    }

    /// Phase answer: 200 with the identity for an allow (and for audit mode's
    /// would-be refusals, without one); the inbound guard's refusal otherwise.
    fn answer(&self, verdict: &Verdict) -> Result<Response<Body>, Failure> {
        if let Some(failure) = verdict.failure() {
            return Err(failure);
        }
        let set = match verdict {
            Verdict::Allow(allowed) => allowed.identity().map_or(&[][..], |t| &t.identity),
            _ => &[],
        };
        let mut resp = Response::new(full(""));
        let headers = resp.headers_mut();
        for (name, value) in set {
            headers.insert(name.clone(), value.clone());
        }
        let unset = match set.len() {
            0 => self.remove_all.clone(),
            n if n == self.identity.len() => None,
            // A token without some of the claims: rare, named per answer.
            _ => names(
                self.identity
                    .iter()
                    .filter(|h| !set.iter().any(|(n, _)| n == *h)),
            ),
        };
        if let Some(unset) = unset {
            headers.insert(HEADERS_TO_REMOVE.clone(), unset);
        }
        Ok(resp)
    }

    /// Phase complete, for either face of the listener: the decision
    /// recorded under the rule that took it, answered, and logged as the
    /// original request `req`.
    pub fn complete<B>(
        &self,
        req: &Request<B>,
        decision: Decision,
        started: Instant,
    ) -> Response<Body> {
        let exchange = Exchange::answered(req, started);
        let counters = self.guard.counters(decision.rule);
        self.guard.record(&decision.verdict, &counters.route);
        let result = self.answer(&decision.verdict);
        let reason = decision.verdict.reason();
        complete(counters, result, exchange, reason, &self.guard.duration)
    }
}

/// The header names as one comma-separated value; `None` for none.
fn names<'a>(names: impl Iterator<Item = &'a HeaderName>) -> Option<HeaderValue> {
    let joined = names.map(HeaderName::as_str).collect::<Vec<_>>().join(",");
    HeaderValue::from_str(&joined)
        .ok()
        .filter(|v| !v.is_empty())
}

impl Handler for Authz {
    async fn handle(self: Arc<Self>, mut req: Request<Incoming>, _: Downstream) -> Response<Body> {
        let started = Instant::now();
        let decision = self.decide(&mut req).await;
        self.complete(&req, decision, started)
    }
}
