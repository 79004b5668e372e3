//! Public keys in ready-to-verify form: a JWKS is parsed once per fetch into
//! `KeySet`s of `VerifyKey`s holding aws-lc-rs `ParsedPublicKey`s, one per
//! algorithm the key may verify, so no request ever parses key material.

use aws_lc_rs::{hmac, signature};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::Algorithm;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One key with a verifier per algorithm it may be used with.
pub struct VerifyKey {
    pub kid: Option<Box<str>>,
    /// kid + key material + declared alg; equal identity means the same key.
    identity: Box<str>,
    verifiers: Vec<(Algorithm, KeyMaterial)>,
    /// Set when the key leaves the JWKS; cached verifications by it stop counting.
    retired: AtomicBool,
}

/// The parsed key an algorithm verifies with.
enum KeyMaterial {
    Public(signature::ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<_> = self.verifiers.iter().map(|(a, _)| *a).collect();
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &algs)
            .finish()
    }
}

impl VerifyKey {
    /// An issuer's shared HMAC secret, usable with the allowed HS* algorithms.
    pub fn hmac(secret: &[u8], allowed: &[Algorithm]) -> VerifyKey {
        let verifiers = allowed
            .iter()
            .filter_map(|alg| {
                let h = match alg {
                    Algorithm::HS256 => hmac::HMAC_SHA256,
                    Algorithm::HS384 => hmac::HMAC_SHA384,
                    Algorithm::HS512 => hmac::HMAC_SHA512,
                    _ => return None,
                };
                Some((*alg, KeyMaterial::Hmac(Box::new(hmac::Key::new(h, secret)))))
            })
            .collect();
        VerifyKey {
            kid: None,
            identity: "hmac".into(),
            verifiers,
            retired: AtomicBool::new(false),
        }
    }

    /// Builds verifiers for a JWK, for those `allowed` algorithms its type supports
    /// (and only its own `alg` when it declares one). Symmetric keys are refused:
    /// a published key set never carries secrets.
    pub fn from_jwk(jwk: &Jwk, allowed: &[Algorithm]) -> Result<VerifyKey, String> {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return Err("not a signing key (use != sig)".into());
        }
        let declared = match &jwk.common.key_algorithm {
            None => None,
            Some(k) => Some(
                signing_alg(k)
                    .ok_or_else(|| format!("alg {k:?} is not a JWS signing algorithm"))?,
            ),
        };
        let wanted = |alg: Algorithm| allowed.contains(&alg) && declared.is_none_or(|d| d == alg);
        let (material, verifiers) = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let n = b64(&rsa.n)?;
                let e = b64(&rsa.e)?;
                let components = signature::RsaPublicKeyComponents { n: &n, e: &e };
                let mut v = Vec::new();
                for (alg, params) in [
                    (Algorithm::RS256, &signature::RSA_PKCS1_2048_8192_SHA256),
                    (Algorithm::RS384, &signature::RSA_PKCS1_2048_8192_SHA384),
                    (Algorithm::RS512, &signature::RSA_PKCS1_2048_8192_SHA512),
                    (Algorithm::PS256, &signature::RSA_PSS_2048_8192_SHA256),
                    (Algorithm::PS384, &signature::RSA_PSS_2048_8192_SHA384),
                    (Algorithm::PS512, &signature::RSA_PSS_2048_8192_SHA512),
                ] {
                    if wanted(alg) {
                        let key = components
                            .to_parsed_public_key(params)
                            .map_err(|e| format!("bad RSA key: {e}"))?;
                        v.push((alg, KeyMaterial::Public(key)));
                    }
                }
                (format!("RSA:{}:{}", rsa.n, rsa.e), v)
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                let (alg, params): (_, &'static signature::EcdsaVerificationAlgorithm) = match ec
                    .curve
                {
                    EllipticCurve::P256 => (Algorithm::ES256, &signature::ECDSA_P256_SHA256_FIXED),
                    EllipticCurve::P384 => (Algorithm::ES384, &signature::ECDSA_P384_SHA384_FIXED),
                    ref other => return Err(format!("unsupported EC curve {other:?}")),
                };
                let mut point = vec![4u8];
                point.extend(b64(&ec.x)?);
                point.extend(b64(&ec.y)?);
                let mut v = Vec::new();
                if wanted(alg) {
                    let key = signature::ParsedPublicKey::new(params, &point)
                        .map_err(|e| format!("bad EC key: {e}"))?;
                    v.push((alg, KeyMaterial::Public(key)));
                }
                (format!("EC:{:?}:{}:{}", ec.curve, ec.x, ec.y), v)
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                if okp.curve != EllipticCurve::Ed25519 {
                    return Err(format!("unsupported OKP curve {:?}", okp.curve));
                }
                let mut v = Vec::new();
                if wanted(Algorithm::EdDSA) {
                    let key = signature::ParsedPublicKey::new(&signature::ED25519, b64(&okp.x)?)
                        .map_err(|e| format!("bad Ed25519 key: {e}"))?;
                    v.push((Algorithm::EdDSA, KeyMaterial::Public(key)));
                }
                (format!("OKP:{}", okp.x), v)
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err("symmetric (oct) keys are never taken from a JWKS".into())
            }
        };
        if verifiers.is_empty() {
            return Err("usable with none of the issuer's allowed algorithms".into());
        }
        Ok(VerifyKey {
            kid: jwk.common.key_id.as_deref().map(Into::into),
            identity: format!("{:?}|{material}|{declared:?}", jwk.common.key_id).into(),
            verifiers,
            retired: AtomicBool::new(false),
        })
    }

    /// Whether this key can verify `alg` (key type and declared alg agree).
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    /// Checks `signature` over `message`; `false` for a wrong signature or an
    /// algorithm this key does not support.
    pub fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        match self.verifiers.iter().find(|(a, _)| *a == alg) {
            Some((_, KeyMaterial::Public(key))) => key.verify_sig(message, sig).is_ok(),
            Some((_, KeyMaterial::Hmac(key))) => hmac::verify(key, message, sig).is_ok(),
            None => false,
        }
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| "key material is not base64url".to_string())
}

fn signing_alg(k: &KeyAlgorithm) -> Option<Algorithm> {
    Some(match k {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// An issuer's keys as of one JWKS fetch.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Arc<VerifyKey>>,
    /// Unix seconds after which these keys are too stale to use; 0 = never loaded.
    pub usable_until: u64,
}

/// Result of parsing a JWKS document.
pub struct ParsedJwks {
    pub keys: Vec<Arc<VerifyKey>>,
    /// `kid: reason` of each key that was skipped.
    pub skipped: Vec<String>,
}

impl KeySet {
    /// Keys that never go stale: a shared-secret issuer's empty set (it has no
    /// JWKS to refresh), or a fixed set for tests, benchmarks and fuzzing.
    pub fn never_stale(keys: Vec<Arc<VerifyKey>>) -> KeySet {
        KeySet {
            keys,
            usable_until: u64::MAX,
        }
    }

    /// An on-demand issuer's set before its first token: it counts as
    /// loaded (readiness does not wait for it) and is past its stale bound
    /// (so that first token fetches the keys).
    pub fn on_demand() -> KeySet {
        KeySet {
            keys: Vec::new(),
            usable_until: 1,
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.usable_until > 0
    }

    /// Loaded and not past its stale bound at `now`.
    pub fn is_usable(&self, now: u64) -> bool {
        self.is_loaded() && now <= self.usable_until
    }

    /// Key by `kid`: a linear scan, faster than hashing for the handful of keys a JWKS holds.
    pub fn by_kid(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Parses a JWKS body. Keys identical to one in `previous` keep that `Arc`, so
    /// cached verifications survive a refresh that did not change the key.
    pub fn parse(
        body: &[u8],
        allowed: &[Algorithm],
        previous: &KeySet,
    ) -> Result<ParsedJwks, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::with_capacity(doc.keys.len());
        let mut skipped = Vec::new();
        for value in doc.keys {
            let kid = value
                .get("kid")
                .and_then(|k| k.as_str())
                .unwrap_or("-")
                .to_string();
            let built = serde_json::from_value::<Jwk>(value)
                .map_err(|e| format!("unsupported JWK: {e}"))
                .and_then(|jwk| VerifyKey::from_jwk(&jwk, allowed));
            match built {
                Ok(k) => {
                    let reused = previous
                        .keys
                        .iter()
                        .find(|p| p.identity == k.identity && !p.is_retired());
                    keys.push(reused.cloned().unwrap_or_else(|| Arc::new(k)));
                }
                Err(reason) => skipped.push(format!("{kid}: {reason}")),
            }
        }
        Ok(ParsedJwks { keys, skipped })
    }

    /// Keys of `self` that are absent from `next` (to be retired on publish).
    pub fn removed_in<'a>(
        &'a self,
        next: &'a KeySet,
    ) -> impl Iterator<Item = &'a Arc<VerifyKey>> + 'a {
        self.keys
            .iter()
            .filter(move |k| !next.keys.iter().any(|n| Arc::ptr_eq(k, n)))
    }
}

/// Every issuer's current key set, indexed like the configured issuers; the one
/// snapshot the request path reads.
#[derive(Debug, Default, Clone)]
pub struct KeySnapshot {
    pub issuers: Vec<Arc<KeySet>>,
}

impl KeySnapshot {
    /// Every issuer's keys have loaded at least once.
    pub fn is_loaded(&self) -> bool {
        self.issuers.iter().all(|s| s.is_loaded())
    }
}
