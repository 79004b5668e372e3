//! The token lifecycle. One renewal task per source is the only place that
//! fetches, so however many requests arrive there is one fetch at a time per
//! source. It publishes `Token` snapshots through a `watch` channel; requests
//! read the current one without awaiting (a brief read of the channel).
//!
//! - fetched at start; readiness waits for every source's first token;
//! - renewed at `renew_before` with jitter (`renew::renew_after`);
//! - failures retry with exponential back-off and jitter, and the current token
//!   keeps being used until it really expires;
//! - after an upstream `retry_on` answer a request may wake the task for an
//!   early fetch (at most one per `renew::MIN_INTERVAL`) and wait, bounded, for it.

use super::renew::{backoff, jitter, renew_after, MIN_INTERVAL};
use super::source::{fetch, Fetched, MAX_LIFETIME};
use crate::config::{TokenConfig, TokenSource};
use crate::metrics::Metrics;
use crate::upstream::HttpClient;
use hyper::header::HeaderValue;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Lifetime assumed when the answer says nothing (no `expires_in`, not a JWT).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// How often a token file is checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(2);

/// A token ready to inject.
#[derive(Debug)]
pub struct Token {
    /// The rendered `Authorization` value, marked sensitive.
    pub header: HeaderValue,
    pub expires_at: Instant,
    /// Increases with every published token.
    pub generation: u64,
}

/// The current token of one source.
pub struct TokenCell {
    pub name: String,
    current: watch::Sender<Option<Arc<Token>>>,
    wake: Notify,
}

impl TokenCell {
    pub fn new(name: &str) -> Arc<TokenCell> {
        Arc::new(TokenCell {
            name: name.to_string(),
            current: watch::Sender::new(None),
            wake: Notify::new(),
        })
    }

    /// The current token if it has not expired.
    pub fn usable(&self) -> Option<Arc<Token>> {
        self.current
            .borrow()
            .clone()
            .filter(|t| t.expires_at > Instant::now())
    }

    pub fn is_ready(&self) -> bool {
        self.usable().is_some()
    }

    /// Seconds until the current token expires (negative once expired); `None` before the first.
    pub fn seconds_left(&self) -> Option<f64> {
        let now = Instant::now();
        self.current.borrow().as_ref().map(|t| {
            if t.expires_at > now {
                (t.expires_at - now).as_secs_f64()
            } else {
                -(now - t.expires_at).as_secs_f64()
            }
        })
    }

    /// Waits (at most `wait`) for a usable token newer than `after` (0 = any).
    /// With `after > 0` it first asks the renewal task for an early fetch.
    pub async fn newer_than(&self, after: u64, wait: Duration) -> Option<Arc<Token>> {
        let mut rx = self.current.subscribe();
        let fresh = |t: &Option<Arc<Token>>| {
            t.clone()
                .filter(|t| t.generation > after && t.expires_at > Instant::now())
        };
        if let Some(t) = fresh(&rx.borrow_and_update()) {
            return Some(t);
        }
        if after > 0 {
            self.request_renewal();
        }
        tokio::time::timeout(wait, async {
            while rx.changed().await.is_ok() {
                if let Some(t) = fresh(&rx.borrow_and_update()) {
                    return Some(t);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Asks the renewal task for an early fetch (at most one per `MIN_INTERVAL`).
    pub fn request_renewal(&self) {
        self.wake.notify_one();
    }

    fn publish(&self, header: HeaderValue, expires_at: Instant) {
        self.current.send_modify(|slot| {
            let generation = slot.as_ref().map_or(0, |t| t.generation) + 1;
            *slot = Some(Arc::new(Token {
                header,
                expires_at,
                generation,
            }));
        });
    }
}

/// Starts the renewal task of one source.
pub fn spawn_renewal(
    cell: Arc<TokenCell>,
    config: TokenConfig,
    client: HttpClient,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let ok = metrics
            .token_refresh
            .with_label_values(&[&config.name, "ok"]);
        let is_file = matches!(config.source, TokenSource::File { .. });
        let mut failures = 0u32;
        let mut last: Option<Fetched> = None;
        loop {
            let started = Instant::now();
            let next = match fetch(&config.source, &client, config.fetch_timeout).await {
                Ok(fetched) if last.as_ref() == Some(&fetched) && is_file => FILE_POLL,
                Ok(fetched) => match config.inject.render(&fetched.token) {
                    Some(header) => {
                        let lifetime = fetched
                            .lifetime
                            .unwrap_or(if is_file {
                                MAX_LIFETIME
                            } else {
                                DEFAULT_LIFETIME
                            })
                            .min(MAX_LIFETIME);
                        // Counted from when the request started: never later than the server meant.
                        let expires_at = started
                            .checked_add(lifetime)
                            .unwrap_or(started + DEFAULT_LIFETIME);
                        cell.publish(header, expires_at);
                        ok.inc();
                        failures = 0;
                        tracing::info!(token = %config.name, lifetime = ?lifetime, fingerprint = %crate::fingerprint(fetched.token.as_bytes()), "token obtained");
                        last = Some(fetched);
                        if is_file {
                            FILE_POLL
                        } else {
                            renew_after(lifetime, config.renew_before, jitter())
                        }
                    }
                    None => {
                        failures += 1;
                        metrics
                            .token_refresh
                            .with_label_values(&[&config.name, "invalid_answer"])
                            .inc();
                        tracing::warn!(token = %config.name, "the token cannot be sent in a header (control characters); keeping the current one");
                        backoff(failures, jitter())
                    }
                },
                Err(e) => {
                    failures += 1;
                    metrics
                        .token_refresh
                        .with_label_values(&[&config.name, e.label()])
                        .inc();
                    let delay = backoff(failures, jitter());
                    tracing::warn!(token = %config.name, error = %e, attempt = failures, retry_in = ?delay, "token fetch failed; the current token is used while it is valid");
                    delay
                }
            };
            tokio::select! {
                () = tokio::time::sleep(next) => {}
                () = cell.wake.notified() => {
                    // An upstream rejected the token: fetch early, but not in a tight loop.
                    tokio::time::sleep(MIN_INTERVAL.saturating_sub(started.elapsed())).await;
                }
                () = shutdown.cancelled() => return,
            }
        }
    });
}
