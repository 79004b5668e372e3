//! The proof check as tables: each algorithm accepted (its thumbprint
//! checked against jsonwebtoken's RFC 7638 implementation), every
//! rejection by name, and the `htu` comparison.

use super::*;
use crate::demo::{sign_with_header, KeyKind, SigningKey};
use serde_json::{json, Value};
use std::sync::OnceLock;

const NOW: u64 = 1_800_000_000;
const TOKEN: &[u8] = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
const WINDOW: Window = Window {
    max_age: 60,
    leeway: 5,
};

fn keys() -> &'static [SigningKey; 4] {
    static KEYS: OnceLock<[SigningKey; 4]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            SigningKey::generate(KeyKind::Es256, "ec"),
            SigningKey::generate(KeyKind::EdDsa, "ed"),
            SigningKey::generate(KeyKind::Rs256, "rsa"),
            SigningKey::generate(KeyKind::Es256, "other"),
        ]
    })
}

fn expected() -> Expected<'static> {
    Expected {
        method: "POST",
        scheme: "https",
        authority: "api.example.com",
        path: "/orders/7",
        token: TOKEN,
    }
}

/// `base` with each member of `changes` set (`null` removes it).
fn merged(mut base: Value, changes: &Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        match v {
            Value::Null => drop(base.as_object_mut().unwrap().remove(k)),
            v => base[k] = v.clone(),
        }
    }
    base
}

/// A proof by `key`, its header and claims changed as asked.
fn proof_by(key: &SigningKey, header: Value, claims: Value) -> String {
    let h = merged(
        json!({ "typ": "dpop+jwt", "alg": key.alg(), "jwk": key.jwk() }),
        &header,
    );
    let c = merged(
        json!({
            "jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": "https://api.example.com/orders/7",
            "iat": NOW, "ath": token_hash(TOKEN),
        }),
        &claims,
    );
    sign_with_header(&h, &c, |m| key.sign_raw(m))
}

fn proof(header: Value, claims: Value) -> String {
    proof_by(&keys()[0], header, claims)
}

fn run(proof: &str) -> Result<Proven, Reject> {
    check(proof.as_bytes(), &expected(), WINDOW, NOW)
}

#[test]
fn each_algorithm_proves_its_key_by_its_rfc_7638_thumbprint() {
    for key in &keys()[..3] {
        let proven = run(&proof_by(key, json!({}), json!({}))).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk().clone()).unwrap();
        let theirs = jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256);
        assert_eq!(proven.jkt, theirs, "{}", key.alg());
        assert_eq!((proven.jti.as_str(), proven.iat), ("e1j3V_bKic8-LAEB", NOW));
    }
    // RFC 7638 §3.1's own example key and thumbprint.
    let rfc = json!({
        "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    });
    let text = rfc.to_string();
    let jwk: ProofJwk<'_> = serde_json::from_str(&text).unwrap();
    let key = jwk.public_key(ProofAlg::Rs256).unwrap();
    assert_eq!(
        key.thumbprint,
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn every_failed_check_is_named() {
    let bad = |why: &'static str| Err::<(), _>(Reject::BadProof(why));
    let (ec, rsa, other) = (&keys()[0], &keys()[2], &keys()[3]);
    let mut with_d = ec.jwk().clone();
    with_d["d"] = json!("c2VjcmV0");
    let mut short_x = ec.jwk().clone();
    short_x["x"] = json!("AAAA");
    let cases: Vec<(&str, String, Result<(), Reject>)> = vec![
        ("good", proof(json!({}), json!({})), Ok(())),
        (
            "typ missing",
            proof(json!({ "typ": null }), json!({})),
            bad("typ is not dpop+jwt"),
        ),
        (
            "typ a JWT",
            proof(json!({ "typ": "JWT" }), json!({})),
            bad("typ is not dpop+jwt"),
        ),
        (
            "typ in another case",
            proof(json!({ "typ": "DPoP+JWT" }), json!({})),
            Ok(()),
        ),
        (
            "alg none",
            proof(json!({ "alg": "none" }), json!({})),
            bad("alg is not one of the accepted algorithms"),
        ),
        (
            "alg HS256",
            proof(json!({ "alg": "HS256" }), json!({})),
            bad("alg is not one of the accepted algorithms"),
        ),
        (
            "alg for another key type",
            proof(json!({ "alg": "RS256" }), json!({})),
            bad("the jwk is not a key for alg"),
        ),
        (
            "alg for another curve",
            proof(json!({ "alg": "ES384" }), json!({})),
            bad("the jwk is not a key for alg"),
        ),
        (
            "no jwk",
            proof(json!({ "jwk": null }), json!({})),
            bad("the header has no jwk"),
        ),
        (
            "a private jwk",
            proof(json!({ "jwk": with_d }), json!({})),
            bad("the jwk holds private key members"),
        ),
        (
            "a coordinate cut short",
            proof(json!({ "jwk": short_x }), json!({})),
            bad("the jwk's coordinates are not of its curve's size"),
        ),
        (
            "crit",
            proof(json!({ "crit": ["exp"] }), json!({})),
            bad("crit header parameters are not supported"),
        ),
        (
            "signed by another key",
            proof_by(other, json!({ "jwk": ec.jwk() }), json!({})),
            bad("the proof's signature does not verify with its jwk"),
        ),
        (
            "an RSA key for an EC one",
            proof_by(rsa, json!({ "jwk": ec.jwk(), "alg": "ES256" }), json!({})),
            bad("the proof's signature does not verify with its jwk"),
        ),
        (
            "htm another method",
            proof(json!({}), json!({ "htm": "GET" })),
            bad("htm is not the request's method"),
        ),
        (
            "htm in lower case",
            proof(json!({}), json!({ "htm": "post" })),
            bad("htm is not the request's method"),
        ),
        (
            "no htm",
            proof(json!({}), json!({ "htm": null })),
            bad("the proof has no htm"),
        ),
        (
            "htu another path",
            proof(
                json!({}),
                json!({ "htu": "https://api.example.com/orders/8" }),
            ),
            bad("htu is not the URI of the request"),
        ),
        (
            "htu another host",
            proof(
                json!({}),
                json!({ "htu": "https://evil.example.com/orders/7" }),
            ),
            bad("htu is not the URI of the request"),
        ),
        (
            "htu http",
            proof(
                json!({}),
                json!({ "htu": "http://api.example.com/orders/7" }),
            ),
            bad("htu is not the URI of the request"),
        ),
        (
            "htu another port",
            proof(
                json!({}),
                json!({ "htu": "https://api.example.com:8443/orders/7" }),
            ),
            bad("htu is not the URI of the request"),
        ),
        (
            "htu relative",
            proof(json!({}), json!({ "htu": "/orders/7" })),
            bad("htu is not the URI of the request"),
        ),
        (
            "htu with userinfo",
            proof(
                json!({}),
                json!({ "htu": "https://a@api.example.com/orders/7" }),
            ),
            bad("htu is not the URI of the request"),
        ),
        (
            "no htu",
            proof(json!({}), json!({ "htu": null })),
            bad("the proof has no htu"),
        ),
        (
            "htu with a query",
            proof(
                json!({}),
                json!({ "htu": "https://api.example.com/orders/7?x=1#f" }),
            ),
            Ok(()),
        ),
        (
            "iat at the edge",
            proof(json!({}), json!({ "iat": NOW - 60 })),
            Ok(()),
        ),
        (
            "iat too old",
            proof(json!({}), json!({ "iat": NOW - 61 })),
            bad("the proof is too old (iat)"),
        ),
        (
            "iat ahead within leeway",
            proof(json!({}), json!({ "iat": NOW + 5 })),
            Ok(()),
        ),
        (
            "iat ahead",
            proof(json!({}), json!({ "iat": NOW + 6 })),
            bad("the proof is issued in the future (iat)"),
        ),
        (
            "iat a fraction",
            proof(json!({}), json!({ "iat": (NOW as f64) + 0.5 })),
            Ok(()),
        ),
        (
            "iat a string",
            proof(json!({}), json!({ "iat": NOW.to_string() })),
            bad("the proof's payload is not a JSON object of its claims"),
        ),
        (
            "iat negative",
            proof(json!({}), json!({ "iat": -1 })),
            bad("the proof has no numeric iat"),
        ),
        (
            "no iat",
            proof(json!({}), json!({ "iat": null })),
            bad("the proof has no numeric iat"),
        ),
        (
            "no jti",
            proof(json!({}), json!({ "jti": null })),
            bad("the proof has no jti"),
        ),
        (
            "empty jti",
            proof(json!({}), json!({ "jti": "" })),
            bad("the proof's jti is empty or too long"),
        ),
        (
            "long jti",
            proof(json!({}), json!({ "jti": "j".repeat(257) })),
            bad("the proof's jti is empty or too long"),
        ),
        (
            "no ath",
            proof(json!({}), json!({ "ath": null })),
            bad("the proof has no ath"),
        ),
        (
            "ath of another token",
            proof(json!({}), json!({ "ath": token_hash(b"another") })),
            bad("ath is not the hash of the access token"),
        ),
        (
            "two parts",
            "eyJhbGciOiJFUzI1NiJ9.e30".to_string(),
            bad("the proof is not a compact JWS"),
        ),
        (
            "white space",
            format!("{} ", proof(json!({}), json!({}))),
            bad("the proof is not a compact JWS"),
        ),
        (
            "too large",
            "a".repeat(MAX_PROOF_BYTES + 1),
            bad("the proof is too large"),
        ),
        (
            "header not JSON",
            format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("x")),
            bad("the proof's header is not a JSON object with typ, alg and jwk"),
        ),
    ];
    for (name, proof, want) in cases {
        assert_eq!(run(&proof).map(|_| ()), want, "{name}");
    }
    // A claim given twice is refused, not read either way.
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": ec.jwk() });
    let payload = format!(
        r#"{{"jti":"a","htm":"GET","htm":"POST","htu":"https://api.example.com/orders/7","iat":{NOW},"ath":"{}"}}"#,
        token_hash(TOKEN)
    );
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let twice = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(ec.sign_raw(input.as_bytes()))
    );
    assert_eq!(
        run(&twice).map(|_| ()),
        bad("the proof's payload is not a JSON object of its claims")
    );
}

#[test]
fn htu_is_compared_as_rfc_3986_normalizes() {
    let request = |scheme, authority, path| Expected {
        method: "GET",
        scheme,
        authority,
        path,
        token: TOKEN,
    };
    let cases = [
        (
            "https://api.example.com/a",
            request("https", "api.example.com", "/a"),
            true,
        ),
        (
            "HTTPS://API.Example.COM/a",
            request("https", "api.example.com", "/a"),
            true,
        ),
        (
            "https://api.example.com:443/a",
            request("https", "api.example.com", "/a"),
            true,
        ),
        (
            "https://api.example.com/a",
            request("https", "api.example.com:443", "/a"),
            true,
        ),
        (
            "http://127.0.0.1:8080/a",
            request("http", "127.0.0.1:8080", "/a"),
            true,
        ),
        (
            "http://127.0.0.1/a",
            request("http", "127.0.0.1:8080", "/a"),
            false,
        ),
        (
            "http://[::1]:8080/a",
            request("http", "[::1]:8080", "/a"),
            true,
        ),
        (
            "https://api.example.com",
            request("https", "api.example.com", "/"),
            true,
        ),
        (
            "https://api.example.com/%7Euser/a%2fb",
            request("https", "api.example.com", "/~user/a%2Fb"),
            true,
        ),
        (
            "https://api.example.com/a%2Fb",
            request("https", "api.example.com", "/a/b"),
            false,
        ),
        (
            "https://api.example.com/A",
            request("https", "api.example.com", "/a"),
            false,
        ),
        (
            "https://api.example.com/a/",
            request("https", "api.example.com", "/a"),
            false,
        ),
        (
            "https://api.example.com/a?q",
            request("https", "api.example.com", "/a"),
            true,
        ),
        (
            "https://api.example.com/a#f",
            request("https", "api.example.com", "/a"),
            true,
        ),
        (
            "ftp://api.example.com/a",
            request("https", "api.example.com", "/a"),
            false,
        ),
        (
            "https:///a",
            request("https", "api.example.com", "/a"),
            false,
        ),
        (
            "not a uri",
            request("https", "api.example.com", "/a"),
            false,
        ),
    ];
    for (htu, expected, want) in cases {
        assert_eq!(same_uri(htu, &expected), want, "{htu} against {expected:?}");
    }
}
