//! DPoP server nonces (RFC 9449 §8), issued and checked without state: a
//! nonce is the period it was issued in and an HMAC of it under a key this
//! process drew at start. One is good in its own period and the next, so a
//! proof's life is bounded by this server's clock, not the client's `iat`.
//! Each process has its own key: a client sent to another replica is told
//! `use_dpop_nonce` there once and carries on with that replica's nonce.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Bytes of the HMAC kept in a nonce (128 bits).
const TAG_BYTES: usize = 16;

pub struct Nonces {
    key: hmac::Key,
    /// Seconds a nonce's period lasts.
    period: u64,
}

impl Nonces {
    /// Nonces whose period lasts `period` seconds (at least 1), under a
    /// fresh random key.
    pub fn new(period: u64) -> Nonces {
        let mut secret = [0u8; 32];
        // At start-up, never on a request: a system without randomness
        // could not serve TLS either.
        SystemRandom::new()
            .fill(&mut secret)
            .expect("the system's random number generator");
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            period: period.max(1),
        }
    }

    /// A nonce for unix time `now`.
    pub fn issue(&self, now: u64) -> String {
        self.nonce(now / self.period)
    }

    /// Whether `nonce` is one this process issued in the period of `now`
    /// or the one before.
    pub fn accepts(&self, nonce: &str, now: u64) -> bool {
        let step = now / self.period;
        [step, step.saturating_sub(1)]
            .iter()
            .any(|&s| constant_time_eq(nonce.as_bytes(), self.nonce(s).as_bytes()))
    }

    fn nonce(&self, step: u64) -> String {
        let tag = hmac::sign(&self.key, &step.to_be_bytes());
        let mut raw = step.to_be_bytes().to_vec();
        raw.extend_from_slice(&tag.as_ref()[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(raw)
    }
}

/// Equal, in time that depends on the length only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_in_its_period_and_the_next_only_and_only_here() {
        let nonces = Nonces::new(60);
        let nonce = nonces.issue(6_000);
        assert!(nonces.accepts(&nonce, 6_000));
        assert!(nonces.accepts(&nonce, 6_059));
        assert!(nonces.accepts(&nonce, 6_119), "the next period");
        assert!(!nonces.accepts(&nonce, 6_120), "two periods on");
        assert!(
            !nonces.accepts(&nonce, 5_999),
            "a period before it was issued"
        );
        assert!(
            !Nonces::new(60).accepts(&nonce, 6_000),
            "another process's key"
        );
        let mut forged = nonce.clone().into_bytes();
        forged[3] ^= 1;
        assert!(!nonces.accepts(std::str::from_utf8(&forged).unwrap(), 6_000));
        assert!(!nonces.accepts("", 6_000));
        assert_ne!(nonces.issue(6_000), nonces.issue(6_060));
    }
}
