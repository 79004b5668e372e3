//! The DPoP replay cache: each proof's `jti` (per proving key) is
//! remembered for as long as the proof would be accepted, so a proof is
//! taken once. Bounded: when every entry is still live, a new proof is
//! refused (503 `replay_cache_full`) rather than an old one forgotten,
//! which would let its replay through. Per process: replicas behind one
//! load balancer each have their own (docs/SECURITY.md says what that
//! means and how a shared store would close it).

use super::reject::Reject;
use prometheus::IntGauge;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

/// Shards, so concurrent proofs rarely wait on one lock.
const SHARDS: usize = 16;

pub struct ReplayCache {
    /// `hash(jkt, jti)` → the last second its proof is accepted. A 64-bit
    /// keyed hash: a collision (about 1 in 10^9 at 100 000 entries) refuses
    /// one honest proof, which its client retries with a fresh `jti`.
    shards: Box<[Mutex<HashMap<u64, u64>>]>,
    per_shard: usize,
    hasher: RandomState,
    entries: IntGauge,
}

impl ReplayCache {
    /// Holds up to `capacity` live proofs; `entries` counts them.
    pub fn new(capacity: usize, entries: IntGauge) -> ReplayCache {
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            entries,
        }
    }

    /// Takes proof `jti` of key `jkt`, accepted until `until`, at `now`: its
    /// first use, or a replay.
    pub fn first_use(&self, jkt: &str, jti: &str, until: u64, now: u64) -> Result<(), Reject> {
        let key = self.hasher.hash_one((jkt, jti));
        let shard = &self.shards[(key % SHARDS as u64) as usize];
        let mut seen = match shard.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        if seen.get(&key).is_some_and(|&last| last >= now) {
            return Err(Reject::ProofReplayed);
        }
        if seen.len() >= self.per_shard {
            let before = seen.len();
            seen.retain(|_, last| *last >= now);
            self.entries.sub((before - seen.len()) as i64);
            if seen.len() >= self.per_shard {
                return Err(Reject::ReplayCacheFull);
            }
        }
        if seen.insert(key, until).is_none() {
            self.entries.inc();
        }
        Ok(())
    }
}

impl Drop for ReplayCache {
    /// A reload's new guard starts its own cache: this one's entries leave
    /// the gauge with it.
    fn drop(&mut self) {
        let held: usize = self
            .shards
            .iter()
            .map(|s| s.lock().map_or(0, |seen| seen.len()))
            .sum();
        self.entries.sub(held as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_taken_once_within_its_life_and_a_full_cache_refuses() {
        let gauge = IntGauge::new("entries", "entries").unwrap();
        let cache = ReplayCache::new(SHARDS, gauge.clone());
        assert_eq!(cache.first_use("k", "a", 160, 100), Ok(()));
        assert_eq!(
            cache.first_use("k", "a", 160, 150),
            Err(Reject::ProofReplayed)
        );
        assert_eq!(
            cache.first_use("k", "a", 160, 160),
            Err(Reject::ProofReplayed)
        );
        // Another key's jti is its own.
        assert_eq!(cache.first_use("other", "a", 160, 150), Ok(()));
        // Past its life, the proof is refused by its iat, not remembered.
        assert_eq!(cache.first_use("k", "a", 230, 161), Ok(()));
        // One entry per shard: fill them all with live proofs.
        let mut refused = 0;
        for i in 0..(SHARDS * 8) {
            match cache.first_use("k", &format!("fill-{i}"), 300, 170) {
                Ok(()) => {}
                Err(Reject::ReplayCacheFull) => refused += 1,
                Err(other) => panic!("{other}"),
            }
        }
        assert!(refused > 0, "a full cache refuses");
        assert!(gauge.get() as usize <= SHARDS, "{}", gauge.get());
        // Once they are past their life, room is made.
        assert_eq!(cache.first_use("k", "late", 400, 301), Ok(()));
    }
}
