//! The scheduled refresh: one task per JWKS issuer, fetching again when the
//! answer's `max-age` (within the configured bounds) runs out, backing off
//! after failures.

use super::{FetchError, Jwks};
use crate::config::{IssuerId, JwksCachePolicy, KeySource};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl Jwks {
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
                let state = &jwks.issuers[idx];
                if state.on_demand {
                    // The first token's own fetch loads the keys (it tells
                    // once done); the schedule starts from there.
                    tokio::select! {
                        () = state.first_use.notified() => {}
                        () = shutdown.cancelled() => return,
                    }
                    let wait = match jwks.is_usable(idx) {
                        true => refresh_after(None, &state.policy),
                        false => retry_after(1, &state.policy),
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
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
}
