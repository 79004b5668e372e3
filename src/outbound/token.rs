//! The token lifecycle. One renewal task per source is the only place that
//! fetches, so however many requests arrive there is one fetch at a time per
//! source. It publishes the current `Token` (and a count of finished fetch
//! attempts) through a `watch` channel; requests read it without awaiting.
//!
//! - fetched at start; readiness waits for every source's first token;
//! - renewed at `renew_before` with jitter (`renew::renew_after`), counted from
//!   when the previous fetch started;
//! - failures retry with exponential back-off and jitter, and the current token
//!   keeps being used until it really expires;
//! - after an upstream `retry_on` answer a request may wake the task for an early
//!   fetch (cooldown 1s, doubling up to 60s while the refusals continue, never
//!   during a failure back-off) and waits, bounded, for its outcome;
//! - the task is supervised: a panic is logged and the task restarted.

use super::renew::{backoff, jitter, renew_after, MIN_INTERVAL};
use super::source::{fetch, Fetched, SourceError, MAX_LIFETIME};
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
/// Shorter-lived tokens are refused: they would expire before they could be renewed.
pub const MIN_LIFETIME: Duration = Duration::from_secs(2);
/// How often a token file is checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(2);
/// Longest cooldown between early (refusal-triggered) fetches.
const MAX_EARLY_COOLDOWN: Duration = Duration::from_secs(60);

/// A token ready to inject.
#[derive(Debug)]
pub struct Token {
    /// The rendered `Authorization` value, marked sensitive.
    pub header: HeaderValue,
    pub expires_at: Instant,
    /// Increases with every published token.
    pub generation: u64,
}

/// What the renewal task publishes.
#[derive(Default)]
struct State {
    token: Option<Arc<Token>>,
    /// Fetch attempts finished so far, successful or not.
    attempts: u64,
}

/// The current token of one source.
pub struct TokenCell {
    pub name: String,
    state: watch::Sender<State>,
    wake: Notify,
}

impl TokenCell {
    pub fn new(name: &str) -> Arc<TokenCell> {
        Arc::new(TokenCell {
            name: name.to_string(),
            state: watch::Sender::new(State::default()),
            wake: Notify::new(),
        })
    }

    /// The current token if it has not expired.
    pub fn usable(&self) -> Option<Arc<Token>> {
        usable(&self.state.borrow().token)
    }

    pub fn is_ready(&self) -> bool {
        self.usable().is_some()
    }

    /// Seconds until the current token expires (negative once expired); `None` before the first.
    pub fn seconds_left(&self) -> Option<f64> {
        let now = Instant::now();
        self.state.borrow().token.as_ref().map(|t| {
            if t.expires_at > now {
                (t.expires_at - now).as_secs_f64()
            } else {
                -(now - t.expires_at).as_secs_f64()
            }
        })
    }

    /// The upstream refused token `rejected`: ask for an early fetch, unless a
    /// newer token has already replaced it.
    pub fn request_renewal(&self, rejected: u64) {
        let current = self
            .state
            .borrow()
            .token
            .as_ref()
            .map_or(0, |t| t.generation);
        if current <= rejected {
            self.wake.notify_one();
        }
    }

    /// Waits (at most `wait`) for a usable token newer than generation `after`.
    /// With `after == 0` (no token yet) it waits for the first one. With
    /// `after > 0` it asks for an early fetch and gives up as soon as a fetch
    /// attempt finishes without a newer token.
    pub async fn newer_than(&self, after: u64, wait: Duration) -> Option<Arc<Token>> {
        let mut rx = self.state.subscribe();
        let newer = |s: &State| usable(&s.token).filter(|t| t.generation > after);
        let attempts_before = {
            let s = rx.borrow_and_update();
            if let Some(t) = newer(&s) {
                return Some(t);
            }
            s.attempts
        };
        if after > 0 {
            self.request_renewal(after);
        }
        tokio::time::timeout(wait, async {
            while rx.changed().await.is_ok() {
                let s = rx.borrow_and_update();
                if let Some(t) = newer(&s) {
                    return Some(t);
                }
                if after > 0 && s.attempts > attempts_before {
                    return None;
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    fn publish(&self, header: HeaderValue, expires_at: Instant) {
        self.state.send_modify(|s| {
            let generation = s.token.as_ref().map_or(0, |t| t.generation) + 1;
            s.token = Some(Arc::new(Token {
                header,
                expires_at,
                generation,
            }));
            s.attempts += 1;
        });
    }

    fn attempt_failed(&self) {
        self.state.send_modify(|s| s.attempts += 1);
    }
}

fn usable(token: &Option<Arc<Token>>) -> Option<Arc<Token>> {
    token.clone().filter(|t| t.expires_at > Instant::now())
}

/// Starts the (supervised) renewal task of one source.
pub fn spawn_renewal(
    cell: Arc<TokenCell>,
    config: TokenConfig,
    client: HttpClient,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let run = tokio::spawn(renew(
                cell.clone(),
                config.clone(),
                client.clone(),
                metrics.clone(),
                shutdown.clone(),
            ));
            match run.await {
                Err(e) if e.is_panic() => {
                    tracing::error!(token = %config.name, "token renewal task panicked; restarting it");
                    tokio::time::sleep(MIN_INTERVAL).await;
                }
                _ => return,
            }
        }
    });
}

/// PURE: what to publish for a fetched token, or why not.
fn accept(
    config: &TokenConfig,
    fetched: &Fetched,
    is_file: bool,
) -> Result<(HeaderValue, Duration), &'static str> {
    let header = config
        .inject
        .render(&fetched.token)
        .ok_or("the token cannot be sent in a header (control characters)")?;
    let lifetime = fetched
        .lifetime
        .unwrap_or(if is_file {
            MAX_LIFETIME
        } else {
            DEFAULT_LIFETIME
        })
        .min(MAX_LIFETIME);
    if lifetime < MIN_LIFETIME {
        return Err("the token expires too soon to be used (is the clock right?)");
    }
    Ok((header, lifetime))
}

async fn renew(
    cell: Arc<TokenCell>,
    config: TokenConfig,
    client: HttpClient,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let ok = metrics
        .token_refresh
        .with_label_values(&[&config.name, "ok"]);
    let is_file = matches!(config.source, TokenSource::File { .. });
    let mut failures = 0u32;
    let mut early = 0u32;
    let mut last_token: Option<String> = None;
    loop {
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            config.fetch_timeout,
            fetch(&config.source, &client, config.fetch_timeout),
        )
        .await
        .unwrap_or(Err(SourceError::Timeout));
        let next = match outcome.map_err(|e| (e.label(), e.to_string())) {
            // An unchanged token file: nothing to publish.
            Ok(fetched) if is_file && last_token.as_deref() == Some(fetched.token.as_str()) => {
                cell.attempt_failed();
                FILE_POLL
            }
            Ok(fetched) => match accept(&config, &fetched, is_file) {
                Ok((header, lifetime)) => {
                    // Counted from when the request started: never later than the server meant.
                    cell.publish(
                        header,
                        started
                            .checked_add(lifetime)
                            .unwrap_or(started + DEFAULT_LIFETIME),
                    );
                    ok.inc();
                    failures = 0;
                    tracing::info!(token = %config.name, lifetime = ?lifetime, fingerprint = %crate::fingerprint(fetched.token.as_bytes()), "token obtained");
                    last_token = Some(fetched.token);
                    if is_file {
                        FILE_POLL
                    } else {
                        renew_after(lifetime, config.renew_before, jitter())
                    }
                }
                Err(reason) => failed(
                    &cell,
                    &config,
                    &metrics,
                    &mut failures,
                    "invalid_answer",
                    reason,
                ),
            },
            Err((label, error)) => failed(&cell, &config, &metrics, &mut failures, label, &error),
        };
        // A wake that arrived during the fetch is answered by its outcome.
        let _ = tokio::time::timeout(Duration::ZERO, cell.wake.notified()).await;
        tokio::select! {
            () = tokio::time::sleep_until(started + next) => early = 0,
            // An upstream refused the token: fetch early, but never during a failure
            // back-off, and ever more slowly while refusals continue.
            () = cell.wake.notified(), if failures == 0 => {
                let cooldown = MIN_INTERVAL.saturating_mul(1 << early.min(6)).min(MAX_EARLY_COOLDOWN);
                early += 1;
                tokio::select! {
                    () = tokio::time::sleep_until(started + cooldown) => {}
                    () = shutdown.cancelled() => return,
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Records a failed attempt and returns the back-off delay.
fn failed(
    cell: &TokenCell,
    config: &TokenConfig,
    metrics: &Metrics,
    failures: &mut u32,
    label: &str,
    error: &str,
) -> Duration {
    *failures += 1;
    cell.attempt_failed();
    metrics
        .token_refresh
        .with_label_values(&[&config.name, label])
        .inc();
    let delay = backoff(*failures, jitter());
    tracing::warn!(token = %config.name, error, attempt = *failures, retry_in = ?delay, "token fetch failed; the current token is used while it is valid");
    delay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Inject, RenewBefore};

    fn config() -> TokenConfig {
        TokenConfig {
            name: "t".into(),
            source: TokenSource::File { path: "/x".into() },
            renew_before: RenewBefore::Fraction(0.2),
            inject: Inject::parse("Bearer {token}").unwrap(),
            retry_on: vec![401],
            fetch_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn what_gets_published() {
        let c = config();
        let f = |token: &str, secs: Option<u64>| Fetched {
            token: token.into(),
            lifetime: secs.map(Duration::from_secs),
        };
        let cases: Vec<(Fetched, bool, Result<u64, &str>)> = vec![
            (f("abc", Some(300)), false, Ok(300)),
            (f("abc", None), false, Ok(3600)),
            (f("abc", None), true, Ok(MAX_LIFETIME.as_secs())),
            (
                f("abc", Some(1)),
                false,
                Err("the token expires too soon to be used (is the clock right?)"),
            ),
            (
                f("abc", Some(0)),
                true,
                Err("the token expires too soon to be used (is the clock right?)"),
            ),
            (
                f("a\nb", Some(300)),
                false,
                Err("the token cannot be sent in a header (control characters)"),
            ),
        ];
        for (fetched, is_file, want) in cases {
            let got = accept(&c, &fetched, is_file).map(|(h, l)| {
                assert!(h.is_sensitive());
                l.as_secs()
            });
            assert_eq!(got, want, "{fetched:?}");
        }
    }

    #[tokio::test]
    async fn a_waiter_gives_up_when_an_attempt_ends_without_a_newer_token() {
        let cell = TokenCell::new("t");
        cell.publish(
            HeaderValue::from_static("Bearer one"),
            Instant::now() + Duration::from_secs(60),
        );
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.newer_than(1, Duration::from_secs(30)).await })
        };
        // The woken renewal fails: the waiter returns None at once, not after 30s.
        cell.wake.notified().await;
        cell.attempt_failed();
        let started = std::time::Instant::now();
        assert!(waiter.await.unwrap().is_none());
        assert!(started.elapsed() < Duration::from_secs(30));
        // A newer token satisfies the next waiter.
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.newer_than(1, Duration::from_secs(30)).await })
        };
        cell.wake.notified().await;
        cell.publish(
            HeaderValue::from_static("Bearer two"),
            Instant::now() + Duration::from_secs(60),
        );
        assert_eq!(waiter.await.unwrap().unwrap().generation, 2);
    }

    #[test]
    fn renewal_is_requested_only_for_the_current_token() {
        let cell = TokenCell::new("t");
        cell.publish(
            HeaderValue::from_static("Bearer one"),
            Instant::now() + Duration::from_secs(60),
        );
        cell.publish(
            HeaderValue::from_static("Bearer two"),
            Instant::now() + Duration::from_secs(60),
        );
        cell.request_renewal(1); // already replaced: no wake
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let woke = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), cell.wake.notified())
                .await
                .is_ok()
        });
        assert!(!woke);
        cell.request_renewal(2);
        let woke = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), cell.wake.notified())
                .await
                .is_ok()
        });
        assert!(woke);
    }
}
