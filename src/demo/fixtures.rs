//! Test-only controls of the dev issuer and the echo upstream: failing,
//! rotating keys, counting hits. Compiled only with the `test-fixtures` feature,
//! which the crate's own tests enable (a dev-dependency on itself), so
//! `tokengate` as shipped does not carry them.

use super::echo::Echo;
use super::issuer::DevIssuer;
use super::keys::SigningKey;
use hyper::header::HeaderValue;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl DevIssuer {
    /// `mint`, signed by the published key `kid`.
    pub fn mint_with(&self, kid: &str, extra: Value) -> Option<String> {
        let key = self
            .state
            .keys
            .read()
            .ok()?
            .iter()
            .find(|k| k.kid == kid)?
            .clone();
        Some(key.sign_jwt(&self.state.claims(extra)))
    }

    /// The key that currently signs.
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.state.signing_key()
    }

    /// Replaces the published key set (the first key signs from now on).
    pub fn set_keys(&self, keys: Vec<SigningKey>) {
        *self.state.keys.write().expect("issuer keys lock") =
            keys.into_iter().map(Arc::new).collect();
    }

    /// While failing, JWKS and discovery answer 503.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    pub fn set_max_age(&self, secs: Option<u64>) {
        *self.state.max_age.lock().expect("max_age lock") = secs;
    }

    pub fn jwks_hits(&self) -> u64 {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// Lifetime of tokens from `/token`.
    pub fn set_token_ttl(&self, secs: u64) {
        self.state.token_endpoint.ttl.store(secs, Ordering::SeqCst);
    }

    /// While failing, `/token` answers 503.
    pub fn set_token_failing(&self, failing: bool) {
        self.state
            .token_endpoint
            .failing
            .store(failing, Ordering::SeqCst);
    }

    /// `/token` answers this much later.
    pub fn set_token_delay(&self, delay: Duration) {
        self.state
            .token_endpoint
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// When each `/token` request arrived.
    pub fn token_calls(&self) -> Vec<std::time::Instant> {
        self.state
            .token_endpoint
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn discovery_hits(&self) -> u64 {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }
}

impl Echo {
    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// From now on, answer requests bearing this `Authorization` value with 401.
    pub fn refuse(&self, authorization: HeaderValue) {
        if let Ok(mut r) = self.state.refused.lock() {
            r.push(authorization);
        }
    }

    /// The peer addresses of the latest requests, oldest first:
    /// requests that came on one connection share it.
    pub fn recent_peers(&self) -> Vec<SocketAddr> {
        self.state
            .peers
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Headers of the last request received.
    pub fn last_headers(&self) -> Option<hyper::HeaderMap> {
        self.state.last.lock().ok().and_then(|l| l.clone())
    }
}
