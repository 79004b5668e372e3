//! tokengate: a sidecar authenticating reverse proxy.
//!
//! `start` builds everything from a validated [`config::Config`], binds the
//! listeners and returns a running [`App`]; the binary only calls
//! [`cli::main`], which parses arguments, sets up logging and maps failures
//! to exit codes.
//!
//! Layers, each importing only those below it:
//!
//! - faces: `cli`, `inbound` (the guard, then forward), `authz` (the guard's
//!   answer for a fronting proxy), `outbound` (token injection), `admin`;
//! - `guard`: the decision both inbound faces and `tokengate verify` share:
//!   shape, policy, bearer, the pure verifier, keys, JWKS, the token cache;
//! - `server`, `upstream`, `respond` (every failure's answer, in one place);
//! - leaves: `config`, `error` (with `guard::reject`, which imports only
//!   `config`), `metrics`, `headers`, `grpc`, `body`,
//!   `client`, `clock`, `unverified`, `access_log`, `watch`, `dpop_key`.

pub mod access_log;
mod admin;
mod app;
mod authz;
mod body;
pub mod cli;
mod client;
mod client_auth;
mod clock;
pub mod config;
pub mod demo;
mod dpop_key;
mod error;
mod grpc;
pub mod guard;
pub mod headers;
mod inbound;
mod metrics;
pub mod outbound;
mod respond;
mod server;
mod swap;
mod unverified;
mod upstream;
mod watch;

pub use app::{start, App, StartError};

/// The base64url (unpadded) SHA-256 of `bytes`: the form a JWK thumbprint
/// (RFC 7638), a certificate's `x5t#S256` (RFC 8705) and a DPoP proof's
/// `ath` (RFC 9449) take.
pub fn sha256_base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// Short, non-reversible fingerprint for logs: the first 8 bytes of SHA-256, hex.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
