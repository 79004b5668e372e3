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

use super::keys::KeySnapshot;
use super::verify::VerifiedToken;
use moka::sync::Cache;
use moka::Expiry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How much of the token's end is hashed for its key.
const HASHED_SUFFIX: usize = 32;

fn key_bytes(token: &[u8]) -> &[u8] {
    &token[token.len().saturating_sub(HASHED_SUFFIX)..]
}

pub struct TokenCache<S = RandomState> {
    inner: Option<Cache<u64, Arc<Entry>, BuildHasherDefault<PreHashed>>>,
    /// Keyed hasher for tokens; random per cache, so collisions cannot be chosen.
    hasher: S,
}

struct Entry {
    token: Box<[u8]>,
    verified: Arc<VerifiedToken>,
}

/// moka hashes keys again, for its buckets and its frequency sketch. Ours are
/// already keyed 64-bit hashes, so they are used as they are (a second SipHash
/// was about 140 instructions of each cache hit).
#[derive(Default)]
struct PreHashed(u64);

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

/// Evicts each entry once its verification no longer holds (`valid_until`).
struct UntilExp;

impl Expiry<u64, Arc<Entry>> for UntilExp {
    fn expire_after_create(&self, _: &u64, entry: &Arc<Entry>, _: Instant) -> Option<Duration> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Some(Duration::from_secs(
            entry
                .verified
                .valid_until
                .saturating_sub(now)
                .saturating_add(1),
        ))
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
        TokenCache { inner, hasher }
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

    pub fn insert(&self, token: &[u8], verified: Arc<VerifiedToken>) {
        if let Some(cache) = &self.inner {
            let entry = Entry {
                token: token.into(),
                verified,
            };
            cache.insert(self.hasher.hash_one(key_bytes(token)), Arc::new(entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::sign_with_header;
    use crate::inbound::verify::tests::verifier_for;
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

    fn shared_secret_verifier() -> crate::inbound::verify::Verifier {
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
        cache.insert(alice.as_bytes(), alice_v);
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
        cache.insert(alice.as_bytes(), alice_v.clone());
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
        off.insert(alice.as_bytes(), alice_v);
        assert!(off.get(alice.as_bytes(), &keys, now).is_none());
    }
}
