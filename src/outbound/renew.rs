//! The token lifecycle. One renewal task per source is the only place that
//! fetches, so however many requests arrive there is one fetch at a time per
//! source. It publishes the current `Token` (and a count of finished fetch
//! attempts) through a `watch` channel; requests read it without awaiting.
//!
//! - fetched at start; readiness waits for every source's first token;
//! - renewed at `renew_before` with jitter (`schedule::renew_after`), counted from
//!   when the previous fetch started;
//! - failures retry with exponential back-off and jitter, and the current token
//!   keeps being used until it really expires;
//! - after an upstream `retry_on` answer a request may wake the task for an early
//!   fetch (cooldown 1s, doubling up to 60s while the refusals continue, never
//!   during a failure back-off) and waits, bounded, for its outcome;
//! - the task is supervised: a panic is logged and the task restarted.

use super::schedule::{backoff, jitter, renew_after, MIN_INTERVAL};
use super::source::{fetch, Fetched, SourceError, MAX_LIFETIME};
use super::token::TokenCell;
use crate::client::HttpClient;
use crate::config::{TokenConfig, TokenSource};
use crate::metrics::Metrics;
use hyper::header::HeaderValue;
use std::sync::Arc;
use std::time::Duration;
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

/// Starts the (supervised) renewal task of one source; it fetches with the
/// source's own `tls` when it has one, else with `client`.
pub fn spawn_renewal(
    cell: Arc<TokenCell>,
    config: TokenConfig,
    client: HttpClient,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let client = client.with_tls(config.tls.as_deref());
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
                    tracing::info!(token = %config.name, lifetime_s = lifetime.as_secs(), fingerprint = %crate::fingerprint(fetched.token.as_bytes()), "token obtained");
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
    cell.fetch_failed(error);
    metrics
        .token_refresh
        .with_label_values(&[&config.name, label])
        .inc();
    let delay = backoff(*failures, jitter());
    let retry_in_ms = delay.as_millis() as u64;
    match cell.seconds_left() {
        Some(left) if left > 0.0 => {
            tracing::warn!(token = %config.name, error, attempt = *failures, retry_in_ms, "token fetch failed; the current token is used while it is valid");
        }
        _ => {
            tracing::warn!(token = %config.name, error, attempt = *failures, retry_in_ms, "token fetch failed; requests wait for a token, then get 503");
        }
    }
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
            tls: None,
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
}
