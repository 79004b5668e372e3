//! Opaque tokens, judged by their issuer's introspection endpoint (RFC 7662).
//!
//! One [`Introspector`] per issuer with `introspection`: its endpoint (given,
//! or named by discovery), the client tokengate is to it, and a cache of its
//! answers keyed, as the JWT cache is, by a 64-bit hash of the token under a
//! random per-cache key, the token kept in the entry and compared whole (a
//! SHA-256 key was measured at half again the instructions of a whole cache
//! hit: docs/performance.md); an entry counts the token's bytes too:
//!
//! - an active answer is kept until `min(exp, now + max_ttl)` as the
//!   [`VerifiedToken`] it verified to, scopes and claims included, so every
//!   rule is checked against it on every request (being active once allows
//!   nothing by itself);
//! - an inactive answer, or one the issuer checks refuse, is kept for
//!   `negative_ttl`;
//! - requests for one token while its answer is fetched wait for that one
//!   call (single flight);
//! - bounded: `max_entries`, an answer counting once per started KiB;
//! - a call that fails (unreachable, slow past `timeout`, not 200, not an
//!   introspection answer) is not cached and answers 503: the token may be
//!   fine. A cached active answer serves through an outage until it expires.
//!
//! Readiness waits for the endpoint to have answered once (a probe with a
//! random token, so a wrong client secret shows at start); after that, the
//! last failure is reported by [`Introspector::degraded`] until a call succeeds.

use super::cache::PreHashed;
use super::jwks;
use super::reject::Reject;
use super::verify::{Trace, VerifiedToken, Verifier};
use crate::body::full;
use crate::client::HttpClient;
use crate::client_auth::{authenticate, Form};
use crate::clock::{self, unix_now};
use crate::config::{
    IntrospectionConfig, IntrospectionEndpoint, IssuerConfig, IssuerId, OAuthClient,
};
use crate::metrics::Metrics;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, StatusCode, Uri};
use prometheus::{Histogram, IntCounter};
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Largest introspection answer accepted.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The start-up probe's retry delays: doubling from the first, capped.
const PROBE_RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// The introspectors of a guard's issuers, by [`IssuerId`].
pub struct Introspection {
    by_issuer: Vec<Option<Arc<Introspector>>>,
}

impl Introspection {
    pub fn new(issuers: &[IssuerConfig], client: &HttpClient, metrics: &Metrics) -> Introspection {
        let by_issuer = issuers
            .iter()
            .enumerate()
            .map(|(i, issuer)| {
                let config = issuer.introspection.as_ref()?;
                let client = client.with_tls(issuer.tls.as_deref());
                Some(Arc::new(Introspector::new(
                    IssuerId::new(i),
                    &issuer.issuer,
                    config,
                    client,
                    metrics,
                )))
            })
            .collect();
        Introspection { by_issuer }
    }

    pub fn get(&self, issuer: IssuerId) -> Option<&Arc<Introspector>> {
        self.by_issuer.get(issuer.index()).and_then(Option::as_ref)
    }

    fn each(&self) -> impl Iterator<Item = &Arc<Introspector>> {
        self.by_issuer.iter().flatten()
    }

    /// Starts each endpoint's start-up probe, stopped by `work`.
    pub fn spawn_probes(&self, work: &CancellationToken) {
        for introspector in self.each() {
            let (introspector, work) = (introspector.clone(), work.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = introspector.probe_until_answered() => {}
                    () = work.cancelled() => {}
                }
            });
        }
    }

    /// Resolves once every endpoint has answered once.
    pub async fn ready(&self) {
        for introspector in self.each() {
            introspector.ready().await;
        }
    }

    /// Endpoints that have not answered yet, and why (`/readyz`).
    pub fn not_ready(&self) -> Vec<String> {
        self.each()
            .filter(|i| !i.health.borrow().answered)
            .map(|i| {
                let why = i.health.borrow().last_error.clone();
                format!(
                    "introspection for issuer {}: {}",
                    i.issuer,
                    why.as_deref().unwrap_or("no answer yet")
                )
            })
            .collect()
    }

    /// Endpoints whose last call failed after they had answered (`/readyz`
    /// reports them; cached answers and other issuers still serve).
    pub fn degraded(&self) -> Vec<String> {
        self.each()
            .filter_map(|i| {
                let health = i.health.borrow();
                let why = health.last_error.as_deref().filter(|_| health.answered)?;
                Some(format!("introspection for issuer {}: {why}", i.issuer))
            })
            .collect()
    }
}

/// A cache entry: the token it is for (a key is a 64-bit hash) and its answer.
struct Entry {
    token: Box<str>,
    answer: Answer,
}

/// What the cache holds for a token.
#[derive(Clone)]
enum Answer {
    Active(Arc<VerifiedToken>),
    /// Inactive, or refused by the issuer's checks (wrong audience, expired…).
    Refused(Reject),
}

/// Whether the endpoint has answered, and why its last call failed.
#[derive(Default)]
struct Health {
    answered: bool,
    last_error: Option<String>,
}

/// One issuer's introspection endpoint and its answer cache.
pub struct Introspector {
    id: IssuerId,
    issuer: String,
    endpoint: IntrospectionEndpoint,
    /// The endpoint named by discovery, once fetched.
    discovered: OnceLock<Uri>,
    client: OAuthClient,
    http: HttpClient,
    timeout: Duration,
    max_ttl: Duration,
    negative_ttl: Duration,
    cache: moka::future::Cache<u64, Arc<Entry>, BuildHasherDefault<PreHashed>>,
    /// Keyed hasher for tokens; random per cache, so collisions cannot be chosen.
    hasher: RandomState,
    health: watch::Sender<Health>,
    counters: Counters,
    /// Calls in flight, at most [`MAX_IN_FLIGHT`]: a flood of made-up tokens
    /// (each a cache miss) cannot flood the endpoint.
    in_flight: tokio::sync::Semaphore,
}

/// Concurrent calls to one introspection endpoint.
pub const MAX_IN_FLIGHT: usize = 32;

struct Counters {
    hit: IntCounter,
    miss: IntCounter,
    active: IntCounter,
    inactive: IntCounter,
    error: IntCounter,
    duration: Histogram,
}

/// How long the cache keeps an answer.
struct Lifetime {
    max_ttl: Duration,
    negative_ttl: Duration,
}

impl moka::Expiry<u64, Arc<Entry>> for Lifetime {
    fn expire_after_create(&self, _: &u64, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(match &entry.answer {
            // Until `exp` itself (to the nanosecond, not the second), not `exp`
            // plus the leeway: past it the endpoint, not a clock-skew
            // allowance, says whether it is active.
            Answer::Active(token) => self.max_ttl.min(clock::until(token.exp)),
            Answer::Refused(_) => self.negative_ttl,
        })
    }
}

/// The cache's weight of an entry: one per started KiB.
fn weight(entry: &Entry) -> u32 {
    let bytes = entry.token.len()
        + match &entry.answer {
            Answer::Active(token) => token.approx_bytes(),
            Answer::Refused(_) => 0,
        };
    u32::try_from(1 + bytes / 1024).unwrap_or(u32::MAX)
}

impl Introspector {
    fn new(
        id: IssuerId,
        issuer: &str,
        config: &IntrospectionConfig,
        http: HttpClient,
        metrics: &Metrics,
    ) -> Introspector {
        let labelled = |result: &str| metrics.introspection.with_label_values(&[issuer, result]);
        let looked_up = |result: &str| {
            metrics
                .introspection_cache
                .with_label_values(&[issuer, result])
        };
        Introspector {
            id,
            issuer: issuer.to_string(),
            endpoint: config.endpoint.clone(),
            discovered: OnceLock::new(),
            client: config.client.clone(),
            http,
            timeout: config.timeout,
            max_ttl: config.max_ttl,
            negative_ttl: config.negative_ttl,
            cache: moka::future::Cache::builder()
                .max_capacity(config.max_entries)
                .weigher(|_, entry: &Arc<Entry>| weight(entry))
                .expire_after(Lifetime {
                    max_ttl: config.max_ttl,
                    negative_ttl: config.negative_ttl,
                })
                .build_with_hasher(BuildHasherDefault::<PreHashed>::default()),
            hasher: RandomState::new(),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            health: watch::Sender::new(Health::default()),
            counters: Counters {
                hit: looked_up("hit"),
                miss: looked_up("miss"),
                active: labelled("active"),
                inactive: labelled("inactive"),
                error: labelled("error"),
                duration: metrics.introspection_duration.with_label_values(&[issuer]),
            },
        }
    }

    /// `token`'s verification: from the cache, else from one call shared by
    /// every request for the token meanwhile.
    pub async fn verify(
        &self,
        token: &str,
        verifier: &Verifier,
    ) -> Result<Arc<VerifiedToken>, Reject> {
        let key = self.hasher.hash_one(token.as_bytes());
        let cached = self.cache.get(&key).await;
        let entry = match cached.filter(|e| *e.token == *token) {
            Some(entry) => {
                self.counters.hit.inc();
                entry
            }
            None => {
                self.counters.miss.inc();
                let unavailable = Reject::IntrospectionUnavailable { issuer: self.id };
                let entry = self
                    .cache
                    .try_get_with(key, self.entry(token, verifier))
                    .await
                    .map_err(|_| unavailable.clone())?;
                match *entry.token == *token {
                    true => entry,
                    // Another token has this key (a 2^-64 chance): this one
                    // is asked about alone, and not cached.
                    false => self.entry(token, verifier).await.map_err(|_| unavailable)?,
                }
            }
        };
        match entry.answer.clone() {
            // The cache's clock is not the wall clock: the token's window is checked again.
            Answer::Active(token) if token.is_current(unix_now()) => Ok(token),
            Answer::Active(token) => Err(Reject::Expired {
                exp: token.exp,
                now: unix_now(),
            }),
            Answer::Refused(reject) => Err(reject),
        }
    }

    async fn entry(&self, token: &str, verifier: &Verifier) -> Result<Arc<Entry>, String> {
        let answer = self.call(token, verifier).await?;
        Ok(Arc::new(Entry {
            token: token.into(),
            answer,
        }))
    }

    /// One call, judged: `Err` when the endpoint gave no introspection answer.
    async fn call(&self, token: &str, verifier: &Verifier) -> Result<Answer, String> {
        let body = self.ask(token).await?;
        let now = unix_now();
        let no_exp = now.saturating_add(self.max_ttl.as_secs());
        match verifier.verify_introspected(self.id, &body, now, no_exp, &mut ()) {
            Ok(Ok(verified)) => {
                self.counters.active.inc();
                Ok(Answer::Active(Arc::new(verified)))
            }
            Ok(Err(reject)) => {
                self.counters.inactive.inc();
                Ok(Answer::Refused(reject))
            }
            // `ask` has checked the answer's shape; this is what that misses.
            Err(why) => Err(self.failed(format!("{}: {why}", self.issuer))),
        }
    }

    /// `token`'s introspection answer as the endpoint gave it (a 200 with a
    /// JSON object holding a boolean `active`). Counts the call's time;
    /// records its health. At most [`MAX_IN_FLIGHT`] calls at once; a call
    /// waits for its turn within `timeout`.
    async fn ask(&self, token: &str) -> Result<Bytes, String> {
        let started = Instant::now();
        let answer = async {
            let _turn = tokio::time::timeout(self.timeout, self.in_flight.acquire())
                .await
                .map_err(|_| {
                    format!(
                        "{MAX_IN_FLIGHT} calls already in flight for {}",
                        self.timeout.as_secs_f64()
                    )
                })?
                .map_err(|e| e.to_string())?;
            let endpoint = self.endpoint().await?;
            // Built before the next await: the form serializer is not Send.
            let (form, basic) = {
                let mut form = Form::new(String::new());
                form.append_pair("token", token);
                form.append_pair("token_type_hint", "access_token");
                let basic = authenticate(&self.client, &endpoint, &mut form, unix_now())?;
                (form.finish(), basic)
            };
            let mut req = Request::post(endpoint)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .body(full(form))
                .map_err(|e| e.to_string())?;
            if let Some(basic) = basic {
                req.headers_mut().insert(AUTHORIZATION, basic);
            }
            let answer = self
                .http
                .fetch(
                    req,
                    MAX_ANSWER_BYTES,
                    self.timeout.saturating_sub(started.elapsed()),
                )
                .await
                .map_err(|e| e.to_string())?;
            match answer.status {
                StatusCode::OK => Ok(answer.body),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(format!(
                    "the endpoint refused tokengate's client credentials ({})",
                    answer.status.as_u16()
                )),
                status => Err(format!("the endpoint answered HTTP {}", status.as_u16())),
            }
        }
        .await;
        self.counters
            .duration
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(body) => match introspection_answer(&body) {
                Ok(_) => {
                    self.health.send_modify(|h| {
                        h.answered = true;
                        h.last_error = None;
                    });
                    Ok(body)
                }
                Err(why) => Err(self.failed(format!("{}: {why}", self.issuer))),
            },
            Err(why) => Err(self.failed(why)),
        }
    }

    /// Records a failed call; returns its description.
    fn failed(&self, why: String) -> String {
        self.counters.error.inc();
        let first = self.health.send_if_modified(|h| {
            let first = h.last_error.is_none();
            h.last_error = Some(why.clone());
            first
        });
        // Once per outage at warn (each failing request would flood the log).
        if first {
            tracing::warn!(issuer = %self.issuer, error = %why, "introspection failed; tokens it has not cached get 503");
        } else {
            tracing::debug!(issuer = %self.issuer, error = %why, "introspection failed");
        }
        why
    }

    /// The endpoint, resolved through discovery the first time if need be.
    async fn endpoint(&self) -> Result<Uri, String> {
        let doc = match &self.endpoint {
            IntrospectionEndpoint::Uri(uri) => return Ok(uri.clone()),
            IntrospectionEndpoint::Discovery(doc) => doc,
        };
        if let Some(uri) = self.discovered.get() {
            return Ok(uri.clone());
        }
        let (body, _) = jwks::get(&self.http, doc, None, self.timeout)
            .await
            .map_err(|e| format!("discovery: {e}"))?;
        let uri = super::discovery::endpoint(&body, &self.issuer, "introspection_endpoint")?;
        Ok(self.discovered.get_or_init(|| uri).clone())
    }

    async fn ready(&self) {
        let mut health = self.health.subscribe();
        if health.wait_for(|h| h.answered).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Asks about a random token until the endpoint gives an introspection
    /// answer (any: a random token is expected inactive).
    async fn probe_until_answered(&self) {
        let mut delay = PROBE_RETRY.0;
        loop {
            let probe = random_token();
            if self.ask(&probe).await.is_ok() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(PROBE_RETRY.1);
        }
    }

    /// What `tokengate verify` shows: the answer, its secret parts elided.
    pub async fn explain(
        &self,
        token: &str,
        verifier: &Verifier,
        trace: &mut impl Trace,
    ) -> Result<(serde_json::Value, Result<VerifiedToken, Reject>), String> {
        let body = self.ask(token).await?;
        let now = unix_now();
        let no_exp = now.saturating_add(self.max_ttl.as_secs());
        let judged = verifier.verify_introspected(self.id, &body, now, no_exp, trace)?;
        let shown = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok((shown, judged))
    }

    pub fn issuer_id(&self) -> IssuerId {
        self.id
    }

    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    pub fn negative_ttl(&self) -> Duration {
        self.negative_ttl
    }
}

/// PURE: whether `body` is an introspection answer: a JSON object with a boolean `active`.
fn introspection_answer(body: &[u8]) -> Result<bool, &'static str> {
    #[derive(serde::Deserialize)]
    struct Answer {
        active: bool,
    }
    serde_json::from_slice::<Answer>(body)
        .map(|a| a.active)
        .map_err(|_| "the answer is not a JSON object with a boolean \"active\"")
}

/// A token no issuer has issued, for the start-up probe.
fn random_token() -> String {
    let mut bytes = [0u8; 24];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    format!("tokengate-probe-{}", URL_SAFE_NO_PAD.encode(bytes))
}
