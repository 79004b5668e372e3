//! The fuzz targets' bodies: `cargo +nightly fuzz run <target>` drives them
//! (fuzz_targets/*.rs), and under stable `cargo test` tests/fuzz_corpus.rs
//! includes this file and replays every committed corpus file through them.
//! No input may panic; `token` also asserts that the verifier accepts nothing
//! its key snapshot did not sign.

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use hyper::Method;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use tokengate::config::{ClaimName, Config};
use tokengate::guard::keys::{KeySet, KeySnapshot};
use tokengate::guard::verify::Verifier;

/// The public keys the fixture tokens are signed with (`kid` bench-rs256,
/// bench-es256), as `load-fixtures` wrote them.
const JWKS: &str = include_str!("../fixtures/jwks.json");
/// The time the corpus tokens are valid at (their `iat` + 8 s).
pub const NOW: u64 = 1_796_003_000;
const CONFIG: &str = r#"
inbound:
  listen: 127.0.0.1:0
  upstream: http://127.0.0.1:1
  issuers:
    - issuer: https://issuer.bench.local
      jwks_uri: http://127.0.0.1:1/jwks.json
      audiences: [bench-api]
      algorithms: [RS256, ES256]
  rules:
    - { path: /, scopes: [bench:read], claims: { /nested/name: x } }
  forward:
    claims_to_headers: { sub: x-sub, /nested/name: x-nested }
"#;

struct Fixture {
    verifier: Verifier,
    keys: KeySnapshot,
    /// kid → the key and algorithm an independent implementation checks with.
    public: Vec<(String, DecodingKey, Algorithm)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = Config::from_yaml(CONFIG, "fuzz", &|_| None).expect("fuzz config");
        let inbound = config.inbound.expect("inbound").guard;
        let algorithms = &inbound.issuers[0].algorithms;
        let parsed =
            KeySet::parse(JWKS.as_bytes(), algorithms, &KeySet::default()).expect("fixture JWKS");
        let keys = KeySnapshot {
            issuers: vec![Arc::new(KeySet::never_stale(parsed.keys))],
        };
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(JWKS).expect("JWKS");
        let public = set
            .keys
            .iter()
            .map(|jwk| {
                let alg = match jwk.common.key_algorithm.map(|a| a.to_string()) {
                    Some(a) => Algorithm::from_str(&a).expect("alg"),
                    None => Algorithm::RS256,
                };
                let kid = jwk.common.key_id.clone().unwrap_or_default();
                (kid, DecodingKey::from_jwk(jwk).expect("key"), alg)
            })
            .collect();
        Fixture {
            verifier: tokengate::guard::verifier(&inbound),
            keys,
            public,
        }
    })
}

/// Whether the verifier accepts `data` as an `Authorization` value (the
/// oracle's own test checks the fixture tokens are accepted).
pub fn accepts(data: &[u8]) -> bool {
    let f = fixture();
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return false;
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    match tokengate::guard::bearer::bearer_token(&headers) {
        Ok(Some(raw)) => tokengate::guard::bearer::token_text(raw)
            .is_ok_and(|text| f.verifier.verify(text, &f.keys, NOW).is_ok()),
        _ => false,
    }
}

/// An `Authorization` value, through bearer extraction, parsing and
/// verification against the fixed snapshot. Whatever is accepted must carry a
/// signature the snapshot's key for its `kid` verifies, by jsonwebtoken's
/// implementation.
pub fn token(data: &[u8]) {
    let f = fixture();
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    let Ok(Some(raw)) = tokengate::guard::bearer::bearer_token(&headers) else {
        return;
    };
    let Ok(text) = tokengate::guard::bearer::token_text(raw) else {
        return;
    };
    let Ok(verified) = f.verifier.verify(text, &f.keys, NOW) else {
        return;
    };
    let (message, signature) = text.rsplit_once('.').expect("an accepted token has parts");
    let header = jsonwebtoken::decode_header(text).expect("an accepted token has a header");
    let kid = header.kid.unwrap_or_default();
    let signed = f.public.iter().any(|(k, key, alg)| {
        *k == kid
            && *alg == header.alg
            && jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, *alg)
                .unwrap_or(false)
    });
    assert!(signed, "accepted a token its keys did not sign: {text}");
    assert!(verified.exp >= NOW, "accepted an expired token: {text}");
}

/// A JWT payload: claim parsing, every check's reading of it, JSON pointers.
pub fn claims(data: &[u8]) {
    let Ok(claims) = tokengate::guard::claims::Claims::parse(data) else {
        return;
    };
    let _ = claims.numeric_date("exp");
    let _ = claims.numeric_date("nbf");
    let _ = claims.scopes("scope");
    let _ = claims.scopes("scp");
    let _ = claims.get("aud");
    for name in ["sub", "/kubernetes.io/namespace", "/a/0/b", "/~1x/~0y"] {
        let name = ClaimName::parse(name).expect("claim name");
        if let Some(value) = claims.resolve(&name) {
            let _ = tokengate::guard::claims::header_value(&value);
            let _ = value.parse();
        }
    }
}

/// The config loader: any text is a config or a list of field errors.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_yaml(text, "fuzz", &|_| Some("value".into())) {
        assert!(!e.errors.is_empty(), "a refused config names an error");
    }
}

/// A JWKS document, parsed for every algorithm.
pub fn jwks(data: &[u8]) {
    let all = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    let _ = KeySet::parse(data, &all, &KeySet::default());
}

/// A token endpoint's answer (any status), and the lifetime read from a JWT.
pub fn token_answer(data: &[u8]) {
    for status in [200, 400, 401, 503] {
        let _ = tokengate::outbound::source::parse_token_answer(status, data, NOW);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tokengate::outbound::source::jwt_lifetime(text, NOW);
    }
}

/// A request path and Host as a caller spells them: the canonical-path check,
/// the Host's canonical form, and prefix matching.
pub fn path_and_host(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, host) = text.split_once('\n').unwrap_or((text, ""));
    let _ = tokengate::guard::policy::canonical_path(path);
    for prefix in ["/", "/admin", "/Admin/x", "/orders"] {
        let _ = tokengate::guard::policy::path_has_prefix(path, prefix);
    }
    if let Ok(host) = HeaderValue::from_str(host) {
        let _ = tokengate::headers::canonical_host(host.as_bytes(), Some(&host));
        let _ = tokengate::headers::canonical_host(host.as_bytes(), None);
    }
}

/// The route rules the `rules` target matches against: nested and
/// overlapping prefixes, an upper-case prefix, a method list, a host, an
/// anonymous rule and one naming a suffixed file.
const RULES: &str = r#"
inbound:
  listen: 127.0.0.1:0
  upstream: http://127.0.0.1:1
  issuers:
    - issuer: https://issuer.bench.local
      jwks_uri: http://127.0.0.1:1/jwks.json
      audiences: [bench-api]
  rules:
    - { path: /healthz, allow: anonymous }
    - { path: /openapi.json, allow: anonymous }
    - { path: /admin, scopes: [admin] }
    - { path: /Reports/Q1, scopes: [finance] }
    - { path: /orders, methods: [GET, HEAD], scopes: [orders:read] }
    - { path: /orders, methods: [POST, DELETE], scopes: [orders:write] }
    - { path: /, host: internal.example, scopes: [internal] }
    - { path: /api/v1/items, scopes: [items] }
    - { path: /, scopes: [read] }
"#;

struct RuleSets {
    rules: Vec<tokengate::config::RouteRule>,
    /// The same rules with every prefix in lower case, index for index: the
    /// rule an app folding case would pick, found without tokengate's folding.
    lowered: Vec<tokengate::config::RouteRule>,
}

fn rule_sets() -> &'static RuleSets {
    static SETS: OnceLock<RuleSets> = OnceLock::new();
    SETS.get_or_init(|| {
        let rules = |yaml: &str| {
            let config = Config::from_yaml(yaml, "fuzz", &|_| None).expect("rules config");
            config.inbound.expect("inbound").guard.rules
        };
        let lowered = RULES.replace("/Reports/Q1", "/reports/q1");
        RuleSets {
            rules: rules(RULES),
            lowered: rules(&lowered),
        }
    })
}

/// The first rule of `rules` matching, by `RouteRule::matches` alone.
fn first_match(
    rules: &[tokengate::config::RouteRule],
    method: &Method,
    host: &[u8],
    path: &str,
) -> Option<usize> {
    rules.iter().position(|r| r.matches(method, host, path))
}

/// `path` percent-decoded, written here rather than borrowed from tokengate,
/// so the oracle does not share the code it checks. `None` when the result is
/// not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A request (`METHOD\nhost\npath`) through the rule matcher. Whatever rule
/// it picks must be the first whose method, host and prefix match; and a
/// canonical path it accepts must fall under rules asking the same however an
/// app reads it: percent-decoded, with its case folded, or (for HEAD) as GET.
pub fn rules(data: &[u8]) {
    use tokengate::guard::policy::{canonical_path, find_rule};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (Some(method), Some(host), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (host, sets) = (host.as_bytes(), rule_sets());
    let found = match find_rule(&sets.rules, &method, host, path) {
        Ok(found) => found.map(|(i, _)| i),
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
    };
    assert_eq!(found, first_match(&sets.rules, &method, host, path));
    if canonical_path(path).is_err() {
        return; // refused before any rule is looked at
    }
    let access = |i: Option<usize>| i.map(|i| &sets.rules[i].access);
    let mut readings = vec![(
        "case-folded",
        first_match(&sets.lowered, &method, host, &path.to_ascii_lowercase()),
    )];
    if let Some(decoded) = percent_decode(path) {
        readings.push((
            "percent-decoded",
            first_match(&sets.rules, &method, host, &decoded),
        ));
    }
    if method == Method::HEAD {
        readings.push((
            "HEAD as GET",
            first_match(&sets.rules, &Method::GET, host, path),
        ));
    }
    for (reading, other) in readings {
        assert_eq!(
            access(found),
            access(other),
            "{method} {path} (host {host:?}) is accepted, but read {reading} it falls under another rule"
        );
    }
}

/// The request every `dpop_proof` input is a proof for (the corpus proofs
/// were made for it, valid at [`NOW`]).
const PROOF_FOR: tokengate::guard::dpop::Expected<'static> = tokengate::guard::dpop::Expected {
    method: "GET",
    scheme: "https",
    authority: "api.fuzz",
    path: "/orders/7",
    token: b"fuzz.access.token",
};

/// Whether the proof check accepts `data` (the corpus test checks the valid
/// seeds are, so the oracle below is not vacuous).
pub fn dpop_proof_accepts(data: &[u8]) -> bool {
    let window = tokengate::guard::dpop::Window {
        max_age: 60,
        leeway: 5,
    };
    tokengate::guard::dpop::check(data, &PROOF_FOR, window, NOW).is_ok()
}

/// A `DPoP` header's proof through the whole proof check. Whatever is
/// accepted must be signed, by jsonwebtoken's own implementation, with the
/// `jwk` its header carries, and be bound by jsonwebtoken's RFC 7638
/// thumbprint of that key.
pub fn dpop_proof(data: &[u8]) {
    use tokengate::guard::dpop::{check, Window};
    let window = Window {
        max_age: 60,
        leeway: 5,
    };
    let Ok(proven) = check(data, &PROOF_FOR, window, NOW) else {
        return;
    };
    let text = std::str::from_utf8(data).expect("an accepted proof is text");
    let header = jsonwebtoken::decode_header(text).expect("an accepted proof has a header");
    let jwk = header.jwk.expect("an accepted proof has a jwk");
    let (message, signature) = text.rsplit_once('.').expect("an accepted proof has parts");
    let key = DecodingKey::from_jwk(&jwk).expect("an accepted proof's jwk is a key");
    let signed = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, header.alg)
        .expect("jsonwebtoken can check it");
    assert!(signed, "accepted a proof jsonwebtoken finds unsigned");
    assert_eq!(
        proven.jkt,
        jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256),
        "a thumbprint jsonwebtoken computes otherwise"
    );
}
