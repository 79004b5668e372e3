//! The key an outbound token source proves possession of (RFC 9449): loaded
//! from a PEM file or generated at start, it signs a DPoP proof for each token
//! request and each forwarded request. The public JWK, its thumbprint and the
//! encoded proof header are made once, so a proof costs one signature.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use std::fmt;

/// What `generate:` accepts.
pub const GENERATED: [&str; 3] = ["ES256", "ES384", "EdDSA"];

enum Signer {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private key that signs DPoP proofs.
pub struct DpopKey {
    signer: Signer,
    alg: &'static str,
    /// base64url of the proof header `{typ, alg, jwk}`.
    header: String,
    /// RFC 7638 thumbprint of the public key: what a bound token's `cnf.jkt` says.
    jkt: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DpopKey({}, jkt {})", self.alg, self.jkt)
    }
}

/// The claims of one proof (RFC 9449 §4.2).
#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// What one proof is for.
#[derive(Debug, Clone, Copy)]
pub struct ProofFor<'a> {
    /// The request's method.
    pub htm: &'a str,
    /// The request's URI without query and fragment.
    pub htu: &'a str,
    /// The access token's `ath` (see [`crate::sha256_base64url`]); none to a token endpoint.
    pub ath: Option<&'a str>,
    /// The server's latest `DPoP-Nonce`, if it gave one.
    pub nonce: Option<&'a str>,
}

impl DpopKey {
    /// A fresh key for `alg` (one of [`GENERATED`]), held only in memory.
    pub fn generate(alg: &str) -> Result<DpopKey, String> {
        let failed = |e: aws_lc_rs::error::Unspecified| format!("cannot generate a key: {e}");
        match alg {
            "ES256" => DpopKey::ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(failed)?,
                "ES256",
            ),
            "ES384" => DpopKey::ec(
                EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).map_err(failed)?,
                "ES384",
            ),
            "EdDSA" => Ok(DpopKey::ed(Ed25519KeyPair::generate().map_err(failed)?)),
            other => Err(format!(
                "cannot generate a {other:?} key: expected one of {GENERATED:?}"
            )),
        }
    }

    /// The key in `pem`: an EC P-256 or P-384 key (PKCS#8 or SEC 1) or an
    /// Ed25519 key (PKCS#8).
    pub fn from_pem(pem: &[u8]) -> Result<DpopKey, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;
        let unsupported = "not an EC P-256, EC P-384 or Ed25519 private key \
                           (RSA keys make slow proofs and are not taken)";
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM private key: {e}"))?;
        let curves: [(&'static EcdsaSigningAlgorithm, &str); 2] = [
            (&ECDSA_P256_SHA256_FIXED_SIGNING, "ES256"),
            (&ECDSA_P384_SHA384_FIXED_SIGNING, "ES384"),
        ];
        match &der {
            PrivateKeyDer::Pkcs8(p) => {
                if let Ok(pair) = Ed25519KeyPair::from_pkcs8(p.secret_pkcs8_der()) {
                    return Ok(DpopKey::ed(pair));
                }
                for (curve, alg) in curves {
                    if let Ok(pair) = EcdsaKeyPair::from_pkcs8(curve, p.secret_pkcs8_der()) {
                        return DpopKey::ec(pair, alg);
                    }
                }
                Err(unsupported.into())
            }
            PrivateKeyDer::Sec1(p) => {
                for (curve, alg) in curves {
                    if let Ok(pair) = EcdsaKeyPair::from_private_key_der(curve, p.secret_sec1_der())
                    {
                        return DpopKey::ec(pair, alg);
                    }
                }
                Err(unsupported.into())
            }
            _ => Err(unsupported.into()),
        }
    }

    fn ec(pair: EcdsaKeyPair, alg: &'static str) -> Result<DpopKey, String> {
        // An uncompressed point: 0x04, then x and y of equal length.
        let point = pair.public_key().as_ref();
        let half = (point.len() - 1) / 2;
        let crv = if alg == "ES256" { "P-256" } else { "P-384" };
        let (x, y) = (b64(&point[1..1 + half]), b64(&point[1 + half..]));
        // RFC 7638 §3.2: the required members, in lexicographic order.
        let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
        Ok(DpopKey::assemble(Signer::Ec(pair), alg, &canonical))
    }

    fn ed(pair: Ed25519KeyPair) -> DpopKey {
        let x = b64(pair.public_key().as_ref());
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        DpopKey::assemble(Signer::Ed(pair), "EdDSA", &canonical)
    }

    /// `canonical`: the public JWK's required members, which are both the
    /// thumbprint's input and the `jwk` the header carries.
    fn assemble(signer: Signer, alg: &'static str, canonical: &str) -> DpopKey {
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"{alg}","jwk":{canonical}}}"#);
        DpopKey {
            signer,
            alg,
            header: b64(header.as_bytes()),
            jkt: crate::sha256_base64url(canonical.as_bytes()),
        }
    }

    /// The signature algorithm, as a proof's `alg` names it.
    pub fn alg(&self) -> &'static str {
        self.alg
    }

    /// The public key's RFC 7638 thumbprint (a bound token's `cnf.jkt`).
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A fresh proof for one request, issued at `iat`, with a random `jti`.
    pub fn proof(&self, what: ProofFor<'_>, iat: u64) -> Result<String, String> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no randomness for a jti".to_string())?;
        let claims = Claims {
            jti: &b64(&jti),
            htm: what.htm,
            htu: what.htu,
            iat,
            ath: what.ath,
            nonce: what.nonce,
        };
        let claims = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
        let mut jws = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 100);
        jws.push_str(&self.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
        let signature = match &self.signer {
            Signer::Ec(pair) => pair
                .sign(&SystemRandom::new(), jws.as_bytes())
                .map_err(|_| "cannot sign a proof".to_string())?,
            Signer::Ed(pair) => pair.sign(jws.as_bytes()),
        };
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jws);
        Ok(jws)
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// PURE: `uri`'s scheme and authority as a proof's `htu` starts
/// (RFC 9449 §4.2, compared after RFC 3986 §6.2.2–6.2.3 normalization):
/// scheme and host in lower case, no default port, no user information.
pub fn htu_origin(uri: &hyper::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    match uri.port_u16() {
        Some(port) if Some(port) != default => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

    /// Each kind of key signs a proof that jsonwebtoken, knowing nothing of
    /// this code, verifies with the `jwk` in its header and whose thumbprint it
    /// computes alike.
    #[test]
    fn proofs_verify_with_an_independent_library() {
        for alg in GENERATED {
            let key = DpopKey::generate(alg).unwrap();
            let what = ProofFor {
                htm: "POST",
                htu: "https://api.example/orders",
                ath: Some("fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"),
                nonce: Some("n-1"),
            };
            let proof = key.proof(what, 1_700_000_000).unwrap();
            let header = decode_header(&proof).unwrap();
            assert_eq!(header.typ.as_deref(), Some("dpop+jwt"), "{alg}");
            let jwk: Jwk = header.jwk.unwrap();
            assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256), key.jkt(), "{alg}");
            let mut validation = Validation::new(header.alg);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let claims = decode::<serde_json::Value>(
                &proof,
                &DecodingKey::from_jwk(&jwk).unwrap(),
                &validation,
            )
            .unwrap()
            .claims;
            assert_eq!(claims["htm"], "POST");
            assert_eq!(claims["htu"], "https://api.example/orders");
            assert_eq!(claims["iat"], 1_700_000_000);
            assert_eq!(claims["ath"], what.ath.unwrap());
            assert_eq!(claims["nonce"], "n-1");
            assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
            let again = key.proof(what, 1_700_000_000).unwrap();
            let jti = |p: &str| {
                decode::<serde_json::Value>(p, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
                    .unwrap()
                    .claims["jti"]
                    .clone()
            };
            assert_ne!(jti(&proof), jti(&again), "{alg}: each proof its own jti");
        }
    }

    #[test]
    fn a_proof_to_a_token_endpoint_has_no_ath_or_nonce_unless_given() {
        let key = DpopKey::generate("ES256").unwrap();
        let what = ProofFor {
            htm: "POST",
            htu: "https://as.example/token",
            ath: None,
            nonce: None,
        };
        let proof = key.proof(what, 1).unwrap();
        let claims = crate::unverified::claims(&proof).unwrap();
        assert!(claims.get("ath").is_none() && claims.get("nonce").is_none());
    }

    #[test]
    fn htu_origins_are_normalized() {
        let cases = [
            ("https://API.Example:443/v1/x?q=1", "https://api.example"),
            ("http://api.example:80/", "http://api.example"),
            ("http://api.example:8080/token", "http://api.example:8080"),
            ("https://api.example:80/", "https://api.example:80"),
            ("HTTPS://user:pass@api.example/x", "https://api.example"),
            ("http://[::1]:15001/x", "http://[::1]:15001"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ];
        for (uri, want) in cases {
            assert_eq!(htu_origin(&uri.parse().unwrap()), want, "{uri}");
        }
    }

    #[test]
    fn keys_load_from_pem_and_bad_ones_are_named() {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256);
        for (pem, want) in [
            (p256.serialize_pem(), "ES256"),
            (p384.serialize_pem(), "ES384"),
            (ed.serialize_pem(), "EdDSA"),
        ] {
            let key = DpopKey::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(key.alg(), want);
        }
        if let Ok(rsa) = rsa {
            let e = DpopKey::from_pem(rsa.serialize_pem().as_bytes()).unwrap_err();
            assert!(e.contains("RSA"), "{e}");
        }
        let e = DpopKey::from_pem(b"not a key").unwrap_err();
        assert!(e.contains("not a PEM private key"), "{e}");
        let e = DpopKey::generate("HS256").unwrap_err();
        assert!(e.contains("ES256"), "{e}");
    }
}
