//! The guard: one request's decision, with its token verified through the
//! cache, and the counters that record it. Shared by the inbound proxy (which
//! forwards what it allows) and the authz listener (which answers for another
//! proxy); each labels its metrics with its own direction.

pub mod bearer;
pub mod bind;
pub mod cache;
pub mod claims;
pub mod decide;
pub mod discovery;
pub mod dpop;
pub mod introspect;
pub mod jwks;
pub mod keys;
pub mod nonce;
pub mod policy;
pub mod reject;
pub mod replay;
pub mod shape;
pub mod verify;

use crate::client::HttpClient;
use crate::clock::unix_now;
use crate::config::{Access, GuardConfig, IssuerId};
use crate::metrics::{Metrics, RouteCounters};
use bearer::token_text;
use cache::TokenCache;
use decide::{Allowed, Connection, Decision, Pending, Policy, Step, Verdict};
use hyper::Request;
use introspect::Introspection;
use jwks::Jwks;
use keys::KeySnapshot;
use nonce::Nonces;
use prometheus::{Histogram, IntCounter};
use reject::Reject;
use replay::ReplayCache;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use verify::{VerifiedToken, Verifier};

/// Everything a decision needs, built once from the config.
pub struct Guard {
    policy: Policy,
    verifier: Verifier,
    cache: TokenCache,
    jwks: Arc<Jwks>,
    introspection: Introspection,
    /// DPoP proofs taken, each once.
    replay: ReplayCache,
    /// Server nonces, when DPoP proofs must carry one (`dpop.require_nonce`).
    nonces: Option<Nonces>,
    metrics: Arc<Metrics>,
    pub duration: Histogram,
    /// Request counters per rule (same order as the rules), and for requests no rule took.
    rule_counters: Vec<RouteCounters>,
    unrouted: RouteCounters,
    /// `allow` decisions, indexed by [`Allowed::index`], resolved once.
    allowed: [IntCounter; 3],
    cache_hits: IntCounter,
    cache_misses: IntCounter,
}

impl Guard {
    /// `direction`: the metrics label of the listener it decides for.
    pub fn new(
        config: &GuardConfig,
        client: HttpClient,
        metrics: Arc<Metrics>,
        direction: &'static str,
    ) -> Guard {
        Guard {
            policy: Policy::new(config),
            verifier: verifier(config),
            cache: TokenCache::new(config.token_cache_entries),
            introspection: Introspection::new(&config.issuers, &client, &metrics),
            jwks: Jwks::new(&config.issuers, client, metrics.clone()),
            replay: ReplayCache::new(
                config.dpop.replay_cache_entries,
                metrics.dpop_replay_entries.clone(),
            ),
            nonces: config
                .dpop
                .require_nonce
                .then(|| Nonces::new(config.dpop.max_age.as_secs())),
            duration: metrics.duration_for(direction),
            rule_counters: config
                .rules
                .iter()
                .map(|r| metrics.route(direction, &r.name))
                .collect(),
            unrouted: metrics.route(direction, "none"),
            allowed: Allowed::LABELS
                .map(|label| metrics.auth_decisions.with_label_values(&["allow", label])),
            cache_hits: metrics.verify_cache_hits.clone(),
            cache_misses: metrics.verify_cache_misses.clone(),
            metrics,
        }
    }

    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    pub fn is_ready(&self) -> bool {
        self.not_ready().is_empty()
    }

    /// Starts the guard's background work (key refreshes, introspection
    /// probes), stopped by `work`.
    pub fn spawn_work(&self, work: &CancellationToken) {
        self.jwks.spawn_refreshers(work.clone());
        self.introspection.spawn_probes(work);
    }

    /// Resolves once the guard's keys have loaded and its introspection
    /// endpoints have answered.
    pub async fn ready(&self) {
        self.jwks.ready().await;
        self.introspection.ready().await;
    }

    /// What keeps the guard from being ready (`/readyz`).
    pub fn not_ready(&self) -> Vec<String> {
        let mut waiting = self.jwks.not_ready();
        waiting.extend(self.introspection.not_ready());
        waiting
    }

    /// What fails while the guard is ready (`/readyz` reports it).
    pub fn degraded(&self) -> Vec<String> {
        self.introspection.degraded()
    }

    /// The policy's decision for `req`, which came over `connection`, with a
    /// token verified through the cache and its binding checked. One key
    /// snapshot per request serves the readiness gate and verification: until
    /// keys first load nothing is served; after that, keys past their stale
    /// bound fail only their own issuer's tokens (a 503).
    pub async fn decide<B>(&self, req: &mut Request<B>, connection: Connection<'_>) -> Decision {
        let keys = self.jwks.snapshot();
        match self.policy.decide(req, connection, self.jwks.loaded(&keys)) {
            Step::Done(decision) => decision,
            Step::Verify(pending) => {
                let verified = match pending.introspector(&self.verifier) {
                    Some(issuer) => self.introspected(issuer, pending.token).await,
                    None => self.verified(pending.token, &keys).await,
                };
                let bound = verified.and_then(|token| self.bound(&pending, token));
                pending.finish(bound)
            }
        }
    }

    /// Phase bind: [`Pending::bind`], then the proof's nonce where one is
    /// required (none, or a stale one: `use_dpop_nonce` with a fresh one),
    /// then the proof's first use taken from the replay cache (only a
    /// request that passed everything else spends its proof).
    fn bound(
        &self,
        pending: &Pending<'_>,
        token: Arc<VerifiedToken>,
    ) -> Result<Arc<VerifiedToken>, Reject> {
        let now = unix_now();
        if let Some(proof) = pending.bind(&token, now)? {
            if let Some(nonces) = &self.nonces {
                let fresh = proof
                    .nonce
                    .as_deref()
                    .is_some_and(|n| nonces.accepts(n, now));
                if !fresh {
                    return Err(Reject::UseNonce(nonces.issue(now).into()));
                }
            }
            let until = proof.iat.saturating_add(pending.window().max_age);
            self.replay.first_use(&proof.jkt, &proof.jti, until, now)?;
        }
        Ok(token)
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
        self.cache.insert(token, verified.clone(), now);
        Ok(verified)
    }

    /// An opaque token's verification, by `issuer`'s introspection endpoint
    /// (through its cache). The token's size and bytes are checked first, as
    /// a JWT's are: nothing the verifier would refuse is sent anywhere.
    async fn introspected(
        &self,
        issuer: IssuerId,
        token: &[u8],
    ) -> Result<Arc<VerifiedToken>, Reject> {
        let text = token_text(token)?;
        self.verifier.check_size(text)?;
        let introspector = self
            .introspection
            .get(issuer)
            .ok_or(Reject::IntrospectionUnavailable { issuer })?;
        introspector.verify(text, &self.verifier).await
    }

    pub fn introspection(&self) -> &Introspection {
        &self.introspection
    }

    /// The request counters of the rule that took a request (or of none).
    pub fn counters(&self, rule: Option<usize>) -> &RouteCounters {
        rule.map_or(&self.unrouted, |i| &self.rule_counters[i])
    }

    /// Counts the auth decision and logs what was refused.
    pub fn record(&self, verdict: &Verdict, route: &str) {
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
}

/// The verifier for `config`'s issuers, extracting the claims its rules compare.
pub fn verifier(config: &GuardConfig) -> Verifier {
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
