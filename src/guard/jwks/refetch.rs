//! The refetch a request asks for: a token naming a kid the keys lack, or
//! keys past their stale bound. Single flight, at most one per
//! `refetch_cooldown`, and a kid still unknown after a successful fetch is
//! remembered (`unknown_kid_ttl`) so a flood of made-up kids fetches nothing.

use super::Jwks;
use crate::clock::unix_now;
use crate::config::IssuerId;
use std::time::Instant;

/// What a request's refetch came to ([`Jwks::refetch`]).
enum Refetch {
    /// What the request wanted was there once the fetch lock was ours.
    NotNeeded,
    /// A refetch ran within the cooldown (or the issuer has no JWKS): none now.
    CoolingDown,
    /// A refetch ran: whether it succeeded, and whether the request has what it wanted.
    Done { fetched: bool, satisfied: bool },
}

impl Jwks {
    /// Called when a token names a kid the snapshot lacks. Refetches at most once
    /// per cooldown; returns true when the kid is now known.
    pub async fn refresh_for_unknown_kid(&self, id: IssuerId, kid: &str) -> bool {
        let idx = id.index();
        let Some(state) = self.issuers.get(idx) else {
            return false;
        };
        if state.unknown_kids.contains_key(kid) {
            return false;
        }
        match self.refetch(idx, || self.knows(idx, kid)).await {
            Refetch::NotNeeded => true,
            Refetch::CoolingDown => false,
            Refetch::Done { fetched, satisfied } => {
                // Only a successful fetch proves the kid unknown; after a failed
                // one the cooldown alone throttles retries.
                if fetched && !satisfied {
                    state.unknown_kids.insert(kid.into(), ());
                }
                satisfied
            }
        }
    }

    /// Called when a token's issuer has keys past their stale bound. In an
    /// outage that is what the bound is for, and a refetch at most once per
    /// `refetch_cooldown` adds little to the refresher's own retries. But the
    /// bound is wall-clock time while the refresher sleeps on the monotonic
    /// clock: after the wall clock jumps forward (a VM resumed after hours),
    /// healthy keys look stale until the next scheduled refresh, and this
    /// refetch brings them back at once. Returns true when the keys are usable.
    /// It is also how an on-demand issuer's first token fetches its keys.
    pub async fn refresh_stale(&self, id: IssuerId) -> bool {
        let idx = id.index();
        let usable = match self.refetch(idx, || self.is_usable(idx)).await {
            Refetch::NotNeeded => true,
            Refetch::CoolingDown => false,
            Refetch::Done { satisfied, .. } => satisfied,
        };
        // Told after the fetch, so the refresher's schedule starts from it.
        if let Some(state) = self.issuers.get(idx).filter(|s| s.on_demand) {
            state.first_use.notify_one();
        }
        usable
    }

    /// The refetch a request asks for when the keys fall short of `wanted`:
    /// single flight, and at most one per `refetch_cooldown` (scheduled
    /// refreshes do not count against it).
    async fn refetch(&self, idx: usize, wanted: impl Fn() -> bool) -> Refetch {
        let Some(state) = self.issuers.get(idx) else {
            return Refetch::CoolingDown;
        };
        let mut last = state.fetch_lock.lock().await;
        // Someone else's refetch may have brought it while we waited.
        if wanted() {
            return Refetch::NotNeeded;
        }
        if last.is_some_and(|t| t.elapsed() < state.policy.refetch_cooldown) {
            return Refetch::CoolingDown;
        }
        *last = Some(Instant::now());
        let fetched = self.fetch_and_publish(idx).await.is_ok();
        drop(last);
        Refetch::Done {
            fetched,
            satisfied: wanted(),
        }
    }

    pub(super) fn is_usable(&self, idx: usize) -> bool {
        self.snapshot
            .borrow()
            .issuers
            .get(idx)
            .is_some_and(|s| s.is_usable(unix_now()))
    }

    fn knows(&self, idx: usize, kid: &str) -> bool {
        self.snapshot
            .borrow()
            .issuers
            .get(idx)
            .is_some_and(|s| s.by_kid(kid).is_some())
    }
}
