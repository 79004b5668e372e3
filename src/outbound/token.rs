//! The current token of each outbound source: a `watch` channel the renewal
//! task ([`super::renew`]) publishes to and requests read without awaiting.

use hyper::header::HeaderValue;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// A token ready to inject.
#[derive(Debug)]
pub struct Token {
    /// The rendered `Authorization` value, marked sensitive.
    pub header: HeaderValue,
    /// A DPoP-bound token's `ath`, which each of its proofs carries.
    pub ath: Option<Box<str>>,
    pub expires_at: Instant,
    /// Increases with every published token.
    pub generation: u64,
}

/// What the renewal task publishes.
#[derive(Default)]
struct State {
    token: Option<Arc<Token>>,
    /// Fetch attempts finished so far, successful or not.
    attempts: u64,
    /// Why the last fetch failed; cleared when a token is published.
    last_error: Option<Arc<str>>,
    /// The upstream refused the current token: no request is given it while
    /// a newer one is fetched. Cleared by the next attempt, so a failed fetch
    /// hands the refused token out again rather than none.
    refused: bool,
}

/// The current token of one source.
pub struct TokenCell {
    pub name: String,
    state: watch::Sender<State>,
    pub(super) wake: Notify,
}

impl TokenCell {
    pub fn new(name: &str) -> Arc<TokenCell> {
        Arc::new(TokenCell {
            name: name.to_string(),
            state: watch::Sender::new(State::default()),
            wake: Notify::new(),
        })
    }

    /// The current token if it has not expired and the upstream has not refused it.
    pub fn usable(&self) -> Option<Arc<Token>> {
        usable(&self.state.borrow())
    }

    /// A token is held and has not expired (one the upstream refused counts:
    /// a newer one is on its way).
    pub fn is_ready(&self) -> bool {
        unexpired(&self.state.borrow().token).is_some()
    }

    /// Resolves once [`TokenCell::is_ready`] holds, woken by each attempt.
    pub async fn ready(&self) {
        let mut published = self.state.subscribe();
        if published
            .wait_for(|s| unexpired(&s.token).is_some())
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }

    /// Seconds until the current token expires (negative once expired); `None` before the first.
    pub fn seconds_left(&self) -> Option<f64> {
        let now = Instant::now();
        self.state.borrow().token.as_ref().map(|t| {
            if t.expires_at > now {
                (t.expires_at - now).as_secs_f64()
            } else {
                -(now - t.expires_at).as_secs_f64()
            }
        })
    }

    /// The upstream refused token `rejected`: unless a newer token has
    /// already replaced it, stop handing it out and ask for an early fetch.
    pub fn request_renewal(&self, rejected: u64) {
        let refused = self.state.send_if_modified(|s| {
            let current = s.token.as_ref().map_or(0, |t| t.generation);
            let refused = current <= rejected;
            s.refused |= refused && current > 0;
            refused
        });
        if refused {
            self.wake.notify_one();
        }
    }

    /// Waits (at most `wait`) for a usable token newer than generation `after`.
    /// With `after == 0` (no token yet) it waits for the first one. With
    /// `after > 0` it asks for an early fetch and gives up as soon as a fetch
    /// attempt finishes without a newer token.
    pub async fn newer_than(&self, after: u64, wait: Duration) -> Option<Arc<Token>> {
        let mut rx = self.state.subscribe();
        let newer = |s: &State| usable(s).filter(|t| t.generation > after);
        let attempts_before = {
            let s = rx.borrow_and_update();
            if let Some(t) = newer(&s) {
                return Some(t);
            }
            s.attempts
        };
        if after > 0 {
            self.request_renewal(after);
        }
        tokio::time::timeout(wait, async {
            while rx.changed().await.is_ok() {
                let s = rx.borrow_and_update();
                if let Some(t) = newer(&s) {
                    return Some(t);
                }
                if after > 0 && s.attempts > attempts_before {
                    return None;
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    pub(super) fn publish(&self, header: HeaderValue, ath: Option<Box<str>>, expires_at: Instant) {
        self.state.send_modify(|s| {
            let generation = s.token.as_ref().map_or(0, |t| t.generation) + 1;
            s.token = Some(Arc::new(Token {
                header,
                ath,
                expires_at,
                generation,
            }));
            s.attempts += 1;
            s.last_error = None;
            s.refused = false;
        });
    }

    /// An attempt that published nothing new (an unchanged token file).
    pub(super) fn attempt_failed(&self) {
        self.state.send_modify(|s| {
            s.attempts += 1;
            s.refused = false;
        });
    }

    /// An attempt that failed, and why (`/readyz` says it).
    pub(super) fn fetch_failed(&self, error: &str) {
        self.state.send_modify(|s| {
            s.attempts += 1;
            s.last_error = Some(error.into());
            s.refused = false;
        });
    }

    pub fn last_error(&self) -> Option<Arc<str>> {
        self.state.borrow().last_error.clone()
    }
}

fn unexpired(token: &Option<Arc<Token>>) -> Option<Arc<Token>> {
    token.clone().filter(|t| t.expires_at > Instant::now())
}

fn usable(s: &State) -> Option<Arc<Token>> {
    unexpired(&s.token).filter(|_| !s.refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_gives_up_when_an_attempt_ends_without_a_newer_token() {
        let cell = TokenCell::new("t");
        cell.publish(
            HeaderValue::from_static("Bearer one"),
            None,
            Instant::now() + Duration::from_secs(60),
        );
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.newer_than(1, Duration::from_secs(30)).await })
        };
        // The woken renewal fails: the waiter returns None at once, not after 30s.
        cell.wake.notified().await;
        cell.attempt_failed();
        let started = std::time::Instant::now();
        assert!(waiter.await.unwrap().is_none());
        assert!(started.elapsed() < Duration::from_secs(30));
        // A newer token satisfies the next waiter.
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.newer_than(1, Duration::from_secs(30)).await })
        };
        cell.wake.notified().await;
        cell.publish(
            HeaderValue::from_static("Bearer two"),
            None,
            Instant::now() + Duration::from_secs(60),
        );
        assert_eq!(waiter.await.unwrap().unwrap().generation, 2);
    }

    #[test]
    fn a_refused_token_is_not_handed_out_until_the_next_attempt() {
        let cell = TokenCell::new("t");
        let later = Instant::now() + Duration::from_secs(60);
        cell.publish(HeaderValue::from_static("Bearer one"), None, later);
        cell.request_renewal(1);
        assert!(
            cell.usable().is_none(),
            "refused: requests wait for a newer one"
        );
        assert!(cell.is_ready(), "still ready: a newer token is on its way");
        // The fetch fails: the refused token is the best there is again.
        cell.fetch_failed("token server down");
        assert_eq!(cell.usable().unwrap().generation, 1);
        cell.request_renewal(1);
        cell.publish(HeaderValue::from_static("Bearer two"), None, later);
        assert_eq!(cell.usable().unwrap().generation, 2);
        // A refusal of a replaced token changes nothing.
        cell.request_renewal(1);
        assert_eq!(cell.usable().unwrap().generation, 2);
    }

    #[test]
    fn renewal_is_requested_only_for_the_current_token() {
        let cell = TokenCell::new("t");
        cell.publish(
            HeaderValue::from_static("Bearer one"),
            None,
            Instant::now() + Duration::from_secs(60),
        );
        cell.publish(
            HeaderValue::from_static("Bearer two"),
            None,
            Instant::now() + Duration::from_secs(60),
        );
        cell.request_renewal(1); // already replaced: no wake
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let woke = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), cell.wake.notified())
                .await
                .is_ok()
        });
        assert!(!woke);
        cell.request_renewal(2);
        let woke = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), cell.wake.notified())
                .await
                .is_ok()
        });
        assert!(woke);
    }
}
