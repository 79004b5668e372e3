//! Differential verification: tokens generated for every supported algorithm
//! (valid, tampered, with edge-case claims and headers) are judged by
//! tokengate's verifier and by `jsonwebtoken`, configured alike (issuer,
//! audience, algorithm, leeway, `exp` required). Every disagreement must be a
//! policy difference listed in [`POLICY`] (and docs/SECURITY.md), and every
//! listed difference must still occur, so the list cannot go stale.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokengate::config::Config;
use tokengate::guard::keys::{KeySet, KeySnapshot};

/// Wide enough that the cases near it keep clear of the few seconds the
/// loop may take on a loaded machine: jsonwebtoken judges by the clock.
const LEEWAY: u64 = 30;
const SECRET: &str = "differential-shared-secret-0123456789abcdef";
const ASYMMETRIC: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
const HMAC: [&str; 3] = ["HS256", "HS384", "HS512"];

/// Where the two verifiers are known to differ, and why: (case, who accepts).
const POLICY: &[(&str, Accepts, &str)] = &[
    (
        "crit header",
        Accepts::JsonwebtokenOnly,
        "tokengate understands no JWS extension, so any `crit` is refused (RFC 7515 §4.1.11); jsonwebtoken ignores it",
    ),
    (
        "iat in the future",
        Accepts::JsonwebtokenOnly,
        "tokengate refuses a token issued after now + leeway; jsonwebtoken does not check iat",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepts {
    TokengateOnly,
    JsonwebtokenOnly,
}

/// A key for one algorithm: signs, and is published as a JWK (or, for HMAC,
/// shared).
enum Signer {
    Rsa(
        Arc<aws_lc_rs::rsa::KeyPair>,
        &'static dyn signature::RsaEncoding,
    ),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Hmac(aws_lc_rs::hmac::Algorithm),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct Key {
    alg: &'static str,
    signer: Signer,
}

impl Key {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair, padding) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(*padding, &rng, message, &mut sig).unwrap();
                sig
            }
            Signer::Ec(pair) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Signer::Ed(pair) => pair.sign(message).as_ref().to_vec(),
            Signer::Hmac(alg) => {
                let key = aws_lc_rs::hmac::Key::new(*alg, SECRET.as_bytes());
                aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
            }
        }
    }

    /// The public JWK, `kid` = the algorithm's name; `None` for HMAC.
    fn jwk(&self) -> Option<Value> {
        let (alg, kid) = (self.alg, self.alg);
        Some(match &self.signer {
            Signer::Rsa(pair, _) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "alg": alg, "kid": kid,
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::Ec(pair) => {
                let point = pair.public_key().as_ref();
                let (crv, len) = match alg {
                    "ES256" => ("P-256", 32),
                    _ => ("P-384", 48),
                };
                json!({
                    "kty": "EC", "use": "sig", "alg": alg, "kid": kid, "crv": crv,
                    "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..1 + 2 * len]),
                })
            }
            Signer::Ed(pair) => json!({
                "kty": "OKP", "use": "sig", "alg": alg, "kid": kid, "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            }),
            Signer::Hmac(_) => return None,
        })
    }

    fn issuer(&self) -> &'static str {
        match self.signer {
            Signer::Hmac(_) => "https://peer.example",
            _ => "https://idp.example",
        }
    }
}

fn keys() -> Vec<Key> {
    let rsa =
        Arc::new(aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap());
    let rsa = |alg, padding| Key {
        alg,
        signer: Signer::Rsa(rsa.clone(), padding),
    };
    let ec = |alg, how| Key {
        alg,
        signer: Signer::Ec(EcdsaKeyPair::generate(how).unwrap()),
    };
    let hmac = |alg, how| Key {
        alg,
        signer: Signer::Hmac(how),
    };
    vec![
        rsa("RS256", &signature::RSA_PKCS1_SHA256),
        rsa("RS384", &signature::RSA_PKCS1_SHA384),
        rsa("RS512", &signature::RSA_PKCS1_SHA512),
        rsa("PS256", &signature::RSA_PSS_SHA256),
        rsa("PS384", &signature::RSA_PSS_SHA384),
        rsa("PS512", &signature::RSA_PSS_SHA512),
        ec("ES256", &signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        ec("ES384", &signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        Key {
            alg: "EdDSA",
            signer: Signer::Ed(Ed25519KeyPair::generate().unwrap()),
        },
        hmac("HS256", aws_lc_rs::hmac::HMAC_SHA256),
        hmac("HS384", aws_lc_rs::hmac::HMAC_SHA384),
        hmac("HS512", aws_lc_rs::hmac::HMAC_SHA512),
    ]
}

/// tokengate's verifier over the two issuers, with the JWKS as its snapshot.
fn tokengate(jwks: &str) -> (tokengate::guard::verify::Verifier, KeySnapshot) {
    let yaml = format!(
        r#"
inbound:
  listen: 127.0.0.1:0
  upstream: http://127.0.0.1:1
  issuers:
    - issuer: https://idp.example
      jwks_uri: http://127.0.0.1:1/jwks.json
      audiences: [api]
      algorithms: [{}]
      leeway: {LEEWAY}s
    - issuer: https://peer.example
      shared_secret: "{SECRET}"
      audiences: [api]
      algorithms: [{}]
      leeway: {LEEWAY}s
  rules:
    - {{ path: /, scopes: [] }}
"#,
        ASYMMETRIC.join(", "),
        HMAC.join(", ")
    );
    let config = Config::from_yaml(&yaml, "differential", &|_| None).expect("config");
    let inbound = config.inbound.expect("inbound").guard;
    let parsed = KeySet::parse(
        jwks.as_bytes(),
        &inbound.issuers[0].algorithms,
        &KeySet::default(),
    )
    .expect("JWKS");
    assert_eq!(parsed.keys.len(), ASYMMETRIC.len(), "{:?}", parsed.skipped);
    let snapshot = KeySnapshot {
        issuers: vec![
            Arc::new(KeySet::never_stale(parsed.keys)),
            Arc::new(KeySet::never_stale(Vec::new())),
        ],
    };
    (tokengate::guard::verifier(&inbound), snapshot)
}

/// jsonwebtoken's verdict, configured as tokengate is: the key the header's
/// `kid` names (else the one key for its `alg`), that key's algorithm only,
/// the issuer and audience, `exp` required, `nbf` checked, the same leeway.
fn jsonwebtoken_accepts(token: &str, keys: &[Key], jwks: &jsonwebtoken::jwk::JwkSet) -> bool {
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return false;
    };
    // Each algorithm has one key, named after it: without a `kid`, the key
    // for the header's `alg`. A shared secret has no `kid`: HMAC tokens are
    // checked with it whatever they name.
    let alg = format!("{:?}", header.alg);
    let named = match header.kid.as_deref() {
        Some(kid) if !alg.starts_with("HS") => kid,
        _ => &alg,
    };
    let Some(key) = keys.iter().find(|k| k.alg == named) else {
        return false;
    };
    let decoding = match jwks.find(named) {
        Some(jwk) => DecodingKey::from_jwk(jwk).unwrap(),
        None => DecodingKey::from_secret(SECRET.as_bytes()),
    };
    let mut validation = Validation::new(key.alg.parse().unwrap());
    validation.set_issuer(&[key.issuer()]);
    validation.set_audience(&["api"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY;
    jsonwebtoken::decode::<Value>(token, &decoding, &validation).is_ok()
}

/// How a case makes its token from a key, a header and claims valid at `now`.
type Make = fn(&Key, Value, Value, u64) -> String;

fn sign(key: &Key, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn with(mut value: Value, key: &str, set: Value) -> Value {
    match set {
        Value::Null => {
            value.as_object_mut().unwrap().remove(key);
        }
        set => {
            value[key] = set;
        }
    }
    value
}

fn cases() -> Vec<(&'static str, Make)> {
    vec![
        ("valid", |k, h, c, _| sign(k, &h, &c)),
        ("payload tampered", |k, h, c, _| {
            let token = sign(k, &h, &c);
            let mut parts: Vec<String> = token.split('.').map(String::from).collect();
            parts[1] = b64(with(c, "sub", json!("mallory")).to_string().as_bytes());
            parts.join(".")
        }),
        ("signature tampered", |k, h, c, _| {
            let token = sign(k, &h, &c);
            let (input, sig) = token.rsplit_once('.').unwrap();
            let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let last = sig.len() - 1;
            sig[last] ^= 1;
            format!("{input}.{}", b64(&sig))
        }),
        ("signature of another message", |k, h, c, _| {
            let other = sign(k, &h, &with(c.clone(), "sub", json!("other")));
            let token = sign(k, &h, &c);
            let (input, _) = token.rsplit_once('.').unwrap();
            format!("{input}.{}", other.rsplit_once('.').unwrap().1)
        }),
        ("signature removed", |k, h, c, _| {
            let token = sign(k, &h, &c);
            format!("{}.", token.rsplit_once('.').unwrap().0)
        }),
        ("alg none", |k, h, c, _| {
            let token = sign(k, &with(h, "alg", json!("none")), &c);
            format!("{}.", token.rsplit_once('.').unwrap().0)
        }),
        ("alg swapped within the family", |k, h, c, _| {
            let token = sign(k, &h, &c);
            let other = match k.alg {
                "RS256" => "RS384",
                "ES256" => "ES384",
                "HS256" => "HS512",
                "PS256" => "RS256",
                _ => "RS256",
            };
            let sig = token.rsplit_once('.').unwrap().1.to_string();
            let header = with(h, "alg", json!(other));
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                token.split('.').nth(1).unwrap()
            );
            format!("{input}.{sig}")
        }),
        ("HMAC with the public key as secret", |k, h, c, _| {
            let public = k.jwk().map(|j| j.to_string()).unwrap_or_default();
            let header = with(h, "alg", json!("HS256"));
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(c.to_string().as_bytes())
            );
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_bytes());
            let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
            format!("{input}.{}", b64(sig.as_ref()))
        }),
        ("unknown kid", |k, h, c, _| {
            sign(k, &with(h, "kid", json!("nobody")), &c)
        }),
        ("no kid", |k, h, c, _| {
            sign(k, &with(h, "kid", Value::Null), &c)
        }),
        ("crit header", |k, h, c, _| {
            sign(k, &with(h, "crit", json!(["exp"])), &c)
        }),
        ("typ JWT", |k, h, c, _| {
            sign(k, &with(h, "typ", json!("JWT")), &c)
        }),
        ("exp missing", |k, h, c, _| {
            sign(k, &h, &with(c, "exp", Value::Null))
        }),
        ("exp long past", |k, h, c, now| {
            sign(k, &h, &with(c, "exp", json!(now - 3600)))
        }),
        ("exp just past the leeway", |k, h, c, now| {
            sign(k, &h, &with(c, "exp", json!(now - LEEWAY - 2)))
        }),
        ("exp within the leeway", |k, h, c, now| {
            sign(k, &h, &with(c, "exp", json!(now - LEEWAY / 2)))
        }),
        ("exp as a fraction", |k, h, c, now| {
            sign(k, &h, &with(c, "exp", json!(now as f64 + 600.5)))
        }),
        ("exp as a string", |k, h, c, now| {
            sign(k, &h, &with(c, "exp", json!((now + 600).to_string())))
        }),
        ("exp negative", |k, h, c, _| {
            sign(k, &h, &with(c, "exp", json!(-1)))
        }),
        ("nbf in the future", |k, h, c, now| {
            sign(k, &h, &with(c, "nbf", json!(now + 600)))
        }),
        ("nbf within the leeway", |k, h, c, now| {
            sign(k, &h, &with(c, "nbf", json!(now + LEEWAY - 2)))
        }),
        ("iat in the future", |k, h, c, now| {
            sign(k, &h, &with(c, "iat", json!(now + 600)))
        }),
        ("aud other", |k, h, c, _| {
            sign(k, &h, &with(c, "aud", json!("other")))
        }),
        ("aud list with ours", |k, h, c, _| {
            sign(k, &h, &with(c, "aud", json!(["other", "api"])))
        }),
        ("aud missing", |k, h, c, _| {
            sign(k, &h, &with(c, "aud", Value::Null))
        }),
        ("iss other", |k, h, c, _| {
            sign(k, &h, &with(c, "iss", json!("https://evil.example")))
        }),
        ("iss missing", |k, h, c, _| {
            sign(k, &h, &with(c, "iss", Value::Null))
        }),
        ("padded base64", |k, h, c, _| {
            let token = sign(k, &h, &c);
            let (input, sig) = token.rsplit_once('.').unwrap();
            let padding = "=".repeat((4 - sig.len() % 4) % 4);
            format!("{input}.{sig}{padding}")
        }),
        ("standard base64 alphabet", |k, h, c, _| {
            let token = sign(k, &h, &c);
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            format!("{input}.{}", STANDARD.encode(sig).trim_end_matches('='))
        }),
        ("a fourth segment", |k, h, c, _| {
            format!("{}.e30", sign(k, &h, &c))
        }),
        ("exp twice, the first expired", |k, h, c, now| {
            duplicated(k, &h, &c, "exp", json!(now - 3600), json!(now + 600))
        }),
        ("exp twice, the last expired", |k, h, c, now| {
            duplicated(k, &h, &c, "exp", json!(now + 600), json!(now - 3600))
        }),
        ("iss twice, the first foreign", |k, h, c, _| {
            let iss = c["iss"].clone();
            duplicated(k, &h, &c, "iss", json!("https://evil.example"), iss)
        }),
        ("aud twice, the last foreign", |k, h, c, _| {
            duplicated(k, &h, &c, "aud", json!("api"), json!("other"))
        }),
    ]
}

/// A token whose payload names `claim` twice, `first` then `last` (JSON
/// leaves duplicates to the reader; a verifier must not read one and sign
/// off on the other).
fn duplicated(
    key: &Key,
    header: &Value,
    claims: &Value,
    claim: &str,
    first: Value,
    last: Value,
) -> String {
    let rest = with(claims.clone(), claim, Value::Null).to_string();
    let payload = format!(
        "{{\"{claim}\":{first},{},\"{claim}\":{last}}}",
        &rest[1..rest.len() - 1]
    );
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.as_bytes())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

#[test]
fn tokengate_and_jsonwebtoken_differ_only_where_policy_says() {
    let keys = keys();
    let jwks_doc = json!({ "keys": keys.iter().filter_map(Key::jwk).collect::<Vec<_>>() });
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks_doc.clone()).unwrap();
    let (verifier, snapshot) = tokengate(&jwks_doc.to_string());
    // jsonwebtoken reads the system clock, so both judge at the real time
    // (the cases keep clear of the second boundaries).
    let now = tokengate::demo::unix_now();

    let mut differences: BTreeMap<&str, Vec<(&str, Accepts)>> = BTreeMap::new();
    let mut accepted = 0;
    for (case, make) in cases() {
        for key in &keys {
            let header = json!({ "alg": key.alg, "kid": key.alg, "typ": "at+jwt" });
            let claims = json!({
                "iss": key.issuer(), "aud": "api", "sub": "alice",
                "iat": now - 10, "nbf": now - 10, "exp": now + 600,
            });
            let token = make(key, header, claims, now);
            let ours = verifier.verify(&token, &snapshot, now).is_ok();
            let theirs = jsonwebtoken_accepts(&token, &keys, &jwks);
            accepted += usize::from(ours);
            if ours != theirs {
                let who = if ours {
                    Accepts::TokengateOnly
                } else {
                    Accepts::JsonwebtokenOnly
                };
                differences.entry(case).or_default().push((key.alg, who));
            }
            if case == "valid" {
                assert!(
                    ours && theirs,
                    "{} valid token: ours {ours}, theirs {theirs}",
                    key.alg
                );
            }
        }
    }
    assert!(accepted >= keys.len(), "the valid tokens pass");

    let listed = |case: &str| POLICY.iter().find(|(c, _, _)| *c == case);
    let unexplained: Vec<_> = differences
        .iter()
        .filter(|(case, seen)| {
            listed(case).is_none_or(|(_, who, _)| seen.iter().any(|(_, w)| w != who))
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "disagreements no policy explains: {unexplained:?}"
    );
    for (case, who, why) in POLICY {
        let seen = differences.get(case).map(Vec::len).unwrap_or(0);
        assert_eq!(
            seen,
            keys.len(),
            "{case:?} ({who:?}: {why}) should differ for every algorithm; differs for {seen}"
        );
    }
}
