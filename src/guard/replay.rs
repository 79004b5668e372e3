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
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    entries: IntGauge,
}

/// One shard's proofs, and the soonest second any of them may expire: while
/// a full shard's `soonest` is still ahead, nothing in it can be dropped, so
/// a flood of proofs against a full cache is refused without a rescan each.
struct Shard {
    seen: HashMap<u64, u64>,
    /// At most the least `last` in `seen` (exact after a sweep; `u64::MAX`
    /// while empty).
    soonest: u64,
}

impl Shard {
    /// Drops the proofs past their life at `now`, if any can be (none while
    /// `soonest` is still ahead); how many went.
    fn sweep(&mut self, now: u64) -> usize {
        if self.soonest >= now {
            return 0;
        }
        let before = self.seen.len();
        let mut soonest = u64::MAX;
        self.seen.retain(|_, &mut last| {
            let live = last >= now;
            if live {
                soonest = soonest.min(last);
            }
            live
        });
        self.soonest = soonest;
        before - self.seen.len()
    }
}

impl ReplayCache {
    /// Holds up to `capacity` live proofs; `entries` counts them.
    pub fn new(capacity: usize, entries: IntGauge) -> ReplayCache {
        let empty = || {
            Mutex::new(Shard {
                seen: HashMap::new(),
                soonest: u64::MAX,
            })
        };
        ReplayCache {
            shards: (0..SHARDS).map(|_| empty()).collect(),
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
        let mut shard = match shard.lock() {
            Ok(shard) => shard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if shard.seen.get(&key).is_some_and(|&last| last >= now) {
            return Err(Reject::ProofReplayed);
        }
        if shard.seen.len() >= self.per_shard {
            let dropped = shard.sweep(now);
            self.entries.sub(dropped as i64);
            if shard.seen.len() >= self.per_shard {
                return Err(Reject::ReplayCacheFull);
            }
        }
        if shard.seen.insert(key, until).is_none() {
            self.entries.inc();
        }
        shard.soonest = shard.soonest.min(until);
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
            .map(|s| s.lock().map_or(0, |shard| shard.seen.len()))
            .sum();
        self.entries.sub(held as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_taken_once_within_its_life() {
        let gauge = IntGauge::new("entries", "entries").unwrap();
        // Room enough that no shard fills, wherever the keyed hash puts these.
        let cache = ReplayCache::new(SHARDS * 8, gauge.clone());
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
        assert_eq!(gauge.get(), 2);
    }

    #[test]
    fn a_full_cache_refuses_until_its_proofs_are_past_their_life() {
        let gauge = IntGauge::new("entries", "entries").unwrap();
        let cache = ReplayCache::new(SHARDS, gauge.clone());
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

    #[test]
    fn a_shard_knows_its_soonest_expiry_so_a_full_one_is_not_rescanned_in_vain() {
        let gauge = IntGauge::new("entries", "entries").unwrap();
        let cache = ReplayCache::new(SHARDS * 2, gauge);
        let soonest = |cache: &ReplayCache| -> Vec<u64> {
            let shards = cache.shards.iter();
            shards.map(|s| s.lock().unwrap().soonest).collect()
        };
        assert!(soonest(&cache).iter().all(|&s| s == u64::MAX));
        // Some shards fill (two proofs each), so some proofs are refused.
        for i in 0..40 {
            let until = [200, 150, 300][i % 3];
            let _ = cache.first_use("k", &format!("p{i}"), until, 100);
        }
        for shard in cache.shards.iter() {
            let shard = shard.lock().unwrap();
            let least = shard.seen.values().copied().min().unwrap_or(u64::MAX);
            assert_eq!(shard.soonest, least, "{:?}", shard.seen);
        }
        // A sweep past the soonest drops exactly the proofs past their life
        // and leaves `soonest` exact again.
        let mut shard = Shard {
            seen: HashMap::from([(1, 150), (2, 200), (3, 300)]),
            soonest: 150,
        };
        assert_eq!(shard.sweep(151), 1);
        assert_eq!(shard.soonest, 200);
        assert_eq!(shard.sweep(301), 2);
        assert_eq!((shard.seen.len(), shard.soonest), (0, u64::MAX));
    }
}
