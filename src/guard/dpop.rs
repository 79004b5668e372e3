//! PURE: a DPoP proof (RFC 9449 §4.3) checked against the request it came
//! with. [`check`] reads the `DPoP` header's JWS and returns the key it
//! proves ([`Proven::jkt`], its RFC 7638 thumbprint) and its `jti`; whether
//! that key is the one the token is bound to is [`super::bind`]'s question,
//! and whether the `jti` was seen before is the replay cache's
//! ([`super::replay`]). No I/O, no clock: `now` comes in.
//!
//! The checks, in order: one header, a compact JWS of visible ASCII → header
//! (`typ: dpop+jwt`, no `crit`, an `alg` of [`ALGORITHMS`], a public `jwk`
//! fitting it, no private members) → signature by that key → claims (`htm`
//! the method, `htu` the URI without query and fragment, `iat` inside the
//! window, a `jti`, `ath` the token's SHA-256).

use super::reject::Reject;
use aws_lc_rs::{digest, signature};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::http::uri::Authority;
use hyper::Uri;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;

/// The proof algorithms accepted, as the `algs` of a `DPoP` challenge names
/// them: asymmetric only (RFC 9449 §4.3 item 5), each bound to its key type.
pub const ALGS: &str = "ES256 ES384 EdDSA PS256 RS256";

/// Largest proof read: an RS256 proof with a 4096-bit key is under 2 KiB.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Largest `jti` taken (the RFC asks for 96 bits of randomness; 64 bytes
/// is ample for any encoding of it).
const MAX_JTI_BYTES: usize = 256;

/// The `iat` window of a proof: issued at most `max_age` seconds ago, and
/// at most `leeway` seconds ahead of this clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub max_age: u64,
    pub leeway: u64,
}

impl Window {
    /// How long a proof's `jti` must be remembered to refuse its replays.
    pub fn span(&self) -> u64 {
        self.max_age + self.leeway
    }
}

/// The request a proof must describe.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method, as `htm` must spell it.
    pub method: &'a str,
    /// `http` or `https`: how the caller reached the URI.
    pub scheme: &'a str,
    /// The host the caller named (`Host` or `:authority`), with its port.
    pub authority: &'a str,
    /// The request's path, without its query.
    pub path: &'a str,
    /// The access token the proof goes with (`ath` is its SHA-256).
    pub token: &'a [u8],
}

/// A proof that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key, base64url.
    pub jkt: String,
    pub jti: String,
    pub iat: u64,
    /// The server nonce it carries, if any (checked where nonces are required).
    pub nonce: Option<String>,
}

/// PURE: checks the `DPoP` header's proof against `expected` at unix time
/// `now`. Every failure is `Reject::BadProof` with what failed.
pub fn check(
    proof: &[u8],
    expected: &Expected<'_>,
    window: Window,
    now: u64,
) -> Result<Proven, Reject> {
    let bad = Reject::BadProof;
    if proof.len() > MAX_PROOF_BYTES {
        return Err(bad("the proof is too large"));
    }
    let proof = std::str::from_utf8(proof)
        .ok()
        .filter(|p| p.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(bad("the proof is not a compact JWS"))?;
    let (signing_input, signature) = proof
        .rsplit_once('.')
        .ok_or(bad("the proof is not a compact JWS"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(bad("the proof is not a compact JWS"))?;
    let header_json = b64(header).ok_or(bad("the proof's header is not base64url"))?;
    let header: ProofHeader<'_> = serde_json::from_slice(&header_json)
        .map_err(|_| bad("the proof's header is not a JSON object with typ, alg and jwk"))?;
    if header.crit.is_some() {
        return Err(bad("crit header parameters are not supported"));
    }
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(bad("typ is not dpop+jwt"));
    }
    let alg =
        ProofAlg::parse(&header.alg).ok_or(bad("alg is not one of the accepted algorithms"))?;
    let jwk = header.jwk.ok_or(bad("the header has no jwk"))?;
    let key = jwk.public_key(alg)?;
    let signature = b64(signature).ok_or(bad("the signature is not base64url"))?;
    key.verify(signing_input.as_bytes(), &signature)?;

    let payload = b64(payload).ok_or(bad("the proof's payload is not base64url"))?;
    let claims: ProofClaims<'_> = serde_json::from_slice(&payload)
        .map_err(|_| bad("the proof's payload is not a JSON object of its claims"))?;
    let htm = claims.htm.ok_or(bad("the proof has no htm"))?;
    if htm != expected.method {
        return Err(bad("htm is not the request's method"));
    }
    let htu = claims.htu.ok_or(bad("the proof has no htu"))?;
    if !same_uri(&htu, expected) {
        return Err(bad("htu is not the URI of the request"));
    }
    let iat = claims
        .iat
        .as_ref()
        .and_then(numeric_date)
        .ok_or(bad("the proof has no numeric iat"))?;
    if iat.saturating_add(window.max_age) < now {
        return Err(bad("the proof is too old (iat)"));
    }
    if iat > now.saturating_add(window.leeway) {
        return Err(bad("the proof is issued in the future (iat)"));
    }
    let jti = claims.jti.ok_or(bad("the proof has no jti"))?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(bad("the proof's jti is empty or too long"));
    }
    let ath = claims.ath.ok_or(bad("the proof has no ath"))?;
    let mut claimed = [0u8; 48];
    let hash = digest::digest(&digest::SHA256, expected.token);
    let decoded = URL_SAFE_NO_PAD.decode_slice(ath.as_bytes(), &mut claimed);
    if decoded.ok().and_then(|n| claimed.get(..n)) != Some(hash.as_ref()) {
        return Err(bad("ath is not the hash of the access token"));
    }
    Ok(Proven {
        jkt: key.thumbprint,
        jti: jti.into_owned(),
        iat,
        nonce: claims.nonce.map(Cow::into_owned),
    })
}

/// PURE: the `ath` of `token`: base64url of its SHA-256.
pub fn token_hash(token: &[u8]) -> String {
    crate::sha256_base64url(token)
}

fn b64(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part).ok()
}

/// A NumericDate as whole seconds: a non-negative integer, or a finite
/// non-negative number with a fraction (truncated).
fn numeric_date(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
    })
}

/// PURE: whether `htu` names the URI of the request, as RFC 9449 §4.3
/// compares them: query and fragment ignored, scheme and host in any case,
/// a default port the same as none, percent-encodings the same in any case
/// and unreserved characters the same encoded or not (RFC 3986 §6.2.2–3).
fn same_uri(htu: &str, expected: &Expected<'_>) -> bool {
    let without = htu.split(['?', '#']).next().unwrap_or_default();
    let Ok(uri) = without.parse::<Uri>() else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    let Ok(asked) = expected.authority.parse::<Authority>() else {
        return false;
    };
    if authority.as_str().contains('@') || !scheme.eq_ignore_ascii_case(expected.scheme) {
        return false;
    }
    let port = |a: &Authority| a.port_u16().or(default_port(expected.scheme));
    authority.host().eq_ignore_ascii_case(asked.host())
        && port(authority) == port(&asked)
        && rooted(uri.path()) == rooted(expected.path)
}

/// PURE: a URI's path as compared: an empty one is `/`, the rest normalized.
fn rooted(path: &str) -> Cow<'_, str> {
    match path {
        "" => Cow::Borrowed("/"),
        p => normalized_path(p),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// PURE: `path` with each percent-encoding of an unreserved character
/// decoded and every other one in upper case (RFC 3986 §6.2.2.1–2).
fn normalized_path(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => {
                out.push(char::from(byte));
                i += 3;
            }
            (b'%', Some(byte)) => {
                out.push_str(&format!("%{byte:02X}"));
                i += 3;
            }
            (b, _) => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

#[derive(Deserialize)]
struct ProofHeader<'a> {
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    jwk: Option<ProofJwk<'a>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ProofClaims<'a> {
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htu: Option<Cow<'a, str>>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
    #[serde(borrow, default)]
    ath: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
}

/// The `jwk` of a proof's header: the members a public key of each type
/// has, and those only a private key has (refused if present).
#[derive(Deserialize)]
struct ProofJwk<'a> {
    #[serde(borrow)]
    kty: Cow<'a, str>,
    #[serde(borrow, default)]
    crv: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    x: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    y: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    e: Option<Cow<'a, str>>,
    #[serde(default)]
    d: Option<IgnoredAny>,
    #[serde(default)]
    p: Option<IgnoredAny>,
    #[serde(default)]
    q: Option<IgnoredAny>,
    #[serde(default)]
    dp: Option<IgnoredAny>,
    #[serde(default)]
    dq: Option<IgnoredAny>,
    #[serde(default)]
    qi: Option<IgnoredAny>,
    #[serde(default)]
    oth: Option<IgnoredAny>,
    #[serde(default)]
    k: Option<IgnoredAny>,
}

/// A proof algorithm and the key type it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProofAlg {
    Es256,
    Es384,
    EdDsa,
    Ps256,
    Rs256,
}

impl ProofAlg {
    fn parse(alg: &str) -> Option<ProofAlg> {
        Some(match alg {
            "ES256" => ProofAlg::Es256,
            "ES384" => ProofAlg::Es384,
            "EdDSA" => ProofAlg::EdDsa,
            "PS256" => ProofAlg::Ps256,
            "RS256" => ProofAlg::Rs256,
            _ => return None,
        })
    }
}

/// A proof's public key, ready to verify, with its thumbprint.
struct ProofKey {
    alg: ProofAlg,
    /// The key as aws-lc-rs takes it: an uncompressed EC point, an Ed25519
    /// key, or RSA's modulus and exponent.
    material: Material,
    thumbprint: String,
}

enum Material {
    Bytes(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl ProofJwk<'_> {
    /// The public key for `alg`, or why there is none: a key of another
    /// type, a member missing or not base64url, or private members.
    fn public_key(&self, alg: ProofAlg) -> Result<ProofKey, Reject> {
        let bad = Reject::BadProof;
        let private = [
            &self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth, &self.k,
        ];
        if private.iter().any(|m| m.is_some()) {
            return Err(bad("the jwk holds private key members"));
        }
        // Each member a thumbprint takes, base64url and nothing else, so it
        // goes into the thumbprint's JSON as it is.
        let member = |m: &Option<Cow<'_, str>>| -> Result<(String, Vec<u8>), Reject> {
            let text = m
                .as_deref()
                .ok_or(bad("the jwk lacks a member its key type needs"))?;
            let bytes = b64(text).ok_or(bad("a jwk member is not base64url"))?;
            Ok((text.to_string(), bytes))
        };
        let fits = |kty: &str, crv: Option<&str>| self.kty == kty && self.crv.as_deref() == crv;
        let (material, canonical) = match alg {
            ProofAlg::Es256 | ProofAlg::Es384 => {
                let (crv, len) = match alg {
                    ProofAlg::Es256 => ("P-256", 32),
                    _ => ("P-384", 48),
                };
                if !fits("EC", Some(crv)) {
                    return Err(bad("the jwk is not a key for alg"));
                }
                let ((x, xb), (y, yb)) = (member(&self.x)?, member(&self.y)?);
                if xb.len() != len || yb.len() != len {
                    return Err(bad("the jwk's coordinates are not of its curve's size"));
                }
                let point = [&[4u8][..], &xb, &yb].concat();
                let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (Material::Bytes(point), canonical)
            }
            ProofAlg::EdDsa => {
                if !fits("OKP", Some("Ed25519")) {
                    return Err(bad("the jwk is not a key for alg"));
                }
                let (x, xb) = member(&self.x)?;
                let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
                (Material::Bytes(xb), canonical)
            }
            ProofAlg::Ps256 | ProofAlg::Rs256 => {
                if self.kty != "RSA" {
                    return Err(bad("the jwk is not a key for alg"));
                }
                let ((n, nb), (e, eb)) = (member(&self.n)?, member(&self.e)?);
                let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (Material::Rsa { n: nb, e: eb }, canonical)
            }
        };
        Ok(ProofKey {
            alg,
            material,
            thumbprint: crate::sha256_base64url(canonical.as_bytes()),
        })
    }
}

impl ProofKey {
    fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), Reject> {
        let verified = match (&self.material, self.alg) {
            (Material::Bytes(key), alg) => {
                let params: &dyn signature::VerificationAlgorithm = match alg {
                    ProofAlg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                    ProofAlg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => &signature::ED25519,
                };
                signature::UnparsedPublicKey::new(params, key).verify(message, sig)
            }
            (Material::Rsa { n, e }, alg) => {
                let params = match alg {
                    ProofAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA256,
                };
                signature::RsaPublicKeyComponents { n, e }.verify(params, message, sig)
            }
        };
        verified.map_err(|_| Reject::BadProof("the proof's signature does not verify with its jwk"))
    }
}

#[cfg(test)]
mod tests;
