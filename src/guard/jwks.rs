//! Keeps every issuer's key set fresh and publishes `KeySnapshot`s through a
//! `watch` channel; the request path only reads the latest snapshot.
//!
//! - fetched at start (readiness waits), then refreshed in the background every
//!   `Cache-Control: max-age` clamped to `[min_refresh, max_refresh]`;
//! - on an unknown `kid`: one refetch at a time per issuer, at most one per
//!   `refetch_cooldown`, and kids still unknown afterwards are remembered for
//!   `unknown_kid_ttl`, so random kids cannot flood the IdP;
//! - on fetch failure the last good set keeps serving until `stale_if_error`
//!   after its fetch (stale-if-error), then verification answers 503.

use super::keys::{KeySet, KeySnapshot};
use crate::body::full;
use crate::client::{FetchFailed, HttpClient};
use crate::clock::unix_now;
use crate::config::{IssuerConfig, IssuerId, JwksCachePolicy, KeySource};
use crate::metrics::Metrics;
use bytes::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL};
use hyper::{Request, StatusCode, Uri};
use jsonwebtoken::Algorithm;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Transport(String),
    #[error("timed out")]
    Timeout,
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("{0}")]
    Document(String),
    /// `jwks_bearer_token_file` cannot be read or is not a header value.
    #[error("jwks_bearer_token_file {0}")]
    Credential(String),
}

impl From<FetchFailed> for FetchError {
    fn from(e: FetchFailed) -> FetchError {
        match e {
            FetchFailed::Transport(why) => FetchError::Transport(why),
            FetchFailed::Timeout => FetchError::Timeout,
        }
    }
}

/// What a request's refetch came to ([`Jwks::refetch`]).
enum Refetch {
    /// What the request wanted was there once the fetch lock was ours.
    NotNeeded,
    /// A refetch ran within the cooldown (or the issuer has no JWKS): none now.
    CoolingDown,
    /// A refetch ran: whether it succeeded, and whether the request has what it wanted.
    Done { fetched: bool, satisfied: bool },
}

/// Owns the snapshot channel and one refresher per issuer.
pub struct Jwks {
    issuers: Vec<IssuerKeys>,
    snapshot: watch::Sender<Arc<KeySnapshot>>,
    metrics: Arc<Metrics>,
}

struct IssuerKeys {
    name: String,
    source: KeySource,
    algorithms: Vec<Algorithm>,
    policy: JwksCachePolicy,
    /// The issuer's own TLS when it has a `tls` block.
    client: HttpClient,
    /// `jwks_bearer_token_file`, read at each fetch.
    bearer_file: Option<PathBuf>,
    /// Why the last fetch failed; cleared by a success (`/readyz` says it).
    last_error: std::sync::Mutex<Option<String>>,
    /// Resolved from discovery on first use.
    jwks_uri: OnceLock<Uri>,
    /// Held during any fetch (single flight); records when the last
    /// unknown-kid refetch started (scheduled refreshes do not count against the cooldown).
    fetch_lock: Mutex<Option<Instant>>,
    /// Kids that were still unknown after a refetch.
    unknown_kids: moka::sync::Cache<Box<str>, ()>,
}

impl Jwks {
    pub fn new(issuers: &[IssuerConfig], client: HttpClient, metrics: Arc<Metrics>) -> Arc<Jwks> {
        let states = issuers
            .iter()
            .map(|c| IssuerKeys {
                name: c.issuer.clone(),
                source: c.keys.clone(),
                algorithms: c.algorithms.clone(),
                policy: c.jwks_cache.clone(),
                client: client.with_tls(c.tls.as_deref()),
                bearer_file: c.jwks_bearer_token_file.clone(),
                last_error: std::sync::Mutex::new(None),
                jwks_uri: OnceLock::new(),
                fetch_lock: Mutex::new(None),
                unknown_kids: moka::sync::Cache::builder()
                    .max_capacity(1024)
                    .time_to_live(c.jwks_cache.unknown_kid_ttl)
                    .build(),
            })
            .collect::<Vec<_>>();
        // Shared-secret-only issuers need no JWKS: mark them loaded forever.
        let initial = KeySnapshot {
            issuers: states
                .iter()
                .map(|s| {
                    Arc::new(match s.source {
                        KeySource::None => KeySet::never_stale(Vec::new()),
                        _ => KeySet::default(),
                    })
                })
                .collect(),
        };
        let (snapshot, _) = watch::channel(Arc::new(initial));
        Arc::new(Jwks {
            issuers: states,
            snapshot,
            metrics,
        })
    }

    /// The current keys; cheap (an `Arc` clone under a brief read lock).
    pub fn snapshot(&self) -> Arc<KeySnapshot> {
        self.snapshot.borrow().clone()
    }

    /// Every issuer has a usable, not-too-stale key set (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_empty()
    }

    /// Resolves once [`Jwks::is_ready`] holds, woken by each published key set.
    pub async fn ready(&self) {
        let mut published = self.snapshot.subscribe();
        while !self.is_ready() {
            if published.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// What keeps this from being ready: each issuer whose keys are not usable, and why.
    pub fn not_ready(&self) -> Vec<String> {
        let now = unix_now();
        let snapshot = self.snapshot.borrow();
        self.issuers
            .iter()
            .zip(snapshot.issuers.iter())
            .filter(|(_, keys)| !keys.is_usable(now))
            .map(|(state, keys)| {
                let why = match state.last_error.lock() {
                    Ok(last) => last.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
                    Err(_) => String::new(),
                };
                match keys.is_loaded() {
                    false => format!("issuer {}: keys not loaded yet{why}", state.name),
                    true => format!(
                        "issuer {}: keys past their stale bound (stale_if_error): its JWKS cannot be fetched{why}",
                        state.name
                    ),
                }
            })
            .collect()
    }

    /// Starts one background refresher per JWKS issuer.
    pub fn spawn_refreshers(self: &Arc<Self>, shutdown: CancellationToken) {
        for idx in 0..self.issuers.len() {
            if self.issuers[idx].source == KeySource::None {
                continue;
            }
            let jwks = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut failures = 0u32;
                loop {
                    let wait = match jwks.refresh(IssuerId::new(idx)).await {
                        Ok(max_age) => {
                            failures = 0;
                            refresh_after(max_age, &jwks.issuers[idx].policy)
                        }
                        Err(_) => {
                            failures = failures.saturating_add(1);
                            retry_after(failures, &jwks.issuers[idx].policy)
                        }
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            });
        }
    }

    /// Fetches issuer `id`'s JWKS once (single flight) and publishes it.
    /// Returns the answer's max-age.
    pub async fn refresh(&self, id: IssuerId) -> Result<Option<Duration>, FetchError> {
        let idx = id.index();
        let _single_flight = self.issuers[idx].fetch_lock.lock().await;
        self.fetch_and_publish(idx).await
    }

    /// Called when a token names a kid the snapshot lacks. Refetches at most once
    /// per cooldown; returns true when the kid is now known.
    pub async fn refresh_for_unknown_kid(&self, id: IssuerId, kid: &str) -> bool {
        let idx = id.index();
        let Some(state) = self.issuers.get(idx) else {
            return false;
        };
        if state.unknown_kids.contains_key(kid) {
            return false;
        }
        match self.refetch(idx, || self.knows(idx, kid)).await {
            Refetch::NotNeeded => true,
            Refetch::CoolingDown => false,
            Refetch::Done { fetched, satisfied } => {
                // Only a successful fetch proves the kid unknown; after a failed
                // one the cooldown alone throttles retries.
                if fetched && !satisfied {
                    state.unknown_kids.insert(kid.into(), ());
                }
                satisfied
            }
        }
    }

    /// Called when a token's issuer has keys past their stale bound. In an
    /// outage that is what the bound is for, and a refetch at most once per
    /// `refetch_cooldown` adds little to the refresher's own retries. But the
    /// bound is wall-clock time while the refresher sleeps on the monotonic
    /// clock: after the wall clock jumps forward (a VM resumed after hours),
    /// healthy keys look stale until the next scheduled refresh, and this
    /// refetch brings them back at once. Returns true when the keys are usable.
    pub async fn refresh_stale(&self, id: IssuerId) -> bool {
        let idx = id.index();
        let usable = || {
            self.snapshot
                .borrow()
                .issuers
                .get(idx)
                .is_some_and(|s| s.is_usable(unix_now()))
        };
        match self.refetch(idx, usable).await {
            Refetch::NotNeeded => true,
            Refetch::CoolingDown => false,
            Refetch::Done { satisfied, .. } => satisfied,
        }
    }

    /// The refetch a request asks for when the keys fall short of `wanted`:
    /// single flight, and at most one per `refetch_cooldown` (scheduled
    /// refreshes do not count against it).
    async fn refetch(&self, idx: usize, wanted: impl Fn() -> bool) -> Refetch {
        let Some(state) = self.issuers.get(idx) else {
            return Refetch::CoolingDown;
        };
        let mut last = state.fetch_lock.lock().await;
        // Someone else's refetch may have brought it while we waited.
        if wanted() {
            return Refetch::NotNeeded;
        }
        if last.is_some_and(|t| t.elapsed() < state.policy.refetch_cooldown) {
            return Refetch::CoolingDown;
        }
        *last = Some(Instant::now());
        let fetched = self.fetch_and_publish(idx).await.is_ok();
        drop(last);
        Refetch::Done {
            fetched,
            satisfied: wanted(),
        }
    }

    fn knows(&self, idx: usize, kid: &str) -> bool {
        self.snapshot
            .borrow()
            .issuers
            .get(idx)
            .is_some_and(|s| s.by_kid(kid).is_some())
    }

    async fn fetch_and_publish(&self, idx: usize) -> Result<Option<Duration>, FetchError> {
        let state = &self.issuers[idx];
        let result = self.fetch(state).await;
        let result = result.and_then(|(body, max_age)| {
            let previous = self.snapshot.borrow().issuers[idx].clone();
            let parsed = KeySet::parse(&body, &state.algorithms, &previous).map_err(FetchError::Document)?;
            for skipped in &parsed.skipped {
                tracing::info!(issuer = %state.name, key = %skipped, "JWKS key skipped");
            }
            if parsed.keys.is_empty() {
                return Err(FetchError::Document("JWKS has no usable key".into()));
            }
            let next = KeySet {
                keys: parsed.keys,
                // Fresh until the next refresh is due, then stale-if-error for the configured bound.
                usable_until: unix_now()
                    .saturating_add(refresh_after(max_age, &state.policy).as_secs())
                    .saturating_add(state.policy.stale_if_error.as_secs()),
            };
            for gone in previous.removed_in(&next) {
                tracing::info!(issuer = %state.name, kid = gone.kid.as_deref().unwrap_or("-"), "key removed from JWKS");
                gone.retire();
            }
            let count = next.keys.len();
            let next = Arc::new(next);
            // New keys: kids remembered as unknown may exist now.
            state.unknown_kids.invalidate_all();
            self.snapshot.send_modify(|snap| {
                let mut updated = (**snap).clone();
                updated.issuers[idx] = next;
                *snap = Arc::new(updated);
            });
            self.metrics.jwks_keys.with_label_values(&[&state.name]).set(count as i64);
            Ok(max_age)
        });
        if let Ok(mut last) = state.last_error.lock() {
            *last = result.as_ref().err().map(ToString::to_string);
        }
        match &result {
            Ok(_) => {
                self.metrics
                    .jwks_refresh
                    .with_label_values(&[&state.name, "ok"])
                    .inc();
                tracing::debug!(issuer = %state.name, "JWKS refreshed");
            }
            Err(e) => {
                self.metrics
                    .jwks_refresh
                    .with_label_values(&[&state.name, "error"])
                    .inc();
                if self.snapshot.borrow().issuers[idx].is_loaded() {
                    tracing::warn!(issuer = %state.name, error = %e, "JWKS refresh failed; keeping the last good keys");
                } else {
                    tracing::warn!(issuer = %state.name, error = %e, "JWKS fetch failed; no keys loaded yet");
                }
            }
        }
        result
    }

    async fn fetch(&self, state: &IssuerKeys) -> Result<(Bytes, Option<Duration>), FetchError> {
        let timeout = state.policy.fetch_timeout;
        let bearer = match &state.bearer_file {
            Some(path) => Some(bearer(path).await?),
            None => None,
        };
        let bearer = bearer.as_ref();
        let uri = match &state.source {
            KeySource::Jwks(uri) => uri.clone(),
            KeySource::Discovery(discovery) => match state.jwks_uri.get() {
                Some(uri) => uri.clone(),
                None => {
                    let (body, _) = get(&state.client, discovery, bearer, timeout).await?;
                    let uri = jwks_uri_from_discovery(&body, &state.name)?;
                    state.jwks_uri.get_or_init(|| uri).clone()
                }
            },
            KeySource::None => return Err(FetchError::Document("issuer has no JWKS".into())),
        };
        get(&state.client, &uri, bearer, timeout).await
    }
}

/// `Authorization: Bearer <the file's content>`, marked sensitive so it is
/// never logged.
async fn bearer(path: &Path) -> Result<HeaderValue, FetchError> {
    let token = crate::client::read_token_file(path)
        .await
        .map_err(FetchError::Credential)?;
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| FetchError::Credential(format!("{} is not a header value", path.display())))?;
    value.set_sensitive(true);
    Ok(value)
}

/// GETs a JSON document (with `authorization` when given); returns the body
/// and `Cache-Control: max-age`.
async fn get(
    client: &HttpClient,
    uri: &Uri,
    authorization: Option<&HeaderValue>,
    timeout: Duration,
) -> Result<(Bytes, Option<Duration>), FetchError> {
    let mut req = Request::get(uri.clone())
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(full(Bytes::new()))
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    if let Some(value) = authorization {
        req.headers_mut().insert(AUTHORIZATION, value.clone());
    }
    let answer = client.fetch(req, MAX_DOCUMENT_BYTES, timeout).await?;
    if answer.status != StatusCode::OK {
        return Err(FetchError::Status(answer.status));
    }
    let max_age = answer
        .headers
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_max_age);
    Ok((answer.body, max_age))
}

fn jwks_uri_from_discovery(body: &[u8], issuer: &str) -> Result<Uri, FetchError> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let doc: Discovery = serde_json::from_slice(body)
        .map_err(|e| FetchError::Document(format!("bad discovery document: {e}")))?;
    // OIDC Discovery §4.3: the document must name the issuer it was fetched for.
    if doc.issuer != issuer {
        return Err(FetchError::Document(format!(
            "discovery names issuer {:?}, expected {issuer:?}",
            doc.issuer
        )));
    }
    doc.jwks_uri
        .parse()
        .map_err(|_| FetchError::Document("discovery jwks_uri is not a URL".into()))
}

/// `max-age` from a Cache-Control value (`no-cache`/`no-store` count as 0).
pub fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        if d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        let (k, v) = d.split_once('=')?;
        k.trim().eq_ignore_ascii_case("max-age").then(|| {
            v.trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs)
        })?
    })
}

/// PURE: when to refresh after a success.
pub fn refresh_after(max_age: Option<Duration>, policy: &JwksCachePolicy) -> Duration {
    max_age
        .unwrap_or(policy.refresh_interval)
        .clamp(policy.min_refresh, policy.max_refresh)
}

/// PURE: when to retry after `failures` consecutive failures: 1s, 2s, 4s … capped at `min_refresh`.
pub fn retry_after(failures: u32, policy: &JwksCachePolicy) -> Duration {
    let exp = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16));
    exp.min(policy.min_refresh).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing() {
        let cases = [
            ("max-age=300", Some(300)),
            ("public, max-age=60, must-revalidate", Some(60)),
            ("MAX-AGE=5", Some(5)),
            ("max-age=\"7\"", Some(7)),
            ("no-cache", Some(0)),
            ("no-store, max-age=60", Some(0)),
            ("public", None),
            ("max-age=abc", None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(
                parse_max_age(header),
                want.map(Duration::from_secs),
                "{header}"
            );
        }
    }

    #[test]
    fn refresh_honours_max_age_within_bounds() {
        let p = JwksCachePolicy {
            refresh_interval: Duration::from_secs(300),
            min_refresh: Duration::from_secs(30),
            max_refresh: Duration::from_secs(3600),
            ..JwksCachePolicy::default()
        };
        let cases = [
            (None, 300),
            (Some(120), 120),
            (Some(0), 30),
            (Some(5), 30),
            (Some(86400), 3600),
        ];
        for (max_age, want) in cases {
            assert_eq!(
                refresh_after(max_age.map(Duration::from_secs), &p),
                Duration::from_secs(want),
                "{max_age:?}"
            );
        }
    }

    #[test]
    fn retry_backs_off_exponentially_up_to_min_refresh() {
        let p = JwksCachePolicy {
            min_refresh: Duration::from_secs(30),
            ..JwksCachePolicy::default()
        };
        let got: Vec<u64> = (1..=8).map(|n| retry_after(n, &p).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn discovery_must_name_the_same_issuer() {
        let doc = br#"{"issuer":"https://idp","jwks_uri":"https://idp/jwks"}"#;
        assert_eq!(
            jwks_uri_from_discovery(doc, "https://idp").unwrap(),
            "https://idp/jwks"
        );
        assert!(jwks_uri_from_discovery(doc, "https://other").is_err());
        assert!(jwks_uri_from_discovery(b"{}", "https://idp").is_err());
    }
}
