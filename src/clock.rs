//! The wall clock, in the unit tokens speak: seconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long until the Unix time `at` (in seconds) by the wall clock, to the
/// nanosecond: zero once it has passed.
pub fn until(at: u64) -> Duration {
    match UNIX_EPOCH.checked_add(Duration::from_secs(at)) {
        Some(at) => at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
        // Past what the clock can hold: as good as never.
        None => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_counts_the_part_of_a_second_already_gone() {
        let now = unix_now();
        assert_eq!(until(now), Duration::ZERO);
        assert_eq!(until(0), Duration::ZERO);
        assert_eq!(until(u64::MAX), Duration::MAX);
        // Measured within one second of the clock (a tick between the two
        // reads would leave less than a second: read again).
        let left = loop {
            let now = unix_now();
            let left = until(now + 2);
            if unix_now() == now {
                break left;
            }
        };
        assert!(
            left > Duration::from_secs(1) && left <= Duration::from_secs(2),
            "{left:?}"
        );
    }
}
