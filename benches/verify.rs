//! Verify hot path vs. its baselines, in one run:
//! - `hit`: a cached token (cache lookup + expiry/key check + route scopes);
//! - `miss/<alg>`: the full pure verifier on a token it has not seen;
//! - `jsonwebtoken/<alg>`: `jsonwebtoken::decode` with a prebuilt `DecodingKey`
//!   and `Validation` (what a typical Rust service does);
//! - `raw/<alg>`: the crypto library's signature check alone on a pre-parsed key
//!   (aws-lc-rs `ParsedPublicKey::verify_sig` / `hmac::verify`): the floor;
//! - `dpop/ES256`: a DPoP proof's whole check (parse, its own `jwk` parsed and
//!   thumbprinted, signature, claims, `ath`), set against `raw/ES256` (issue
//!   29's goal: at most one ES256 verify + 10%).
//!
//! Run: `cargo bench --bench verify`. Ratios miss/raw and hit/raw are what
//! docs/performance.md records.

use aws_lc_rs::{hmac, signature};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tokengate::config::Config;
use tokengate::config::Requirements;
use tokengate::demo::{sign_with_header, unix_now, KeyKind, SigningKey};
use tokengate::guard::cache::TokenCache;
use tokengate::guard::dpop;
use tokengate::guard::keys::{KeySet, KeySnapshot};
use tokengate::guard::verify::Verifier;

const ISS: &str = "https://idp.bench";
const SECRET: &str = "bench-secret-bench-secret-bench-secret!!";

fn setup() -> (
    Verifier,
    KeySnapshot,
    Vec<(&'static str, String, SigningKey)>,
) {
    let yaml = format!(
        r#"
inbound:
  listen: 127.0.0.1:0
  upstream: http://127.0.0.1:1
  issuers:
    - issuer: "{ISS}"
      jwks_uri: "{ISS}/jwks"
      audiences: [orders-api]
      algorithms: [RS256, ES256, EdDSA]
    - issuer: hs-peer
      audiences: [orders-api]
      algorithms: [HS256]
      shared_secret: "{SECRET}"
  rules: [{{ path: / }}]
  forward:
    claims_to_headers: {{ sub: x-auth-subject }}
"#
    );
    let inbound = Config::from_yaml(&yaml, "bench", &|_| None)
        .expect("bench config")
        .inbound
        .expect("inbound")
        .guard;
    let verifier = Verifier::new(
        &inbound.issuers,
        8192,
        inbound.forward.claims_to_headers.clone(),
        vec![],
    );
    let keys = [
        SigningKey::generate(KeyKind::Rs256, "rs"),
        SigningKey::generate(KeyKind::Es256, "es"),
        SigningKey::generate(KeyKind::EdDsa, "ed"),
    ];
    let jwks =
        json!({ "keys": keys.iter().map(|k| k.jwk().clone()).collect::<Vec<_>>() }).to_string();
    let parsed = KeySet::parse(
        jwks.as_bytes(),
        &inbound.issuers[0].algorithms,
        &KeySet::default(),
    )
    .expect("jwks");
    let snapshot = KeySnapshot {
        issuers: vec![
            Arc::new(KeySet::never_stale(parsed.keys)),
            Arc::new(KeySet::never_stale(vec![])),
        ],
    };
    let now = unix_now();
    let claims = |iss: &str| {
        json!({ "iss": iss, "aud": "orders-api", "sub": "svc-orders", "iat": now, "exp": now + 3600,
                "scope": "orders:read orders:write", "client_id": "svc-orders", "jti": "8f1c2e" })
    };
    let [rs, es, ed] = keys;
    let tokens = vec![
        ("RS256", rs.sign_jwt(&claims(ISS)), rs),
        ("ES256", es.sign_jwt(&claims(ISS)), es),
        ("EdDSA", ed.sign_jwt(&claims(ISS)), ed),
    ];
    (verifier, snapshot, tokens)
}

fn hs256_token() -> String {
    let now = unix_now();
    let claims = json!({ "iss": "hs-peer", "aud": "orders-api", "sub": "svc-orders", "iat": now, "exp": now + 3600, "scope": "orders:read" });
    sign_with_header(&json!({"alg": "HS256", "typ": "JWT"}), &claims, |m| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes()), m)
            .as_ref()
            .to_vec()
    })
}

fn split(token: &str) -> (&[u8], Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').expect("jwt");
    (input.as_bytes(), URL_SAFE_NO_PAD.decode(sig).expect("sig"))
}

fn bench(c: &mut Criterion) {
    let (verifier, snapshot, tokens) = setup();
    let now = unix_now();
    let hs = hs256_token();

    // Cache hit: exactly what Inbound::verified + authorize do for a seen token.
    let cache = TokenCache::new(10_000);
    let requirements = Requirements {
        scopes: vec!["orders:read".into()],
        ..Default::default()
    };
    let (_, rs_token, _) = &tokens[0];
    cache.insert(
        rs_token.as_bytes(),
        Arc::new(verifier.verify(rs_token, &snapshot, now).expect("valid")),
        now,
    );
    c.bench_function("hit/RS256", |b| {
        b.iter(|| {
            let v = cache
                .get(black_box(rs_token.as_bytes()), &snapshot, now)
                .expect("cached");
            requirements.check(&v).expect("scope");
            v
        })
    });

    for (alg, token, key) in &tokens {
        let algorithm: Algorithm = alg.parse().expect("alg");
        c.bench_function(&format!("miss/{alg}"), |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(token), &snapshot, now)
                    .expect("valid")
            })
        });

        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk().clone()).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&["orders-api"]);
        validation.set_issuer(&[ISS]);
        c.bench_function(&format!("jsonwebtoken/{alg}"), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(black_box(token), &decoding, &validation)
                    .expect("valid")
            })
        });

        let (message, sig) = split(token);
        let parsed = match key.kind {
            KeyKind::Rs256 => {
                let n = URL_SAFE_NO_PAD
                    .decode(key.jwk()["n"].as_str().unwrap())
                    .unwrap();
                let e = URL_SAFE_NO_PAD
                    .decode(key.jwk()["e"].as_str().unwrap())
                    .unwrap();
                signature::RsaPublicKeyComponents { n: &n, e: &e }
                    .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
                    .unwrap()
            }
            KeyKind::Es256 => {
                let mut point = vec![4u8];
                point.extend(
                    URL_SAFE_NO_PAD
                        .decode(key.jwk()["x"].as_str().unwrap())
                        .unwrap(),
                );
                point.extend(
                    URL_SAFE_NO_PAD
                        .decode(key.jwk()["y"].as_str().unwrap())
                        .unwrap(),
                );
                signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap()
            }
            KeyKind::EdDsa => {
                let x = URL_SAFE_NO_PAD
                    .decode(key.jwk()["x"].as_str().unwrap())
                    .unwrap();
                signature::ParsedPublicKey::new(&signature::ED25519, x).unwrap()
            }
        };
        c.bench_function(&format!("raw/{alg}"), |b| {
            b.iter(|| {
                parsed
                    .verify_sig(black_box(message), black_box(&sig))
                    .expect("valid")
            })
        });
    }

    // A DPoP proof for one request, checked as each request's is.
    let (_, es_token, _) = &tokens[1];
    let client = SigningKey::generate(KeyKind::Es256, "client");
    let jwk = client.jwk();
    let public = json!({ "kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"] });
    let proof = sign_with_header(
        &json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": public }),
        &json!({ "jti": "b0c1d2e3f4a5b6c7", "htm": "GET", "htu": "https://api.bench/orders/7",
                 "iat": now, "ath": dpop::token_hash(es_token.as_bytes()) }),
        |m| client.sign_raw(m),
    );
    let expected = dpop::Expected {
        method: "GET",
        scheme: "https",
        authority: "api.bench",
        path: "/orders/7",
        token: es_token.as_bytes(),
    };
    let window = dpop::Window {
        max_age: 60,
        leeway: 5,
    };
    c.bench_function("dpop/ES256", |b| {
        b.iter(|| dpop::check(black_box(proof.as_bytes()), &expected, window, now).expect("valid"))
    });

    c.bench_function("miss/HS256", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&hs), &snapshot, now)
                .expect("valid")
        })
    });
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["orders-api"]);
    validation.set_issuer(&["hs-peer"]);
    let decoding = DecodingKey::from_secret(SECRET.as_bytes());
    c.bench_function("jsonwebtoken/HS256", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(black_box(&hs), &decoding, &validation)
                .expect("valid")
        })
    });
    let (message, sig) = split(&hs);
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    c.bench_function("raw/HS256", |b| {
        b.iter(|| hmac::verify(&key, black_box(message), black_box(&sig)).expect("valid"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
