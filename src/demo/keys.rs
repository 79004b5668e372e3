//! DEVELOPMENT ONLY: ephemeral signing keys and JWT signing for the dev issuer,
//! the tests and the benchmarks.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// Signature algorithms the dev issuer can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rs256,
    Es256,
    EdDsa,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// An ephemeral signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub kind: KeyKind,
    signer: Signer,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    pub fn generate(kind: KeyKind, kid: &str) -> SigningKey {
        // Key generation only fails if the system RNG does; the dev issuer cannot run without it.
        let (signer, jwk) = match kind {
            KeyKind::Rs256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                });
                (Signer::Rsa(pair), jwk)
            }
            KeyKind::Es256 => {
                let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("EC key generation");
                let point = pair.public_key().as_ref().to_vec();
                let jwk = json!({
                    "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                });
                (Signer::Ec(pair), jwk)
            }
            KeyKind::EdDsa => {
                let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
                let jwk = json!({
                    "kty": "OKP", "use": "sig", "alg": "EdDSA", "kid": kid, "crv": "Ed25519",
                    "x": b64(pair.public_key().as_ref()),
                });
                (Signer::Ed(pair), jwk)
            }
        };
        SigningKey {
            kid: kid.to_string(),
            kind,
            signer,
            jwk,
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.kind {
            KeyKind::Rs256 => "RS256",
            KeyKind::Es256 => "ES256",
            KeyKind::EdDsa => "EdDSA",
        }
    }

    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public key as a PEM `PUBLIC KEY` (X.509 SubjectPublicKeyInfo), the form
    /// other verifiers such as HAProxy's `jwt_verify` load.
    pub fn public_key_pem(&self) -> String {
        use aws_lc_rs::encoding::AsDer;
        // Encoding a key aws-lc generated itself only fails on allocation failure.
        let der = match &self.signer {
            Signer::Rsa(pair) => pair.public_key().as_der(),
            Signer::Ec(pair) => pair.public_key().as_der(),
            Signer::Ed(pair) => pair.public_key().as_der(),
        }
        .expect("public key DER");
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// Signs arbitrary bytes with this key's algorithm.
    pub fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .expect("RSA signing");
                sig
            }
            Signer::Ec(pair) => pair
                .sign(&rng, message)
                .expect("EC signing")
                .as_ref()
                .to_vec(),
            Signer::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    /// A compact JWS of `claims` with header `{alg, kid, typ}`.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg(), "kid": self.kid, "typ": "at+jwt" });
        sign_with_header(&header, claims, |m| self.sign_raw(m))
    }
}

/// `b64(header).b64(claims).b64(sign(...))` for any header and signer.
pub fn sign_with_header(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}
