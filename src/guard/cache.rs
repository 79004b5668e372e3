//! Verified-token cache: token → `VerifiedToken`, bounded, entries expiring at
//! the token's own `exp`. A hit is only possible for the exact bytes that
//! verified (the whole token is compared), and is re-checked for expiry and for
//! its key still being published.
//!
//! Keyed by a 64-bit hash, under a per-cache random key, of the token's last
//! `HASHED_SUFFIX` bytes (signature bytes, which differ between any two tokens an
//! issuer signs), with the token kept in the entry: moka then hashes 8 bytes
//! instead of a ~1 KiB token on every lookup, insert, eviction and table resize
//! (with a unique token per request, re-hashing whole tokens was a fifth of the
//! CPU time), and a lookup costs the same whatever the token's size. A collision,
//! even a crafted one, can only cost a miss, never a wrong hit: the whole token
//! is compared, and a token that fails verification is never inserted.
//!
//! Once the cache is full, a token enters it on its second verification, not
//! its first: a [`Doorkeeper`] remembers the keys of tokens verified once. A
//! token used once (minted per call, a burst of new clients, a flood of
//! valid-looking tokens) then costs no insert and no eviction of a token in
//! use; a token used again costs one verification more, once. While the cache
//! has room, admitting costs no eviction, so every verified token enters at
//! once. This is the doorkeeper of TinyLFU (Einziger, Friedman and Manes,
//! "TinyLFU: A Highly Efficient Cache Admission Policy", 2017), placed in front
//! of moka, whose own admission still weighs what gets past it.

use super::keys::KeySnapshot;
use super::verify::VerifiedToken;
use moka::sync::Cache;
use moka::Expiry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much of the token's end is hashed for its key.
const HASHED_SUFFIX: usize = 32;

fn key_bytes(token: &[u8]) -> &[u8] {
    &token[token.len().saturating_sub(HASHED_SUFFIX)..]
}

pub struct TokenCache<S = RandomState> {
    inner: Option<Cache<u64, Arc<Entry>, BuildHasherDefault<PreHashed>>>,
    max_entries: u64,
    doorkeeper: Doorkeeper,
    /// Keyed hasher for tokens; random per cache, so collisions cannot be chosen.
    hasher: S,
}

struct Entry {
    token: Box<[u8]>,
    verified: Arc<VerifiedToken>,
    /// How long the entry is kept: until its verification no longer holds.
    lifetime: Duration,
}

/// moka hashes keys again, for its buckets and its frequency sketch. Ours are
/// already keyed 64-bit hashes, so they are used as they are (a second SipHash
/// was about 140 instructions of each cache hit).
#[derive(Default)]
pub(super) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    // Only `u64` keys reach this hasher; any other input is still mixed in.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

/// Evicts each entry once its verification no longer holds (its `lifetime`,
/// from the `now` it was inserted at; a hit checks `valid_until` itself).
struct UntilExp;

impl Expiry<u64, Arc<Entry>> for UntilExp {
    fn expire_after_create(&self, _: &u64, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(entry.lifetime)
    }
}

impl TokenCache {
    /// `max_entries == 0` disables caching.
    pub fn new(max_entries: u64) -> Self {
        TokenCache::with_hasher(max_entries, RandomState::new())
    }
}

impl<S: BuildHasher> TokenCache<S> {
    fn with_hasher(max_entries: u64, hasher: S) -> Self {
        let inner = (max_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExp)
                .build_with_hasher(BuildHasherDefault::<PreHashed>::default())
        });
        TokenCache {
            inner,
            max_entries,
            doorkeeper: Doorkeeper::new(max_entries),
            hasher,
        }
    }

    /// A verification of exactly `token` that still holds at `now`: not past its
    /// `valid_until`, its key still published, and its issuer's keys not past their
    /// stale bound in `keys`.
    /// `token` is the header's bytes as sent: an entry only holds a token that
    /// verified, so a hit needs no check of its characters.
    pub fn get(&self, token: &[u8], keys: &KeySnapshot, now: u64) -> Option<Arc<VerifiedToken>> {
        let cache = self.inner.as_ref()?;
        let key = self.hasher.hash_one(key_bytes(token));
        let entry = cache.get(&key)?;
        if *entry.token != *token {
            return None;
        }
        let hit = &entry.verified;
        if !hit.is_current(now) {
            cache.invalidate(&key);
            return None;
        }
        // Stale keys may come back; keep the entry but do not use it meanwhile.
        keys.issuers
            .get(hit.issuer.index())
            .is_some_and(|s| s.is_usable(now))
            .then(|| hit.clone())
    }

    /// Offers a verification of `token` to the cache: kept while the cache has
    /// room; once it is full, only if the same token was verified before
    /// (within the doorkeeper's memory), else only remembered. `now` is the
    /// time `verified` was judged at: the entry is kept until it no longer
    /// holds.
    pub fn insert(&self, token: &[u8], verified: Arc<VerifiedToken>, now: u64) {
        let Some(cache) = &self.inner else { return };
        let key = self.hasher.hash_one(key_bytes(token));
        // moka's count lags its pending writes by a little: close enough here.
        if !self.admits(key, cache.entry_count() >= self.max_entries) {
            return;
        }
        let lifetime = verified.valid_until.saturating_sub(now).saturating_add(1);
        let entry = Entry {
            token: token.into(),
            verified,
            lifetime: Duration::from_secs(lifetime),
        };
        cache.insert(key, Arc::new(entry));
    }
}

impl<S> TokenCache<S> {
    /// Whether a verified token with `key` goes into the cache: always while it
    /// has room (admitting evicts nothing); once it is `full`, if the
    /// doorkeeper has seen the key before (and it remembers it now).
    fn admits(&self, key: u64, full: bool) -> bool {
        !full || self.doorkeeper.seen_before(key)
    }
}

/// A Bloom filter of the keys of tokens verified since it was last cleared,
/// two bits per key (the key's halves: it is already a keyed, uniform hash).
/// It forgets everything after `window` new keys, so it stays accurate and a
/// token must come back within that many other new tokens to be cached: four
/// times the cache's size (TinyLFU resets its own counts after ten), so at
/// 20 000 new tokens a second it remembers the last 0–2 s. A false
/// positive only lets a token in on its first verification, as if there were
/// no doorkeeper; nothing it says can make a hit.
struct Doorkeeper {
    bits: Box<[AtomicU64]>,
    /// Bit index mask: the filter has a power-of-two number of bits.
    mask: u64,
    /// New keys since the last clear.
    marked: AtomicU64,
    window: u64,
}

impl Doorkeeper {
    /// New keys remembered, per cache entry.
    const WINDOW_PER_ENTRY: u64 = 4;
    const MIN_WINDOW: u64 = 1024;
    /// Bits per remembered key, at least (rounded up to a power of two): for
    /// the default 10 000 entries 64 KiB, 13 bits a key, and at a full window
    /// about 2% of new tokens are taken for seen (under 1% on average over one).
    const BITS_PER_KEY: u64 = 10;
    /// 2 MiB at most, whatever the cache's size: the window is capped to fit.
    const MAX_BITS: u64 = 1 << 24;

    fn new(cache_entries: u64) -> Self {
        let window = cache_entries
            .saturating_mul(Self::WINDOW_PER_ENTRY)
            .clamp(Self::MIN_WINDOW, Self::MAX_BITS / Self::BITS_PER_KEY);
        let bits = (window * Self::BITS_PER_KEY).next_power_of_two();
        Doorkeeper {
            bits: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: bits - 1,
            marked: AtomicU64::new(0),
            window,
        }
    }

    /// Remembers `key`; whether it was remembered already.
    fn seen_before(&self, key: u64) -> bool {
        let first = self.mark(key & self.mask);
        let second = self.mark((key >> 32) & self.mask);
        if !(first || second) {
            return true;
        }
        if self.marked.fetch_add(1, Relaxed) + 1 >= self.window {
            self.clear();
        }
        false
    }

    /// Sets one bit; whether it was clear.
    fn mark(&self, bit: u64) -> bool {
        // Within `mask`, so within `bits`.
        let word = &self.bits[(bit / 64) as usize];
        let mask = 1 << (bit % 64);
        word.load(Relaxed) & mask == 0 && word.fetch_or(mask, Relaxed) & mask == 0
    }

    /// Racing marks may survive a clear or be lost to it: either way a token
    /// is cached one verification sooner or later, never wrongly.
    fn clear(&self) {
        self.marked.store(0, Relaxed);
        for word in &*self.bits {
            word.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::sign_with_header;
    use crate::guard::verify::tests::verifier_for;
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-cache";

    /// Every token hashes to 0: each lookup lands on a colliding entry.
    #[derive(Default)]
    struct Collide;
    impl Hasher for Collide {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }

    fn shared_secret_verifier() -> crate::guard::verify::Verifier {
        verifier_for(&format!(
            "issuer: peer, audiences: [api], algorithms: [HS256], shared_secret: \"{SECRET}\""
        ))
    }

    fn signed(claims: &serde_json::Value) -> String {
        sign_with_header(&json!({"alg": "HS256"}), claims, |m| {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
            aws_lc_rs::hmac::sign(&key, m).as_ref().to_vec()
        })
    }

    fn verified(sub: &str, now: u64) -> (String, Arc<VerifiedToken>) {
        let token = signed(&json!({"iss": "peer", "aud": "api", "sub": sub, "exp": now + 60}));
        let keys = KeySnapshot {
            issuers: vec![Arc::default()],
        };
        let v = shared_secret_verifier().verify(&token, &keys, now).unwrap();
        (token, Arc::new(v))
    }

    /// The wall clock jumping either way after a token was cached: a hit is
    /// given exactly when a fresh verification at the new time would pass.
    #[test]
    fn after_a_clock_jump_a_hit_is_what_a_fresh_verification_would_say() {
        let now = 1_800_000_000;
        let verifier = shared_secret_verifier();
        let token = signed(&json!({
            "iss": "peer", "aud": "api", "sub": "alice",
            "iat": now, "nbf": now, "exp": now + 60,
        }));
        let keys = usable();
        let cache = TokenCache::new(100);
        // 30 s default leeway either side.
        for (jumped_to, hit) in [
            (now - 3600, false),
            (now - 31, false),
            (now - 30, true),
            (now, true),
            (now + 90, true),
            (now + 91, false),
            (now + 7200, false),
        ] {
            // Cached at `now`; a miss drops the entry, so each row caches anew.
            cache.insert(
                token.as_bytes(),
                Arc::new(verifier.verify(&token, &keys, now).unwrap()),
                now,
            );
            let fresh = verifier.verify(&token, &keys, jumped_to).is_ok();
            assert_eq!(fresh, hit, "a fresh verification at {jumped_to}");
            assert_eq!(
                cache.get(token.as_bytes(), &keys, jumped_to).is_some(),
                hit,
                "a cache hit at {jumped_to}"
            );
        }
    }

    fn usable() -> KeySnapshot {
        KeySnapshot {
            issuers: vec![Arc::new(super::super::keys::KeySet::never_stale(vec![]))],
        }
    }

    #[test]
    fn hits_only_the_exact_token_even_when_hashes_collide() {
        let now = 1_800_000_000;
        let cache = TokenCache::with_hasher(100, BuildHasherDefault::<Collide>::default());
        let (alice, alice_v) = verified("alice", now);
        let (bob, _) = verified("bob", now);
        cache.insert(alice.as_bytes(), alice_v, now);
        let keys = usable();
        assert!(cache.get(alice.as_bytes(), &keys, now).is_some());
        assert!(
            cache.get(bob.as_bytes(), &keys, now).is_none(),
            "same hash, other token"
        );
        assert!(
            cache
                .get(&alice.as_bytes()[..alice.len() - 1], &keys, now)
                .is_none(),
            "a prefix is another token"
        );
        assert!(
            cache.get(alice.as_bytes(), &keys, now + 60 + 31).is_none(),
            "expired (30 s default leeway)"
        );
    }

    #[test]
    fn random_keyed_cache_hits_and_can_be_disabled() {
        let now = 1_800_000_000;
        let (alice, alice_v) = verified("alice", now);
        let (bob, _) = verified("bob", now);
        let keys = usable();
        let cache = TokenCache::new(100);
        cache.insert(alice.as_bytes(), alice_v.clone(), now);
        assert!(cache.get(alice.as_bytes(), &keys, now).is_some());
        assert!(cache.get(bob.as_bytes(), &keys, now).is_none());
        // Same signature bytes, so the same key, but not the token that verified.
        let (bob_input, _) = bob.rsplit_once('.').unwrap();
        let (_, alice_sig) = alice.rsplit_once('.').unwrap();
        let spliced = format!("{bob_input}.{alice_sig}");
        assert_eq!(key_bytes(spliced.as_bytes()), key_bytes(alice.as_bytes()));
        assert!(cache.get(spliced.as_bytes(), &keys, now).is_none());
        assert!(cache
            .get(format!("x{alice}").as_bytes(), &keys, now)
            .is_none());
        let off = TokenCache::new(0);
        off.insert(alice.as_bytes(), alice_v, now);
        assert!(off.get(alice.as_bytes(), &keys, now).is_none());
    }

    /// FNV-1a: a fixed hasher, so which keys the filter confuses is the same
    /// on every run and every toolchain.
    struct Fnv(u64);
    impl Default for Fnv {
        fn default() -> Self {
            Fnv(0xcbf2_9ce4_8422_2325)
        }
    }
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }

    /// While the cache has room every verified token goes in; once it is full,
    /// a token verified once goes in nowhere and displaces nothing.
    #[test]
    fn once_full_a_token_verified_once_displaces_nothing() {
        let now = 1_800_000_000;
        let keys = usable();
        let cache = TokenCache::with_hasher(4, BuildHasherDefault::<Fnv>::default());
        let held: Vec<_> = (0..4)
            .map(|i| verified(&format!("held-{i}"), now))
            .collect();
        for (token, v) in &held {
            cache.insert(token.as_bytes(), v.clone(), now);
        }
        let settle = || cache.inner.as_ref().unwrap().run_pending_tasks();
        settle();
        for (token, _) in &held {
            assert!(
                cache.get(token.as_bytes(), &keys, now).is_some(),
                "room: cached at once"
            );
        }
        for i in 0..20 {
            let (once, v) = verified(&format!("once-{i}"), now);
            cache.insert(once.as_bytes(), v, now);
            // Not even offered: moka shows an insert at once, until its own
            // admission (when its pending tasks run) may take it out again.
            assert!(cache.get(once.as_bytes(), &keys, now).is_none(), "once-{i}");
            settle();
        }
        for (token, _) in &held {
            assert!(
                cache.get(token.as_bytes(), &keys, now).is_some(),
                "still held"
            );
        }
    }

    #[test]
    fn admission_by_room_then_by_the_doorkeeper() {
        let cache = TokenCache::with_hasher(4, BuildHasherDefault::<Fnv>::default());
        // (key, cache full, admitted)
        for (key, full, admitted) in [
            (1, false, true),
            (1, true, false), // room did not mark it: seen now, first time
            (1, true, true),
            (2, true, false),
            (2, false, true),
            (2, true, true),
            (3, false, true),
            (3, false, true),
        ] {
            assert_eq!(cache.admits(key, full), admitted, "key {key}, full {full}");
        }
    }

    /// Keys as the keyed hasher makes them: uniform 64-bit values.
    fn keys(seed: u64, n: usize) -> impl Iterator<Item = u64> {
        let mut x = seed;
        std::iter::repeat_with(move || {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .take(n)
    }

    #[test]
    fn the_doorkeeper_remembers_its_window_and_rarely_takes_a_new_key_for_seen() {
        for entries in [0, 1, 100, 10_000, 100_000] {
            let door = Doorkeeper::new(entries);
            let window = door.window as usize;
            assert!(window >= entries as usize && window >= 1024, "{entries}");
            assert!(door.bits.len() as u64 * 64 >= window as u64 * Doorkeeper::BITS_PER_KEY);
            // Just short of the window: every remembered key is still there.
            let seen: Vec<u64> = keys(entries, window - 1).collect();
            let new_taken_for_seen = seen.iter().filter(|&&k| door.seen_before(k)).count();
            assert!(seen.iter().all(|&k| door.seen_before(k)), "{entries}");
            // About 0.5% on average while a window fills.
            assert!(
                new_taken_for_seen < window / 50,
                "{entries}: {new_taken_for_seen} of {window}"
            );
        }
    }

    #[test]
    fn the_doorkeeper_forgets_after_its_window() {
        let door = Doorkeeper::new(0);
        let window = door.window as usize;
        let first = 1;
        assert!(!door.seen_before(first));
        // New keys until the window is full (a false positive is not a new key).
        let fed = keys(2, 2 * window)
            .take_while(|&k| {
                door.seen_before(k);
                door.marked.load(Relaxed) > 0
            })
            .count();
        assert!((window - 2..window + window / 50).contains(&fed), "{fed}");
        assert!(!door.seen_before(first), "forgotten");
        assert!(door.seen_before(first));
    }
}
