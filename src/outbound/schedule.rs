//! PURE: when to renew a token, and how long to wait after a failed fetch. The
//! randomness comes in as an argument (`jitter` in [0, 1)), so the schedule is a
//! plain function with table tests; `jitter()` supplies it at run time.

use crate::config::RenewBefore;
use std::time::Duration;

/// Never schedule fetches closer together than this, whatever the token server says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Delay from receiving a token that lives `lifetime` until renewing it.
///
/// The renewal window is `renew_before` (a fraction of the lifetime, or a fixed
/// lead capped at 90% of it); `jitter` moves the renewal earlier by up to a
/// quarter of that window, so sidecars started together spread their fetches.
pub fn renew_after(lifetime: Duration, before: RenewBefore, jitter: f64) -> Duration {
    let window = match before {
        RenewBefore::Fraction(f) => lifetime.mul_f64(f.clamp(0.0, 1.0)),
        RenewBefore::Ahead(lead) => lead.min(lifetime.mul_f64(0.9)),
    };
    let spread = window.mul_f64(0.25 * jitter.clamp(0.0, 1.0));
    lifetime
        .saturating_sub(window)
        .saturating_sub(spread)
        .max(MIN_INTERVAL)
}

/// Delay before retry number `failures` (1-based): 1s, 2s, 4s … capped at 60s,
/// each scaled into [50%, 100%) by `jitter`.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let base =
        Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60));
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
        .max(Duration::from_millis(500))
}

/// A uniform sample in [0, 1) from the system RNG (0.5 if it is unavailable).
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn renewal_schedule() {
        let cases = [
            // lifetime, renew_before, jitter → renew after
            (secs(3600.0), RenewBefore::Fraction(0.2), 0.0, secs(2880.0)),
            (
                secs(3600.0),
                RenewBefore::Fraction(0.2),
                0.999_999,
                secs(2700.0),
            ),
            (secs(3600.0), RenewBefore::Fraction(0.2), 0.5, secs(2790.0)),
            (
                secs(3600.0),
                RenewBefore::Ahead(secs(60.0)),
                0.0,
                secs(3540.0),
            ),
            (
                secs(3600.0),
                RenewBefore::Ahead(secs(60.0)),
                0.999_999,
                secs(3525.0),
            ),
            (secs(6.0), RenewBefore::Fraction(0.2), 0.0, secs(4.8)),
            (secs(6.0), RenewBefore::Fraction(0.2), 0.999_999, secs(4.5)),
            // A lead longer than the lifetime is capped at 90% of it.
            (
                secs(100.0),
                RenewBefore::Ahead(secs(300.0)),
                0.0,
                secs(10.0),
            ),
            // Tiny or zero lifetimes never schedule a busy loop.
            (secs(0.5), RenewBefore::Fraction(0.2), 0.0, MIN_INTERVAL),
            (
                Duration::ZERO,
                RenewBefore::Fraction(0.2),
                0.0,
                MIN_INTERVAL,
            ),
        ];
        for (lifetime, before, jitter, want) in cases {
            let got = renew_after(lifetime, before, jitter);
            assert!(
                got.abs_diff(want) < Duration::from_millis(2),
                "{lifetime:?} {before:?} jitter {jitter}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn renewal_always_lands_before_expiry_for_realistic_lifetimes() {
        for lifetime in [2u64, 6, 60, 300, 3600, 86_400] {
            for before in [
                RenewBefore::Fraction(0.01),
                RenewBefore::Fraction(0.9),
                RenewBefore::Ahead(secs(30.0)),
            ] {
                for jitter in [0.0, 0.3, 0.999] {
                    let at = renew_after(Duration::from_secs(lifetime), before, jitter);
                    assert!(
                        at < Duration::from_secs(lifetime),
                        "{lifetime}s {before:?} {jitter}"
                    );
                }
            }
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let cases = [
            (1, 0.0, 0.5),
            (1, 0.999_999, 1.0),
            (2, 0.0, 1.0),
            (3, 0.0, 2.0),
            (4, 0.999_999, 8.0),
            (7, 0.999_999, 60.0),
            (50, 0.0, 30.0),
        ];
        for (failures, jitter, want) in cases {
            let got = backoff(failures, jitter);
            assert!(
                got.abs_diff(secs(want)) < Duration::from_millis(2),
                "{failures} {jitter}: {got:?} vs {want}s"
            );
        }
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let samples: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(samples.windows(2).any(|w| w[0] != w[1]));
    }
}
