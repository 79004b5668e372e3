//! A DPoP client (RFC 9449) built from parts nobody here wrote: an aws-lc-rs
//! P-256 key, jsonwebtoken's JWS encoder for its proofs and its RFC 7638
//! thumbprint for the binding a token names.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokengate::demo::unix_now;

/// A client's DPoP key: jsonwebtoken signs its proofs.
pub struct DpopClient {
    key: EncodingKey,
    jwk: Jwk,
}

impl DpopClient {
    pub fn generate() -> DpopClient {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::from_value(json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }))
        .unwrap();
        DpopClient {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        }
    }

    /// What a token bound to this key carries in `cnf.jkt`.
    pub fn jkt(&self) -> String {
        self.jwk.thumbprint(ThumbprintHash::SHA256)
    }

    /// A proof for `method` `htu` with `token`, its claims changed as asked
    /// (`null` removes one).
    pub fn proof(&self, method: &str, htu: &str, token: &str, changes: Value) -> String {
        let ath = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            token.as_bytes(),
        ));
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(rand_bytes()), "htm": method, "htu": htu,
            "iat": unix_now(), "ath": ath,
        });
        for (k, v) in changes.as_object().unwrap() {
            match v {
                Value::Null => drop(claims.as_object_mut().unwrap().remove(k)),
                v => claims[k] = v.clone(),
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}
