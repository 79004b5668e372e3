//! The inbound guard. Each request runs three phases: decide (the shared,
//! I/O-free [`decide::Policy`], with the token verified here through the cache
//! and the pure verifier) → forward (identity headers set, the canonical Host)
//! → complete (one point records every outcome).

pub mod bearer;
pub mod cache;
pub mod claims;
pub mod decide;
pub mod jwks;
pub mod keys;
pub mod policy;
pub mod reject;
pub mod shape;
pub mod verify;

use crate::body::{streamed, Body};
use crate::client::HttpClient;
use crate::config::{Access, InboundConfig};
use crate::error::Failure;
use crate::metrics::{Metrics, RouteCounters};
use crate::respond::{complete, Exchange};
use crate::server::Downstream;
use crate::server::Handler;
use crate::upstream::{Direction, Upstream, UpstreamUrlError};
use bearer::token_text;
use cache::TokenCache;
use decide::{Allowed, Decision, Policy, Step, Verdict};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Request, Response};
use jwks::{unix_now, Jwks};
use keys::KeySnapshot;
use prometheus::{Histogram, IntCounter};
use reject::Reject;
use std::sync::Arc;
use verify::{VerifiedToken, Verifier};

/// Everything the inbound path needs, built once from the config.
pub struct Inbound {
    policy: Policy,
    verifier: Verifier,
    cache: TokenCache,
    jwks: Arc<Jwks>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    keep_authorization: bool,
    duration: Histogram,
    /// Request counters per rule (same order as the rules), and for requests no rule took.
    rule_counters: Vec<RouteCounters>,
    unrouted: RouteCounters,
    /// `allow` decisions, indexed by [`Allowed::index`], resolved once.
    allowed: [IntCounter; 3],
    cache_hits: IntCounter,
    cache_misses: IntCounter,
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
            policy: Policy::new(config),
            verifier: verifier(config),
            cache: TokenCache::new(config.token_cache_entries),
            jwks: Jwks::new(&config.issuers, client, metrics.clone()),
            upstream,
            keep_authorization: config.forward.keep_authorization,
            duration: metrics.duration_for("inbound"),
            rule_counters: config
                .rules
                .iter()
                .map(|r| metrics.route("inbound", &r.name))
                .collect(),
            unrouted: metrics.route("inbound", "none"),
            allowed: Allowed::LABELS
                .map(|label| metrics.auth_decisions.with_label_values(&["allow", label])),
            cache_hits: metrics.verify_cache_hits.clone(),
            cache_misses: metrics.verify_cache_misses.clone(),
            metrics,
        }))
    }

    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    pub fn is_ready(&self) -> bool {
        self.jwks.is_ready()
    }

    /// What keeps the guard from being ready (`/readyz`).
    pub fn not_ready(&self) -> Vec<String> {
        self.jwks.not_ready()
    }

    /// Phase decide: the policy's decision, with a token verified through the
    /// cache. One key snapshot per request serves the readiness gate and
    /// verification: until keys first load nothing is served; after that, keys
    /// past their stale bound fail only their own issuer's tokens (a 503).
    async fn decide(&self, req: &mut Request<Incoming>) -> Decision {
        let keys = self.jwks.snapshot();
        match self.policy.decide(req, keys.is_loaded()) {
            Step::Done(decision) => decision,
            Step::Verify(pending) => {
                let verified = self.verified(pending.token, &keys).await;
                pending.finish(verified)
            }
        }
    }

    /// A verification of `token`: from the cache, else the pure verifier (after one
    /// key refetch if it names an unknown kid or its issuer's keys look stale).
    async fn verified(
        &self,
        token: &[u8],
        keys: &KeySnapshot,
    ) -> Result<Arc<VerifiedToken>, Reject> {
        let now = unix_now();
        if let Some(hit) = self.cache.get(token, keys, now) {
            self.cache_hits.inc();
            return Ok(hit);
        }
        self.cache_misses.inc();
        let text = token_text(token)?;
        let verified = match self.verifier.verify(text, keys, now) {
            Ok(verified) => verified,
            Err(reject) => {
                let refetched = match &reject {
                    Reject::UnknownKid { issuer, kid } => {
                        self.jwks.refresh_for_unknown_kid(*issuer, kid).await
                    }
                    Reject::KeysUnavailable { issuer } => self.jwks.refresh_stale(*issuer).await,
                    _ => false,
                };
                if !refetched {
                    return Err(reject);
                }
                self.verifier
                    .verify(text, &self.jwks.snapshot(), unix_now())?
            }
        };
        let verified = Arc::new(verified);
        self.cache.insert(token, verified.clone());
        Ok(verified)
    }

    /// Counts the auth decision and logs what was refused.
    fn record(&self, verdict: &Verdict, route: &str) {
        let (outcome, denial) = match verdict {
            Verdict::Allow(allowed) => {
                self.allowed[allowed.index()].inc();
                return;
            }
            Verdict::Refuse(_) => return,
            Verdict::Audit(denial) => ("audit", denial),
            Verdict::Deny(denial) => ("deny", denial),
        };
        self.metrics
            .auth_decisions
            .with_label_values(&[outcome, denial.reason()])
            .inc();
        if outcome == "audit" {
            tracing::info!(route, reason = denial.reason(), detail = %denial, "audit: request would have been rejected");
        } else {
            // debug: rejections are counted in metrics; logging each at info would
            // let any caller flood the logs.
            tracing::debug!(route, reason = denial.reason(), detail = %denial, "request rejected");
        }
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
        let decision = self.decide(&mut req).await;
        let counters = decision
            .rule
            .map_or(&self.unrouted, |i| &self.rule_counters[i]);
        self.record(&decision.verdict, &counters.route);
        let reason = decision.verdict.reason();
        let result = self.forward(req, &from, decision).await;
        complete(counters, result, exchange, reason, &self.duration)
    }
}

/// The verifier for `config`'s issuers, extracting the claims its rules compare.
pub fn verifier(config: &InboundConfig) -> Verifier {
    let rule_claims = config
        .rules
        .iter()
        .filter_map(|r| match &r.access {
            Access::Token(req) => Some(req.claims.iter().map(|(name, _)| name.clone())),
            Access::Anonymous => None,
        })
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Verifier::new(
        &config.issuers,
        config.limits.max_token_bytes,
        config.forward.claims_to_headers.clone(),
        rule_claims,
    )
}
