//! Table tests for the pure verifier: every rejection it knows, each accepted
//! algorithm, and what a verified token carries.

use super::*;
use crate::config::IssuerId;
use crate::config::{Config, IssuerConfig};
use crate::demo::{sign_with_header, KeyKind, SigningKey};
use crate::guard::keys::KeySet;
use aws_lc_rs::hmac;
use serde_json::json;
use std::sync::OnceLock;

const ISS: &str = "https://idp.test";
const NOW: u64 = 1_800_000_000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-shared";

struct Fixture {
    rsa: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    /// Same kid space, not published.
    stranger: SigningKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        rsa: SigningKey::generate(KeyKind::Rs256, "rsa-1"),
        ec: SigningKey::generate(KeyKind::Es256, "ec-1"),
        ed: SigningKey::generate(KeyKind::EdDsa, "ed-1"),
        stranger: SigningKey::generate(KeyKind::Rs256, "rsa-1"),
    })
}

fn issuers(extra: &str) -> Vec<IssuerConfig> {
    let yaml = format!(
        r#"
inbound:
  listen: 127.0.0.1:0
  upstream: http://127.0.0.1:1
  issuers:
    - issuer: "{ISS}"
      jwks_uri: "{ISS}/jwks"
      audiences: [api, other-api]
      algorithms: [RS256, ES256, EdDSA]
      leeway: 30s
      {extra}
    - issuer: hs-peer
      audiences: [api]
      algorithms: [HS256]
      shared_secret: "{SECRET}"
  rules: [{{ path: / }}]
"#
    );
    Config::from_yaml(&yaml, "test", &|_| None)
        .unwrap()
        .inbound
        .unwrap()
        .guard
        .issuers
}

fn verifier_with(extra: &str) -> Verifier {
    Verifier::new(
        &issuers(extra),
        4096,
        vec![
            (name("sub"), HeaderName::from_static("x-sub")),
            (name("roles"), HeaderName::from_static("x-roles")),
            (name("level"), HeaderName::from_static("x-level")),
            (
                name("/kubernetes.io/namespace"),
                HeaderName::from_static("x-namespace"),
            ),
        ],
        vec![name("tenant"), name("/kubernetes.io/serviceaccount/name")],
    )
}

fn name(text: &str) -> ClaimName {
    ClaimName::parse(text).unwrap()
}

/// A verifier for one issuer, given as the YAML flow mapping of its fields; no
/// identity headers or rule claims.
pub(crate) fn verifier_for(issuer: &str) -> Verifier {
    let yaml = format!(
        "inbound:\n  listen: 127.0.0.1:0\n  upstream: http://127.0.0.1:1\n  issuers:\n    - {{ {issuer} }}\n  rules: [{{ path: / }}]\n"
    );
    let issuers = Config::from_yaml(&yaml, "test", &|_| None)
        .unwrap()
        .inbound
        .unwrap()
        .guard
        .issuers;
    Verifier::new(&issuers, 4096, vec![], vec![])
}

fn snapshot() -> KeySnapshot {
    let f = fixture();
    let jwks = json!({ "keys": [f.rsa.jwk(), f.ec.jwk(), f.ed.jwk()] }).to_string();
    let parsed = KeySet::parse(
        jwks.as_bytes(),
        &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        &KeySet::default(),
    )
    .unwrap();
    assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    KeySnapshot {
        issuers: vec![
            Arc::new(KeySet {
                keys: parsed.keys,
                usable_until: NOW + 3600,
            }),
            Arc::new(KeySet::never_stale(vec![])),
        ],
    }
}

fn claims(extra: Value) -> Value {
    let mut c = json!({ "iss": ISS, "aud": "api", "sub": "alice", "iat": NOW - 10, "exp": NOW + 300, "scope": "orders:read orders:write" });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn rs(extra: Value) -> String {
    fixture().rsa.sign_jwt(&claims(extra))
}

fn hs256(header: Value, claims: Value, secret: &[u8]) -> String {
    sign_with_header(&header, &claims, |m| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), m)
            .as_ref()
            .to_vec()
    })
}

fn check(token: &str) -> Result<VerifiedToken, Reject> {
    verifier_with("").verify(token, &snapshot(), NOW)
}

#[test]
fn accepts_each_supported_algorithm() {
    let f = fixture();
    for key in [&f.rsa, &f.ec, &f.ed] {
        let token = key.sign_jwt(&claims(json!({})));
        let v = check(&token).unwrap_or_else(|e| panic!("{} rejected: {e}", key.alg()));
        assert_eq!(v.issuer.index(), 0);
        assert_eq!(v.exp, NOW + 300);
    }
    let hs = hs256(
        json!({"alg": "HS256", "typ": "JWT"}),
        claims(json!({"iss": "hs-peer"})),
        SECRET.as_bytes(),
    );
    assert_eq!(check(&hs).unwrap().issuer.index(), 1);
}

#[test]
fn rejections() {
    let f = fixture();
    let good = rs(json!({}));
    let (input, sig) = good.rsplit_once('.').unwrap();
    let flipped_sig = {
        let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        bytes[10] ^= 1;
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
    };
    let (header_b64, _) = input.split_once('.').unwrap();
    let other_payload = URL_SAFE_NO_PAD.encode(claims(json!({"sub": "mallory"})).to_string());
    let swapped_payload = format!("{header_b64}.{other_payload}.{sig}");
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "rsa-1"})),
        b64(claims(json!({})))
    );
    // The classic confusion: HMAC keyed with the RSA public key the JWKS publishes.
    let public_key_bytes = f.rsa.jwk()["n"].as_str().unwrap().as_bytes().to_vec();
    let hs_with_public_key = hs256(
        json!({"alg": "HS256", "kid": "rsa-1"}),
        claims(json!({})),
        &public_key_bytes,
    );
    let hs_peer_with_public_key = hs256(
        json!({"alg": "HS256"}),
        claims(json!({"iss": "hs-peer"})),
        &public_key_bytes,
    );
    let ec_key_with_rs_header = sign_with_header(
        &json!({"alg": "RS256", "kid": "ec-1"}),
        &claims(json!({})),
        |m| f.ec.sign_raw(m),
    );
    let crit = sign_with_header(
        &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}),
        &claims(json!({})),
        |m| f.rsa.sign_raw(m),
    );

    let cases: Vec<(&str, String, Reject)> = vec![
        ("tampered signature", flipped_sig, Reject::BadSignature),
        ("payload swapped", swapped_payload, Reject::BadSignature),
        (
            "signed by an unpublished key with a known kid",
            f.stranger.sign_jwt(&claims(json!({}))),
            Reject::BadSignature,
        ),
        ("alg none", alg_none, Reject::AlgNotAllowed("none".into())),
        (
            "HS256 keyed with the RSA public key",
            hs_with_public_key,
            Reject::AlgNotAllowed("HS256".into()),
        ),
        (
            "HS256 issuer, signed with the RSA public key",
            hs_peer_with_public_key,
            Reject::BadSignature,
        ),
        (
            "EC key named by an RS256 header",
            ec_key_with_rs_header,
            Reject::KeyAlgMismatch("ec-1".into()),
        ),
        ("crit header", crit, Reject::CriticalHeader),
        (
            "wrong aud",
            rs(json!({"aud": "someone-else"})),
            Reject::WrongAudience,
        ),
        (
            "aud array without ours",
            rs(json!({"aud": ["x", "y"]})),
            Reject::WrongAudience,
        ),
        ("no aud", rs(json!({"aud": null})), Reject::WrongAudience),
        (
            "wrong iss",
            rs(json!({"iss": "https://evil.test"})),
            Reject::UnknownIssuer("https://evil.test".into()),
        ),
        ("no iss", rs(json!({"iss": null})), Reject::MissingIssuer),
        (
            "expired",
            rs(json!({"exp": NOW - 31})),
            Reject::Expired {
                exp: NOW - 31,
                now: NOW,
            },
        ),
        (
            "nbf in the future",
            rs(json!({"nbf": NOW + 31})),
            Reject::NotYetValid {
                nbf: NOW + 31,
                now: NOW,
            },
        ),
        (
            "iat in the future",
            rs(json!({"iat": NOW + 31})),
            Reject::IssuedInFuture {
                iat: NOW + 31,
                now: NOW,
            },
        ),
        ("missing exp", rs(json!({"exp": null})), Reject::MissingExp),
        (
            "exp as a string",
            rs(json!({"exp": "soon"})),
            Reject::BadClaim("exp".into(), "NumericDate"),
        ),
        (
            "negative exp",
            rs(json!({"exp": -5})),
            Reject::BadClaim("exp".into(), "NumericDate"),
        ),
        (
            "unknown kid",
            SigningKey::generate(KeyKind::Es256, "nope").sign_jwt(&claims(json!({}))),
            Reject::UnknownKid {
                issuer: IssuerId::new(0),
                kid: "nope".into(),
            },
        ),
        (
            "too large",
            format!("{good}{}", "A".repeat(4096)),
            Reject::TooLarge(4096),
        ),
        (
            "one part",
            "abc".into(),
            Reject::Malformed("expected three dot-separated parts"),
        ),
        (
            "two parts",
            "abc.def".into(),
            Reject::Malformed("expected three dot-separated parts"),
        ),
        (
            "empty header",
            format!(".{other_payload}.{sig}"),
            Reject::Malformed("empty header or payload"),
        ),
        (
            "header not base64",
            format!("@@.{other_payload}.{sig}"),
            Reject::Malformed("header is not base64url"),
        ),
        (
            "header not JSON",
            format!("{}.{other_payload}.{sig}", URL_SAFE_NO_PAD.encode("nope")),
            Reject::Malformed("header is not a JSON object with alg"),
        ),
        (
            "payload not JSON",
            format!("{header_b64}.{}.{sig}", URL_SAFE_NO_PAD.encode("[1]")),
            Reject::Malformed("payload is not a JSON object"),
        ),
        (
            "signature not base64",
            format!("{input}.!!"),
            Reject::Malformed("signature is not base64url"),
        ),
        (
            "identity claim unrepresentable",
            rs(json!({"sub": "a\nb"})),
            Reject::BadClaim("sub".into(), "header value"),
        ),
        (
            "scope claim of the wrong type",
            rs(json!({"scope": 7})),
            Reject::BadClaim("scope".into(), "scope list"),
        ),
    ];
    for (name, token, want) in cases {
        let got = check(&token).map(|_| ());
        assert_eq!(got, Err(want), "{name}");
    }
}

#[test]
fn token_supplied_values_are_escaped_and_bounded_in_messages() {
    let r = Reject::UnknownIssuer(format!("evil\"\n\u{1b}[31m{}", "x".repeat(100)));
    let text = r.to_string();
    assert!(text.starts_with("issuer \"evil???[31mxxx"), "{text}");
    assert!(text.ends_with("…\" is not trusted"), "{text}");
    assert!(!text.contains('\n') && !text.contains('\u{1b}'));
    assert_eq!(
        Reject::UnknownKid {
            issuer: IssuerId::new(0),
            kid: "k1".into()
        }
        .to_string(),
        "no key with kid \"k1\""
    );
}

#[test]
fn leeway_is_honoured_at_the_edges() {
    for (extra, ok) in [
        (json!({"exp": NOW - 30}), true),
        (json!({"exp": NOW - 31}), false),
        (json!({"nbf": NOW + 30}), true),
        (json!({"nbf": NOW + 31}), false),
        (json!({"exp": (NOW + 10) as f64 + 0.5}), true),
    ] {
        assert_eq!(check(&rs(extra.clone())).is_ok(), ok, "{extra}");
    }
}

#[test]
fn optional_checks_typ_and_max_age() {
    let snap = snapshot();
    let v = verifier_with("require_typ: at+jwt");
    assert!(v.verify(&rs(json!({})), &snap, NOW).is_ok(), "typ at+jwt");
    let plain = sign_with_header(
        &json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
        &claims(json!({})),
        |m| fixture().rsa.sign_raw(m),
    );
    assert_eq!(
        v.verify(&plain, &snap, NOW).map(|_| ()),
        Err(Reject::WrongType {
            found: "JWT".into(),
            want: "at+jwt".into()
        })
    );
    let v = verifier_with("max_token_age: 1h");
    assert!(v
        .verify(&rs(json!({"iat": NOW - 3600})), &snap, NOW)
        .is_ok());
    assert_eq!(
        v.verify(&rs(json!({"iat": NOW - 7200})), &snap, NOW)
            .map(|_| ()),
        Err(Reject::TooOld {
            iat: NOW - 7200,
            max_age: 3600
        })
    );
    assert_eq!(
        v.verify(&rs(json!({"iat": null})), &snap, NOW).map(|_| ()),
        Err(Reject::TooOld {
            iat: 0,
            max_age: 3600
        })
    );
    // A verification made while young stops holding when the token gets too old, even
    // though exp is far away: cache hits are checked against valid_until.
    let young = v
        .verify(
            &rs(json!({"iat": NOW - 60, "exp": NOW + 86_400})),
            &snap,
            NOW,
        )
        .unwrap();
    assert_eq!(young.valid_until, NOW - 60 + 3600 + 30);
    assert!(young.is_current(NOW + 3000));
    assert!(!young.is_current(NOW + 3600));
}

#[test]
fn keys_must_be_loaded_and_fresh() {
    let v = verifier_with("");
    let token = rs(json!({}));
    let mut snap = snapshot();
    snap.issuers[0] = Arc::new(KeySet::default());
    assert_eq!(
        v.verify(&token, &snap, NOW).map(|_| ()),
        Err(Reject::KeysUnavailable {
            issuer: IssuerId::new(0)
        })
    );
    let snap = snapshot();
    assert_eq!(
        v.verify(&token, &snap, NOW + 3601).map(|_| ()),
        Err(Reject::KeysUnavailable {
            issuer: IssuerId::new(0)
        }),
        "keys past their stale bound are unusable, whatever the token says"
    );
}

#[test]
fn token_without_kid_needs_exactly_one_fitting_key() {
    let token = sign_with_header(&json!({"alg": "ES256"}), &claims(json!({})), |m| {
        fixture().ec.sign_raw(m)
    });
    assert!(check(&token).is_ok(), "one EC key published: unambiguous");
    let second_ec = SigningKey::generate(KeyKind::Es256, "ec-2");
    let jwks = json!({ "keys": [fixture().ec.jwk(), second_ec.jwk()] }).to_string();
    let keys = KeySet::parse(jwks.as_bytes(), &[Algorithm::ES256], &KeySet::default())
        .unwrap()
        .keys;
    let mut snap = snapshot();
    snap.issuers[0] = Arc::new(KeySet {
        keys,
        usable_until: NOW + 3600,
    });
    assert_eq!(
        verifier_with("").verify(&token, &snap, NOW).map(|_| ()),
        Err(Reject::MissingKid)
    );
}

#[test]
fn verified_token_carries_scopes_identity_and_rule_claims() {
    let v = check(&rs(
        json!({"roles": ["admin", "ops"], "level": 3, "tenant": "acme", "scope": "a b  c"}),
    ))
    .unwrap();
    assert_eq!(v.scopes().collect::<Vec<_>>(), ["a", "b", "c"]);
    let identity: Vec<(String, String)> = v
        .identity
        .iter()
        .map(|(n, val)| (n.to_string(), val.to_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        identity,
        [
            ("x-sub".into(), "alice".into()),
            ("x-roles".into(), "admin,ops".into()),
            ("x-level".into(), "3".into())
        ]
    );
    assert_eq!(v.claim("tenant"), Some(&json!("acme")));
    assert_eq!(v.claim("sub"), None, "only rule claims are kept");
    assert_eq!(v.claim("/kubernetes.io/serviceaccount/name"), None);
    assert!(v.is_current(NOW));
    assert!(!v.is_current(NOW + 331));
}

#[test]
fn json_pointer_claims_read_nested_values() {
    // A Kubernetes service-account token's claims.
    let v = check(&rs(json!({
        "kubernetes.io": {
            "namespace": "orders",
            "serviceaccount": { "name": "checkout", "uid": "0c6f" },
            "pod": { "name": "checkout-7d9f", "uid": "91be" }
        }
    })))
    .unwrap();
    assert_eq!(
        v.claim("/kubernetes.io/serviceaccount/name"),
        Some(&json!("checkout"))
    );
    let namespace = v.identity.iter().find(|(n, _)| n == "x-namespace");
    assert_eq!(
        namespace.map(|(_, val)| val.to_str().unwrap()),
        Some("orders")
    );

    // A pointer into a claim that is not an object finds nothing (no header,
    // no value to compare), and the token is still valid.
    let v = check(&rs(json!({ "kubernetes.io": "orders" }))).unwrap();
    assert_eq!(v.claim("/kubernetes.io/serviceaccount/name"), None);
    assert!(v.identity.iter().all(|(n, _)| n != "x-namespace"));
}

/// An RS256 token over `payload` exactly as written (duplicate names, escapes).
fn rs_raw(payload: &str) -> String {
    let key = &fixture().rsa;
    let header = json!({ "alg": "RS256", "kid": key.kid, "typ": "at+jwt" });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = URL_SAFE_NO_PAD.encode(key.sign_raw(input.as_bytes()));
    format!("{input}.{sig}")
}

#[test]
fn claims_are_read_as_written_duplicates_escapes_and_mixed_lists() {
    const DUPLICATE: Reject = Reject::Malformed("a claim is named twice");
    let times = format!("\"iat\": {}, \"exp\": {}", NOW - 10, NOW + 300);
    let cases = [
        // A name given twice is refused, whichever value would pass: an app
        // reading the token could take the other (RFC 7519 §4 allows either).
        (format!("{{\"iss\": \"{ISS}\", \"aud\": \"other\", \"aud\": \"api\", {times}}}"), Err(DUPLICATE)),
        (format!("{{\"iss\": \"{ISS}\", \"aud\": \"api\", \"aud\": \"other\", {times}}}"), Err(DUPLICATE)),
        (format!("{{\"iss\": \"{ISS}\", \"aud\": \"api\", \"sub\": \"a\", \"s\\u0075b\": \"b\", {times}}}"), Err(DUPLICATE)),
        (format!("{{\"iss\": \"{ISS}\", \"aud\": \"api\", {times}, \"x\": {{\"y\": 1, \"y\": 2}}}}"), Ok("")),
        // Escaped names and values are unescaped before comparing.
        (format!("{{\"\\u0069ss\": \"{}\", \"aud\": \"\\u0061pi\", \"sub\": \"al\\u0069ce\", {times}}}", ISS.replace('/', "\\/")), Ok("alice")),
        // Members of an audience list that are not strings match nothing.
        (format!("{{\"iss\": \"{ISS}\", \"aud\": [1, null, \"api\"], {times}}}"), Ok("")),
        (format!("{{\"iss\": \"{ISS}\", \"aud\": [1, {{\"api\": 1}}], {times}}}"), Err(Reject::WrongAudience)),
        (format!("{{\"iss\": 7, \"aud\": \"api\", {times}}}"), Err(Reject::BadClaim("iss".into(), "string"))),
        // Fractional NumericDates are truncated.
        (format!("{{\"iss\": \"{ISS}\", \"aud\": \"api\", \"exp\": {}.75}}", NOW + 300), Ok("")),
        (format!("{{\"iss\": \"{ISS}\", \"aud\": \"api\", \"exp\": null}}"), Err(Reject::BadClaim("exp".into(), "NumericDate"))),
    ];
    for (payload, want) in cases {
        let got = check(&rs_raw(&payload)).map(|v| {
            v.identity
                .first()
                .map_or(String::new(), |(_, sub)| sub.to_str().unwrap().to_string())
        });
        assert_eq!(got, want.map(String::from), "{payload}");
    }
}

#[test]
fn array_scope_claims() {
    let v = verifier_with("scope_claim: scp");
    let token = rs(json!({"scp": ["orders:read", "x"], "scope": null}));
    let verified = v.verify(&token, &snapshot(), NOW).unwrap();
    assert!(
        verified.has_scope("orders:read")
            && verified.has_scope("x")
            && !verified.has_scope("orders")
    );
}

#[test]
fn a_retired_key_invalidates_what_it_verified() {
    let snap = snapshot();
    let v = verifier_with("")
        .verify(&rs(json!({})), &snap, NOW)
        .unwrap();
    assert!(v.is_current(NOW));
    snap.issuers[0].by_kid("rsa-1").unwrap().retire();
    assert!(!v.is_current(NOW));
}

#[test]
fn jwks_parsing_skips_what_it_cannot_use() {
    let f = fixture();
    let jwks = json!({ "keys": [
        f.rsa.jwk(),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
        {"kty": "RSA", "use": "enc", "kid": "enc", "n": f.rsa.jwk()["n"], "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "bad-ec", "x": "AAAA", "y": "AAAA"},
        {"kty": "weird", "kid": "w"},
        f.ed.jwk(),
    ]})
    .to_string();
    // Only RS256 is allowed: the Ed25519 key is skipped too.
    let parsed = KeySet::parse(jwks.as_bytes(), &[Algorithm::RS256], &KeySet::default()).unwrap();
    let kids: Vec<_> = parsed
        .keys
        .iter()
        .map(|k| k.kid.as_deref().unwrap())
        .collect();
    assert_eq!(kids, ["rsa-1"]);
    assert_eq!(parsed.skipped.len(), 5, "{:?}", parsed.skipped);
    assert!(KeySet::parse(b"not json", &[Algorithm::RS256], &KeySet::default()).is_err());
}

#[test]
fn unchanged_keys_survive_a_refresh_and_removed_ones_are_reported() {
    let f = fixture();
    let algs = [Algorithm::RS256, Algorithm::ES256];
    let first = KeySet {
        keys: KeySet::parse(
            json!({"keys": [f.rsa.jwk(), f.ec.jwk()]})
                .to_string()
                .as_bytes(),
            &algs,
            &KeySet::default(),
        )
        .unwrap()
        .keys,
        usable_until: 1,
    };
    let second = KeySet {
        keys: KeySet::parse(
            json!({"keys": [f.rsa.jwk()]}).to_string().as_bytes(),
            &algs,
            &first,
        )
        .unwrap()
        .keys,
        usable_until: 1,
    };
    assert!(
        Arc::ptr_eq(&first.keys[0], &second.keys[0]),
        "same key keeps its Arc"
    );
    let removed: Vec<_> = first
        .removed_in(&second)
        .map(|k| k.kid.as_deref().unwrap())
        .collect();
    assert_eq!(removed, ["ec-1"]);
}

#[test]
fn every_supported_algorithm_verifies_and_is_bound_to_its_key_type() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    let rng = SystemRandom::new();
    let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let rsa_jwk = json!({
        "kty": "RSA", "kid": "rsa",
        "n": URL_SAFE_NO_PAD.encode(rsa.public_key().modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(rsa.public_key().exponent().big_endian_without_leading_zero()),
    });
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let point = p384.public_key().as_ref().to_vec();
    let p384_jwk = json!({
        "kty": "EC", "kid": "p384", "crv": "P-384",
        "x": URL_SAFE_NO_PAD.encode(&point[1..49]), "y": URL_SAFE_NO_PAD.encode(&point[49..97]),
    });
    let algs = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES384,
    ];
    let jwks = json!({ "keys": [rsa_jwk, p384_jwk] }).to_string();
    let keys = KeySet::parse(jwks.as_bytes(), &algs, &KeySet::default())
        .unwrap()
        .keys;
    let snap = KeySnapshot {
        issuers: vec![Arc::new(KeySet {
            keys,
            usable_until: NOW + 60,
        })],
    };
    let list = "[RS256, RS384, RS512, PS256, PS384, PS512, ES384]";
    let verifier = verifier_for(&format!(
        "issuer: \"{ISS}\", jwks_uri: \"{ISS}/j\", audiences: [api], algorithms: {list}"
    ));
    let (rsa, rng) = (&rsa, &rng);
    let rsa_sign = |params: &'static dyn aws_lc_rs::signature::RsaEncoding| {
        move |m: &[u8]| {
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(params, rng, m, &mut sig).unwrap();
            sig
        }
    };
    use aws_lc_rs::signature as s;
    type Signer<'a> = Box<dyn Fn(&[u8]) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, &str, Signer)> = vec![
        ("RS256", "rsa", Box::new(rsa_sign(&s::RSA_PKCS1_SHA256))),
        ("RS384", "rsa", Box::new(rsa_sign(&s::RSA_PKCS1_SHA384))),
        ("RS512", "rsa", Box::new(rsa_sign(&s::RSA_PKCS1_SHA512))),
        ("PS256", "rsa", Box::new(rsa_sign(&s::RSA_PSS_SHA256))),
        ("PS384", "rsa", Box::new(rsa_sign(&s::RSA_PSS_SHA384))),
        ("PS512", "rsa", Box::new(rsa_sign(&s::RSA_PSS_SHA512))),
        (
            "ES384",
            "p384",
            Box::new(|m: &[u8]| {
                p384.sign(&SystemRandom::new(), m)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }),
        ),
    ];
    for (alg, kid, sign) in &cases {
        let token = sign_with_header(&json!({"alg": alg, "kid": kid}), &claims(json!({})), |m| {
            sign(m)
        });
        assert!(verifier.verify(&token, &snap, NOW).is_ok(), "{alg}");
        // The same signature under a different alg of the same family fails, never panics.
        let swapped = if alg.starts_with("RS") {
            alg.replace("RS", "PS")
        } else {
            alg.replace("PS", "RS")
        };
        if swapped != *alg {
            let forged = sign_with_header(
                &json!({"alg": swapped, "kid": kid}),
                &claims(json!({})),
                |m| sign(m),
            );
            assert_eq!(
                verifier.verify(&forged, &snap, NOW).map(|_| ()),
                Err(Reject::BadSignature),
                "{alg} as {swapped}"
            );
        }
    }
    // ES384 header naming the RSA key, and RS256 naming the P-384 key: type mismatch.
    let t = sign_with_header(
        &json!({"alg": "ES384", "kid": "rsa"}),
        &claims(json!({})),
        |m| cases[6].2(m),
    );
    assert_eq!(
        verifier.verify(&t, &snap, NOW).map(|_| ()),
        Err(Reject::KeyAlgMismatch("rsa".into()))
    );
    let t = sign_with_header(
        &json!({"alg": "RS256", "kid": "p384"}),
        &claims(json!({})),
        |m| cases[0].2(m),
    );
    assert_eq!(
        verifier.verify(&t, &snap, NOW).map(|_| ()),
        Err(Reject::KeyAlgMismatch("p384".into()))
    );
}

#[test]
fn hmac_variants_verify_with_the_shared_secret() {
    let verifier = verifier_for(&format!(
        "issuer: hs, audiences: [api], algorithms: [HS256, HS384, HS512], shared_secret: \"{SECRET}\""
    ));
    let snap = KeySnapshot {
        issuers: vec![Arc::new(KeySet::never_stale(vec![]))],
    };
    for (alg, h) in [
        ("HS256", hmac::HMAC_SHA256),
        ("HS384", hmac::HMAC_SHA384),
        ("HS512", hmac::HMAC_SHA512),
    ] {
        let sign = |secret: &[u8]| {
            sign_with_header(&json!({"alg": alg}), &claims(json!({"iss": "hs"})), |m| {
                hmac::sign(&hmac::Key::new(h, secret), m).as_ref().to_vec()
            })
        };
        assert!(
            verifier
                .verify(&sign(SECRET.as_bytes()), &snap, NOW)
                .is_ok(),
            "{alg}"
        );
        assert_eq!(
            verifier
                .verify(&sign(b"wrong-secret-wrong-secret-wrong-secret"), &snap, NOW)
                .map(|_| ()),
            Err(Reject::BadSignature),
            "{alg}"
        );
    }
}

/// An introspection answer judged as issuer 0's at NOW, with NOW + 60 for no `exp`.
fn introspected(answer: serde_json::Value) -> Result<Result<VerifiedToken, Reject>, &'static str> {
    verifier_with("").verify_introspected(
        IssuerId::new(0),
        answer.to_string().as_bytes(),
        NOW,
        NOW + 60,
        &mut (),
    )
}

#[test]
fn introspection_answers_get_the_checks_a_jwt_gets_where_they_carry_them() {
    let active = |extra: serde_json::Value| {
        let mut answer = json!({ "active": true, "scope": "orders:read orders:write" });
        for (k, v) in extra.as_object().unwrap() {
            answer[k] = v.clone();
        }
        answer
    };
    let ok: Vec<serde_json::Value> = vec![
        active(json!({})),
        active(
            json!({ "iss": ISS, "aud": "api", "exp": NOW + 10, "nbf": NOW - 10, "iat": NOW - 10 }),
        ),
        active(json!({ "aud": ["nope", "other-api"] })),
        // Within the leeway.
        active(json!({ "exp": NOW - 20, "nbf": NOW + 20 })),
        // An access token, as endpoints spell it.
        active(json!({ "token_type": "Bearer" })),
        active(json!({ "token_type": "bearer", "token_use": "access_token" })),
    ];
    for answer in ok {
        let token = introspected(answer.clone())
            .unwrap()
            .unwrap_or_else(|r| panic!("{answer}: {r}"));
        assert!(token.has_scope("orders:write"), "{answer}");
        assert!(token.key.is_none());
    }
    let refused: Vec<(serde_json::Value, Reject)> = vec![
        (json!({ "active": false }), Reject::Inactive),
        (
            json!({ "active": false, "iss": "https://evil" }),
            Reject::Inactive,
        ),
        (
            active(json!({ "iss": "https://evil" })),
            Reject::UnknownIssuer("https://evil".into()),
        ),
        (
            active(json!({ "iss": 7 })),
            Reject::BadClaim("iss".into(), "string"),
        ),
        (active(json!({ "aud": "nope" })), Reject::WrongAudience),
        (active(json!({ "aud": [] })), Reject::WrongAudience),
        (
            active(json!({ "exp": NOW - 31 })),
            Reject::Expired {
                exp: NOW - 31,
                now: NOW,
            },
        ),
        (
            active(json!({ "nbf": NOW + 31 })),
            Reject::NotYetValid {
                nbf: NOW + 31,
                now: NOW,
            },
        ),
        (
            active(json!({ "exp": "soon" })),
            Reject::BadClaim("exp".into(), "NumericDate"),
        ),
        // Another kind of token (Hydra says token_use, others token_type).
        (
            active(json!({ "token_use": "refresh_token" })),
            Reject::NotAccessToken("refresh_token".into()),
        ),
        (
            active(json!({ "token_type": "refresh_token" })),
            Reject::NotAccessToken("refresh_token".into()),
        ),
        (
            active(json!({ "token_type": 1 })),
            Reject::BadClaim("token_type".into(), "string"),
        ),
        // Bound, but to nothing the binding phase can check.
        (
            active(json!({ "token_type": "DPoP" })),
            Reject::UnknownBinding,
        ),
        (
            active(json!({ "token_type": "DPoP", "cnf": { "x5t#S256": "c" } })),
            Reject::UnknownBinding,
        ),
        (
            active(json!({ "cnf": { "jwk": { "kty": "EC" } } })),
            Reject::UnknownBinding,
        ),
    ];
    // A bound answer carries its binding, for the binding phase to check
    // against each request.
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    for answer in [
        active(json!({ "token_type": "DPoP", "cnf": { "jkt": jkt } })),
        active(json!({ "cnf": { "jkt": jkt } })),
    ] {
        let token = introspected(answer.clone()).unwrap().unwrap();
        assert_eq!(token.confirmation.jkt.as_deref(), Some(jkt), "{answer}");
    }
    for (answer, want) in refused {
        match introspected(answer.clone()) {
            Ok(Err(got)) => assert_eq!(got, want, "{answer}"),
            other => panic!("{answer}: {:?}", other.map(|r| r.map(|_| ()))),
        }
    }
    let not_answers: Vec<(&[u8], &str)> = vec![
        (b"<html>", "the answer is not a JSON object"),
        (b"[true]", "the answer is not a JSON object"),
        (b"{}", "the answer has no boolean \"active\""),
        (
            br#"{"active":"true"}"#,
            "the answer has no boolean \"active\"",
        ),
        (br#"{"active":1}"#, "the answer has no boolean \"active\""),
        (
            br#"{"active":true,"active":false}"#,
            "the answer is not a JSON object",
        ),
    ];
    let v = verifier_with("");
    for (body, want) in not_answers {
        let got = v.verify_introspected(IssuerId::new(0), body, NOW, NOW + 60, &mut ());
        assert_eq!(got.err(), Some(want), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn an_introspected_token_holds_until_its_exp_or_no_exp_and_carries_its_claims() {
    let token = introspected(json!({
        "active": true, "exp": NOW + 100, "sub": "svc-a", "tenant": "acme",
        "kubernetes.io": { "namespace": "orders" },
    }))
    .unwrap()
    .unwrap();
    assert_eq!((token.exp, token.valid_until), (NOW + 100, NOW + 130));
    assert_eq!(token.claim("tenant"), Some(&json!("acme")));
    let headers: Vec<(String, String)> = token
        .identity
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    assert!(
        headers.contains(&("x-sub".into(), "svc-a".into())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x-namespace".into(), "orders".into())),
        "{headers:?}"
    );
    let token = introspected(json!({ "active": true })).unwrap().unwrap();
    assert_eq!(token.exp, NOW + 60, "no exp: until the cache's max_ttl");
    assert!(
        is_jwt(b"a.b.c") && !is_jwt(b"opaque") && !is_jwt(b"ory_at_x.y") && !is_jwt(b"a.b.c.d")
    );
    // Dots far apart, and a third one deep in a long token.
    let long = |dots: &[usize]| {
        let mut t = vec![b'x'; 700];
        dots.iter().for_each(|&at| t[at] = b'.');
        is_jwt(&t)
    };
    assert!(long(&[40, 300]) && !long(&[40]) && !long(&[40, 300, 699]) && !long(&[0, 1, 2]));
}

#[test]
fn which_endpoint_judges_a_token() {
    use base64::Engine;
    let jwt_of = |iss: &str| {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.c2ln",
            b64(json!({ "alg": "RS256" })),
            b64(json!({ "iss": iss }))
        )
    };
    let (iss0, hs) = (IssuerId::new(0), IssuerId::new(1));
    let (only_iss0, only_hs) = ([iss0], [hs]);
    let tokens_all =
        "introspection: { endpoint: \"https://i/x\", client_id: rs, client_secret: s, tokens: all }";
    let all = verifier_with(tokens_all);
    let opaque_only = verifier_with(
        "introspection: { endpoint: \"https://i/x\", client_id: rs, client_secret: s }",
    );
    let mine = jwt_of(ISS);
    let theirs = jwt_of("hs-peer");
    // (verifier, token, the rule's opaque-token issuer, the rule's issuers, the answer)
    type Case<'a> = (
        &'a Verifier,
        &'a [u8],
        Option<IssuerId>,
        Option<&'a [IssuerId]>,
        Option<IssuerId>,
    );
    let cases: Vec<Case> = vec![
        // Opaque: the rule's introspecting issuer, whatever `tokens` says.
        (&opaque_only, b"opaque", Some(iss0), None, Some(iss0)),
        (&opaque_only, b"opaque", None, None, None),
        (&all, b"opaque", Some(iss0), None, Some(iss0)),
        // A JWT: only with `tokens: all`, only its own issuer's, only where the rule takes it.
        (&opaque_only, mine.as_bytes(), Some(iss0), None, None),
        (&all, mine.as_bytes(), None, None, Some(iss0)),
        (&all, mine.as_bytes(), None, Some(&only_iss0), Some(iss0)),
        (&all, mine.as_bytes(), None, Some(&only_hs), None),
        (&all, theirs.as_bytes(), Some(iss0), None, None),
        (&all, b"not.base64!.x", None, None, None),
    ];
    for (i, (verifier, token, opaque, accepted, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            verifier.introspector(token, opaque, accepted),
            want,
            "case {i}"
        );
    }
}

#[test]
fn a_regex_pattern_takes_each_tenant_it_matches_whole_and_nothing_else() {
    let v = verifier_for(
        r#"match: { issuer: "https://login/{tenant}/v2.0", regex: "[a-z]{3}[0-9]" }, jwks_uri: "https://login/common/keys", audiences: [api], algorithms: [RS256]"#,
    );
    let keys = KeySnapshot {
        issuers: vec![snapshot().issuers[0].clone()],
    };
    let cases = [
        ("https://login/abc1/v2.0", true),
        ("https://login/xyz9/v2.0", true),
        ("https://login/abc12/v2.0", false),
        ("https://login/ABC1/v2.0", false),
        ("https://login/abc1/v2.0/", false),
        ("https://login/abc1/x/v2.0", false),
        // The pattern itself names no tenant.
        ("https://login/{tenant}/v2.0", false),
    ];
    for (iss, accepted) in cases {
        let token = rs(json!({ "iss": iss }));
        match v.verify(&token, &keys, NOW) {
            Ok(t) => {
                assert!(accepted, "{iss} accepted");
                assert_eq!(t.issuer, IssuerId::new(0));
            }
            Err(Reject::UnknownIssuer(named)) => {
                assert!(!accepted, "{iss} refused");
                assert_eq!(named, iss);
            }
            Err(other) => panic!("{iss}: {other}"),
        }
    }
}
