//! Verified-token cache: full token text → `VerifiedToken`, bounded, entries
//! expiring at the token's own `exp`. Keyed by the whole token, so a hit is only
//! possible for the exact bytes that verified; a hit is re-checked for expiry
//! and for its key still being published.

use super::keys::KeySnapshot;
use super::verify::VerifiedToken;
use moka::sync::Cache;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct TokenCache {
    inner: Option<Cache<Box<str>, Arc<VerifiedToken>>>,
}

/// Evicts each entry once its verification no longer holds (`valid_until`).
struct UntilExp;

impl Expiry<Box<str>, Arc<VerifiedToken>> for UntilExp {
    fn expire_after_create(
        &self,
        _: &Box<str>,
        token: &Arc<VerifiedToken>,
        _: Instant,
    ) -> Option<Duration> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Some(Duration::from_secs(
            token.valid_until.saturating_sub(now).saturating_add(1),
        ))
    }
}

impl TokenCache {
    /// `max_entries == 0` disables caching.
    pub fn new(max_entries: u64) -> Self {
        let inner = (max_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExp)
                .build()
        });
        TokenCache { inner }
    }

    /// A verification of exactly `token` that still holds at `now`: not past its
    /// `valid_until`, its key still published, and its issuer's keys not past their
    /// stale bound in `keys`.
    pub fn get(&self, token: &str, keys: &KeySnapshot, now: u64) -> Option<Arc<VerifiedToken>> {
        let cache = self.inner.as_ref()?;
        let hit = cache.get(token)?;
        if !hit.is_current(now) {
            cache.invalidate(token);
            return None;
        }
        // Stale keys may come back; keep the entry but do not use it meanwhile.
        keys.issuers
            .get(hit.issuer)
            .is_some_and(|s| s.is_usable(now))
            .then_some(hit)
    }

    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>) {
        if let Some(cache) = &self.inner {
            cache.insert(token.into(), verified);
        }
    }
}
