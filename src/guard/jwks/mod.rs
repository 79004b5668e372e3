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
//!
//! Here: the key sets, readiness, and one fetch (discovery first when asked,
//! [`super::discovery`]); the scheduled refresh is [`refresh`], a request's refetch
//! [`refetch`].

mod refetch;
mod refresh;

pub use refresh::{parse_max_age, refresh_after, retry_after};

use super::keys::{KeySet, KeySnapshot};
use crate::body::full;
use crate::client::{FetchFailed, HttpClient};
use crate::clock::unix_now;
use crate::config::{IssuerConfig, JwksCachePolicy, KeySource};
use crate::metrics::Metrics;
use bytes::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL};
use hyper::{Request, StatusCode, Uri};
use jsonwebtoken::Algorithm;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};

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

/// Owns the snapshot channel and one refresher per issuer.
pub struct Jwks {
    issuers: Vec<IssuerKeys>,
    snapshot: watch::Sender<Arc<KeySnapshot>>,
    /// Every issuer's keys have loaded once (which never reverts).
    loaded: AtomicBool,
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
    /// An issuer a `match` allows: fetched when its first token comes, and
    /// never what keeps the guard from being ready.
    on_demand: bool,
    /// Told when an on-demand issuer's first token asked for its keys.
    first_use: tokio::sync::Notify,
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
                on_demand: c.on_demand(),
                first_use: tokio::sync::Notify::new(),
            })
            .collect::<Vec<_>>();
        // Shared-secret-only issuers need no JWKS: mark them loaded forever.
        let initial = KeySnapshot {
            issuers: states
                .iter()
                .map(|s| {
                    Arc::new(match s.source {
                        KeySource::None => KeySet::never_stale(Vec::new()),
                        _ if s.on_demand => KeySet::on_demand(),
                        _ => KeySet::default(),
                    })
                })
                .collect(),
        };
        let (snapshot, _) = watch::channel(Arc::new(initial));
        Arc::new(Jwks {
            issuers: states,
            snapshot,
            loaded: AtomicBool::new(false),
            metrics,
        })
    }

    /// The current keys; cheap (an `Arc` clone under a brief read lock).
    pub fn snapshot(&self) -> Arc<KeySnapshot> {
        self.snapshot.borrow().clone()
    }

    /// Whether every issuer's keys in `snapshot` have loaded: read from it
    /// until they have, then remembered (with thousands of tenants, the
    /// request path should not count them each time).
    pub fn loaded(&self, snapshot: &KeySnapshot) -> bool {
        if self.loaded.load(Ordering::Relaxed) {
            return true;
        }
        let loaded = snapshot.is_loaded();
        if loaded {
            self.loaded.store(true, Ordering::Relaxed);
        }
        loaded
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
            .filter(|(state, keys)| !state.on_demand && !keys.is_usable(now))
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
                if !self.snapshot.borrow().issuers[idx].keys.is_empty() {
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
                    let uri = super::discovery::endpoint(&body, &state.name, "jwks_uri")
                        .map_err(FetchError::Document)?;
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
pub(super) async fn get(
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
