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
use super::source::{fetch, Fetched, Nonce, SourceError, MAX_LIFETIME};
use super::token::TokenCell;
use crate::client::HttpClient;
use crate::config::{TokenConfig, TokenSource};
use crate::metrics::Metrics;
use hyper::header::HeaderValue;
use std::future::Future;
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
    let fetch_once = {
        let (source, timeout) = (config.source.clone(), config.fetch_timeout);
        // The token endpoint's DPoP nonce, kept from one fetch to the next.
        let nonce = Arc::new(Nonce::default());
        move || {
            let (source, client, nonce) = (source.clone(), client.clone(), nonce.clone());
            async move { fetch(&source, &client, timeout, &nonce).await }
        }
    };
    tokio::spawn(async move {
        loop {
            let run = tokio::spawn(renew(
                cell.clone(),
                config.clone(),
                fetch_once.clone(),
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

/// What is published for a fetched token.
struct Accepted {
    header: HeaderValue,
    /// A DPoP-bound token's `ath`.
    ath: Option<Box<str>>,
    lifetime: Duration,
}

/// PURE: what to publish for a fetched token, or why not.
fn accept(
    config: &TokenConfig,
    fetched: &Fetched,
    is_file: bool,
) -> Result<Accepted, &'static str> {
    let header = config
        .inject
        .render(&fetched.token)
        .ok_or("the token cannot be sent in a header (control characters)")?;
    let bound = matches!(&config.source, TokenSource::OAuth(g) if g.dpop.is_some());
    let ath = bound.then(|| crate::sha256_base64url(fetched.token.as_bytes()).into());
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
    Ok(Accepted {
        header,
        ath,
        lifetime,
    })
}

/// The renewal loop of one source: `fetch_once` is one attempt (the token
/// endpoint or file in production, a script in the paused-clock tests below).
async fn renew<F, Fut>(
    cell: Arc<TokenCell>,
    config: TokenConfig,
    mut fetch_once: F,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Fetched, SourceError>>,
{
    let ok = metrics
        .token_refresh
        .with_label_values(&[&config.name, "ok"]);
    let is_file = matches!(config.source, TokenSource::File { .. });
    let mut failures = 0u32;
    let mut early = 0u32;
    let mut last_token: Option<String> = None;
    loop {
        let started = Instant::now();
        let outcome = tokio::time::timeout(config.fetch_timeout, fetch_once())
            .await
            .unwrap_or(Err(SourceError::Timeout));
        let next = match outcome.map_err(|e| (e.label(), e.to_string())) {
            // An unchanged token file: nothing to publish.
            Ok(fetched) if is_file && last_token.as_deref() == Some(fetched.token.as_str()) => {
                cell.attempt_failed();
                FILE_POLL
            }
            Ok(fetched) => match accept(&config, &fetched, is_file) {
                Ok(Accepted {
                    header,
                    ath,
                    lifetime,
                }) => {
                    // Counted from when the request started: never later than the server meant.
                    cell.publish(
                        header,
                        ath,
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
            upstream_tls: None,
        }
    }

    /// One scripted attempt: a token living this many seconds, or a failure.
    type Step = Option<(&'static str, u64)>;

    /// What each attempt saw: seconds since the start, and the token the cell
    /// handed out at that moment.
    type Seen = Arc<std::sync::Mutex<Vec<(f64, Option<String>)>>>;

    /// Runs the renewal loop on the paused clock against `script` (then failures),
    /// until `until` seconds have passed; returns what each attempt saw.
    async fn run_script(
        script: Vec<Step>,
        until: u64,
        wake_at: &[f64],
    ) -> Vec<(f64, Option<String>)> {
        let start = Instant::now();
        let cell = TokenCell::new("t");
        let seen: Seen = Arc::default();
        let script = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            script,
        )));
        let fetch_once = {
            let (cell, seen) = (cell.clone(), seen.clone());
            move || {
                let handed_out = cell
                    .usable()
                    .map(|t| t.header.to_str().unwrap_or_default().to_string());
                seen.lock()
                    .unwrap()
                    .push(((Instant::now() - start).as_secs_f64(), handed_out));
                let step = script.lock().unwrap().pop_front().flatten();
                std::future::ready(match step {
                    Some((token, secs)) => Ok(Fetched {
                        token: token.into(),
                        lifetime: Some(Duration::from_secs(secs)),
                    }),
                    None => Err(SourceError::Timeout),
                })
            }
        };
        let mut c = config();
        c.source = TokenSource::OAuth(Box::new(crate::config::OAuthGrant {
            token_url: hyper::Uri::from_static("http://127.0.0.1:9/token"),
            grant: crate::config::Grant::ClientCredentials,
            client: None,
            scopes: vec![],
            audience: None,
            resource: None,
            extra_params: vec![],
            dpop: None,
        }));
        let shutdown = CancellationToken::new();
        tokio::spawn(renew(
            cell.clone(),
            c,
            fetch_once,
            Arc::new(Metrics::new()),
            shutdown.clone(),
        ));
        for at in wake_at {
            tokio::time::sleep_until(start + Duration::from_secs_f64(*at)).await;
            let generation = cell.usable().map_or(0, |t| t.generation);
            cell.request_renewal(generation);
        }
        tokio::time::sleep_until(start + Duration::from_secs(until)).await;
        shutdown.cancel();
        let seen = seen.lock().unwrap().clone();
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_renewed_before_it_expires_and_kept_through_failed_fetches() {
        let seen = run_script(
            vec![Some(("a", 100)), None, None, Some(("b", 100))],
            170,
            &[],
        )
        .await;
        let at: Vec<f64> = seen.iter().map(|s| s.0).collect();
        // The first fetch at once; the renewal at 80% of the lifetime, moved
        // earlier by up to a quarter of the window (jitter).
        assert_eq!(at[0], 0.0);
        assert!((75.0..=80.0).contains(&at[1]), "{seen:?}");
        // Failures back off 0.5–1 s, then 1–2 s… (give or take the timer's
        // millisecond ticks, which a sleep is rounded up to).
        let tick = 0.002;
        assert!(
            (0.5 - tick..=1.0 + tick).contains(&(at[2] - at[1])),
            "{seen:?}"
        );
        assert!(
            (1.0 - tick..=2.0 + tick).contains(&(at[3] - at[2])),
            "{seen:?}"
        );
        // …while the current token is still handed out, until it is replaced.
        let bearer = |t: &str| Some(format!("Bearer {t}"));
        assert_eq!(seen[0].1, None);
        for s in &seen[1..4] {
            assert_eq!(s.1, bearer("a"), "{seen:?}");
        }
        // The next renewal counts from the new token's fetch.
        assert!((at[3] + 75.0..=at[3] + 80.0).contains(&at[4]), "{seen:?}");
        assert_eq!(seen[4].1, bearer("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_handed_out_until_it_really_expires_and_not_after() {
        let seen = run_script(vec![Some(("a", 10))], 20, &[]).await;
        assert!(seen.iter().any(|s| s.0 > 10.0), "{seen:?}");
        for (at, handed_out) in &seen[1..] {
            assert_eq!(handed_out.is_some(), *at < 10.0, "{seen:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_is_renewed_early_ever_more_slowly() {
        let tokens = vec![Some(("a", 100)), Some(("b", 100)), Some(("c", 100))];
        let seen = run_script(tokens, 100, &[10.0, 10.2]).await;
        let at: Vec<f64> = seen.iter().map(|s| s.0).collect();
        // The first refusal is answered at once, and the refused token is not
        // handed out meanwhile; the second waits out a doubled cooldown (2 s),
        // counted from the early fetch.
        assert_eq!(&at[..3], &[0.0, 10.0, 12.0], "{seen:?}");
        assert_eq!(seen[1].1, None);
        // Then the schedule is the plain one again.
        assert!((87.0..=92.0).contains(&at[3]), "{seen:?}");
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
            let got = accept(&c, &fetched, is_file).map(|a| {
                assert!(a.header.is_sensitive());
                assert!(a.ath.is_none(), "a bearer token has no ath");
                a.lifetime.as_secs()
            });
            assert_eq!(got, want, "{fetched:?}");
        }
    }
}
