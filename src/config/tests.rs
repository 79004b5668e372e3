//! Config validation tables: what loads, and every error with its field path.

use super::outbound::RawTokenSource;
use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t".into()),
        "PORT" => Some("8081".into()),
        _ => None,
    }
}

fn load(yaml: &str) -> Result<Config, Vec<(String, String)>> {
    Config::from_yaml(yaml, "test.yaml", &env)
        .map_err(|e| e.errors.into_iter().map(|f| (f.path, f.message)).collect())
}

const MINIMAL: &str = r#"
inbound:
  listen: 127.0.0.1:8443
  upstream: http://127.0.0.1:${PORT}
  issuers:
    - issuer: https://idp
      jwks_uri: https://idp/jwks
      audiences: [api]
  rules:
    - { path: /health, allow: anonymous }
    - { path: /orders, methods: [get], scopes: [orders:read] }
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9901");
    let i = c.inbound.unwrap();
    assert_eq!(i.upstream, "http://127.0.0.1:8081/");
    assert_eq!(i.guard.mode, Mode::Strict);
    assert_eq!(i.guard.issuers[0].algorithms, [Algorithm::RS256]);
    assert_eq!(i.guard.issuers[0].leeway, Duration::from_secs(30));
    assert_eq!(i.guard.issuers[0].scope_claim, "scope");
    assert_eq!(i.guard.issuers[0].jwks_cache, JwksCachePolicy::default());
    assert!(i.guard.forward.keep_authorization);
    assert!(!i.guard.forward.keep_override_headers);
    assert_eq!(i.guard.rules.len(), 2);
    assert_eq!(
        i.guard.rules[1].access,
        Access::Token(Requirements {
            scopes: vec!["orders:read".into()],
            ..Default::default()
        })
    );
    assert!(c.outbound.is_none());
}

#[test]
fn example_config_loads() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))
        .unwrap();
    let c = Config::from_yaml(&text, "config.example.yaml", &|_| None).unwrap();
    assert!(c.inbound.is_some());
}

#[test]
fn field_errors_name_their_path() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "inbound:\n  listen: 127.0.0.1:1\n  upstream: http://a\n  issuers: []\n  rules: []\n  bogus: 1\n".to_string(),
            "inbound.bogus",
            "unknown field",
        ),
        (
            MINIMAL.replace("audiences: [api]", "audiences: [api]\n      leeway: soon"),
            "inbound.issuers[0].leeway",
            "expected a duration",
        ),
        (MINIMAL.replace("scopes: [orders:read]", "scopes: orders:read"), "inbound.rules[1].scopes", "expected a sequence"),
        (MINIMAL.replace("methods: [get]", "methods: [\"GE T\"]"), "inbound.rules[1].methods[0]", "not an HTTP method"),
        (MINIMAL.replace("${PORT}", "${NOPE}"), "inbound.upstream", "NOPE is not set"),
        (MINIMAL.replace("jwks_uri: https://idp/jwks", "discovery: false"), "inbound.issuers[0].jwks_uri", "set jwks_uri or discovery"),
        (
            MINIMAL.replace("jwks_uri: https://idp/jwks", "jwks_uri: https://idp/jwks\n      discovery: true"),
            "inbound.issuers[0].discovery",
            "not both",
        ),
        (MINIMAL.replace("audiences: [api]", "audiences: [api]\n      algorithms: [HS256]"), "inbound.issuers[0].shared_secret", "no shared secret"),
        (
            MINIMAL.replace("audiences: [api]", "audiences: [api]\n      algorithms: [RS256]\n      shared_secret: ${SECRET}"),
            "inbound.issuers[0].algorithms",
            "no HS* algorithm",
        ),
        (
            MINIMAL.replace("audiences: [api]", "audiences: [api]\n      algorithms: [RS256, HS256]\n      shared_secret: short"),
            "inbound.issuers[0].shared_secret",
            "at least 32 bytes",
        ),
        (MINIMAL.replace("mode", "x").replace("upstream:", "mode: lenient\n  upstream:"), "inbound.mode", "strict, permissive or audit"),
        (MINIMAL.replace("/health, allow: anonymous", "/health, allow: anonymous, scopes: [x]"), "inbound.rules[0].allow", "cannot also require"),
        (MINIMAL.replace("/health, allow", "health, allow"), "inbound.rules[0].path", "must start with '/'"),
        (
            format!("{MINIMAL}  forward:\n    claims_to_headers: {{ sub: authorization }}\n"),
            "inbound.forward.claims_to_headers.sub",
            "cannot carry identity",
        ),
        (
            format!("{MINIMAL}  forward:\n    claims_to_headers: {{ sub: keep-alive }}\n"),
            "inbound.forward.claims_to_headers.sub",
            "cannot carry identity",
        ),
        (
            format!("{MINIMAL}  forward:\n    claims_to_headers: {{ sub: X-Forwarded-Host }}\n"),
            "inbound.forward.claims_to_headers.sub",
            "cannot carry identity",
        ),
        (
            format!("{MINIMAL}  forward:\n    claims_to_headers: {{ sub: forwarded }}\n"),
            "inbound.forward.claims_to_headers.sub",
            "cannot carry identity",
        ),
        (
            format!("{MINIMAL}  forward:\n    claims_to_headers: {{ sub: x_auth_subject }}\n"),
            "inbound.forward.claims_to_headers.sub",
            "not '_'",
        ),
        (
            format!("{MINIMAL}  timeouts:\n    tunnel_idle: 0s\n"),
            "inbound.timeouts.tunnel_idle",
            "greater than zero",
        ),
        (format!("{MINIMAL}  forward:\n    authorization: drop\n"), "inbound.forward.authorization", "strip or keep"),
        (format!("{MINIMAL}  forward:\n    override_headers: yes\n"), "inbound.forward.override_headers", "strip or keep"),
        (
            MINIMAL.replace("{ path: /health, allow: anonymous }", "{ path: /health, host: \"a:80\", allow: anonymous }"),
            "inbound.rules[0].host",
            "without port",
        ),
        (
            MINIMAL.replace("{ path: /health, allow: anonymous }", "{ path: /health, host: \"*.example\", allow: anonymous }"),
            "inbound.rules[0].host",
            "without port",
        ),
        (MINIMAL.replace("127.0.0.1:8443", "localhost"), "inbound.listen", "host:port"),
        (
            MINIMAL.replace("scopes: [orders:read]", "claims: { \"/kubernetes.io/name~space\": orders }"),
            "inbound.rules[1].claims",
            "~0",
        ),
        (
            format!("{MINIMAL}  forward:\n    claims_to_headers: {{ \"//namespace\": x-namespace }}\n"),
            "inbound.forward.claims_to_headers",
            "starts with a claim name",
        ),
        (
            MINIMAL.replace("audiences: [api]", "audiences: [api]\n      tls: { ca_file: /nonexistent/ca.pem }"),
            "inbound.issuers[0].tls.ca_file",
            "/nonexistent/ca.pem",
        ),
        (
            MINIMAL.replace("audiences: [api]", "audiences: [api]\n      tls: { cert_file: /c.pem }"),
            "inbound.issuers[0].tls.cert_file",
            "set both cert_file and key_file",
        ),
        (
            MINIMAL.replace("jwks_uri: https://idp/jwks", "discovery: false\n      algorithms: [HS256]\n      shared_secret: ${SECRET}\n      jwks_bearer_token_file: /t"),
            "inbound.issuers[0].jwks_bearer_token_file",
            "this issuer has no JWKS",
        ),
    ];
    for (yaml, path, fragment) in cases {
        let errors = load(&yaml).expect_err(path);
        assert!(
            errors
                .iter()
                .any(|(p, m)| p == path && m.contains(fragment)),
            "want {path}: …{fragment}…, got {errors:?}"
        );
    }
}

#[test]
fn typos_and_semantic_errors_are_reported_together() {
    let yaml = MINIMAL
        .replace("audiences: [api]", "audiences: [api]\n      leway: 30s")
        .replace("upstream:", "mode: lax\n  upstrem: x\n  upstream:")
        .replace("/orders, methods", "/orders, method: [GET], methods");
    let errors = load(&yaml).unwrap_err();
    let mut paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "inbound.issuers[0].leway",
            "inbound.mode",
            "inbound.rules[1].method",
            "inbound.upstrem"
        ],
        "{errors:?}"
    );
    assert!(
        errors[0].1.contains("at line"),
        "the first error keeps its file position: {errors:?}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = r#"
inbound:
  listen: nope
  upstream: ftp://x
  issuers:
    - issuer: a
      audiences: []
      algorithms: [none]
  rules:
    - { path: x }
"#;
    let paths: Vec<String> = load(yaml)
        .unwrap_err()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        paths,
        [
            "inbound.listen",
            "inbound.upstream",
            "inbound.issuers[0].algorithms[0]",
            "inbound.issuers[0].audiences",
            "inbound.rules[0].path"
        ]
    );
}

#[test]
fn secrets_come_from_env_or_files_and_never_print() {
    let dir = std::env::temp_dir().join(format!("tokengate-secret-{}", std::process::id()));
    std::fs::write(&dir, "file-secret-file-secret-file-secret\n").unwrap();
    let yaml = MINIMAL.replace(
        "audiences: [api]",
        &format!(
            "audiences: [api]\n      algorithms: [RS256, HS256]\n      shared_secret_file: {}",
            dir.display()
        ),
    );
    let c = load(&yaml).unwrap();
    let secret = c.inbound.unwrap().guard.issuers[0]
        .shared_secret
        .clone()
        .unwrap();
    assert_eq!(
        secret.expose(),
        b"file-secret-file-secret-file-secret",
        "trailing newline trimmed"
    );
    assert!(!format!("{secret:?}").contains("file-secret"));
    std::fs::remove_file(&dir).unwrap();
}

#[test]
fn durations() {
    let cases = [
        ("250ms", Some(250)),
        ("30s", Some(30_000)),
        ("5m", Some(300_000)),
        ("1h", Some(3_600_000)),
        ("1d", Some(86_400_000)),
        ("10", None),
        ("s", None),
        ("-1s", None),
        ("1w", None),
    ];
    for (text, want) in cases {
        assert_eq!(
            parse_duration(text).ok(),
            want.map(Duration::from_millis),
            "{text}"
        );
    }
}

#[test]
fn interpolation() {
    let cases = [
        ("plain", Ok("plain")),
        ("port ${PORT}!", Ok("port 8081!")),
        ("$$PORT", Ok("$PORT")),
        ("cost $5", Ok("cost $5")),
        ("${MISSING}", Err("environment variable MISSING is not set")),
        ("${PORT", Err("unterminated ${…} reference")),
    ];
    for (text, want) in cases {
        assert_eq!(
            interpolate(text, &env).as_deref(),
            want.map_err(str::to_string).as_deref(),
            "{text}"
        );
    }
}

const OUTBOUND: &str = r#"
outbound:
  listen: 127.0.0.1:15001
  routes:
    - { host: Payments.Internal, upstream: "https://payments.internal", token: cc }
    - { host: "*", upstream: "http://127.0.0.1:${PORT}/api", token: file }
    - { host: public.example, upstream: "https://public.example" }
  tokens:
    cc:
      kind: client_credentials
      token_url: https://idp/token
      client_id: orders
      client_secret: ${SECRET}
      scopes: [a, b]
      resource: urn:payments
      renew_before: 30%
    file:
      kind: file
      path: /var/run/token
      renew_before: 45s
      inject: "token={token}"
      retry_on: [401, 403]
"#;

#[test]
fn outbound_routes_and_token_sources() {
    let o = load(OUTBOUND).unwrap().outbound.unwrap();
    assert_eq!(o.routes[0].host.as_deref(), Some("payments.internal"));
    assert_eq!(o.routes[1].host, None);
    assert_eq!(o.routes[1].upstream, "http://127.0.0.1:8081/api");
    let cc = &o.tokens[o.routes[0].token.unwrap()];
    assert_eq!(cc.name, "cc");
    assert_eq!(cc.renew_before, RenewBefore::Fraction(0.3));
    assert_eq!(cc.retry_on, [401]);
    assert_eq!(cc.inject.render("abc").unwrap(), "Bearer abc");
    assert!(cc.inject.render("abc").unwrap().is_sensitive());
    match &cc.source {
        TokenSource::OAuth(c) => {
            assert!(matches!(c.grant, Grant::ClientCredentials));
            let client = c.client.as_ref().unwrap();
            assert_eq!(client.id, "orders");
            assert!(
                matches!(&client.auth, ClientAuth::SecretBasic(s) if s.expose() == b"s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t")
            );
            assert_eq!(c.scopes, ["a", "b"]);
            assert_eq!(c.resource.as_deref(), Some("urn:payments"));
        }
        other => panic!("{other:?}"),
    }
    let file = &o.tokens[o.routes[1].token.unwrap()];
    assert_eq!(
        file.renew_before,
        RenewBefore::Ahead(Duration::from_secs(45))
    );
    assert_eq!(file.inject.render("t").unwrap(), "token=t");
    assert_eq!(file.retry_on, [401, 403]);
    assert!(
        matches!(&file.source, TokenSource::File { path } if path.to_str() == Some("/var/run/token"))
    );
    assert_eq!(o.routes[2].host.as_deref(), Some("public.example"));
    assert_eq!(
        o.routes[2].token, None,
        "a route without a token is a pass-through"
    );
}

const FILE_KIND: &str = "kind: file\n      path: /var/run/token";

#[test]
fn outbound_errors_name_their_path() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            OUTBOUND.replace("kind: file", "kind: ldap"),
            "outbound.tokens.file.kind",
            "expected client_credentials, jwt_bearer, token_exchange, login or file",
        ),
        (
            OUTBOUND.replace("kind: file", "kind: login"),
            "outbound.tokens.file.path",
            "not used by kind login",
        ),
        (
            OUTBOUND.replace("path: /var/run/token", "path: /var/run/token\n      tls: { ca_file: /ca.pem }"),
            "outbound.tokens.file.tls",
            "not used by kind file",
        ),
        (
            OUTBOUND.replace("resource: urn:payments", "resource: urn:payments\n      tls: { ca_file: /nonexistent/ca.pem }"),
            "outbound.tokens.cc.tls.ca_file",
            "/nonexistent/ca.pem",
        ),
        (
            OUTBOUND.replace(FILE_KIND, "kind: jwt_bearer\n      token_url: https://idp/token"),
            "outbound.tokens.file.assertion_file",
            "jwt_bearer needs assertion_file or private_key_file",
        ),
        (
            OUTBOUND.replace(FILE_KIND, "kind: token_exchange\n      token_url: https://idp/token"),
            "outbound.tokens.file.subject_token_file",
            "required for this kind",
        ),
        (
            OUTBOUND.replace(FILE_KIND, "kind: login\n      token_url: https://idp/login"),
            "outbound.tokens.file.body",
            "required for kind login",
        ),
        (
            OUTBOUND.replace(FILE_KIND, "kind: login\n      token_url: https://idp/login\n      body: { secret: \"{client_secret}\" }"),
            "outbound.tokens.file.body",
            "uses {client_secret} but client_secret is not set",
        ),
        (
            OUTBOUND.replace(FILE_KIND, "kind: login\n      token_url: https://idp/login\n      body: {}\n      token_pointer: data/token"),
            "outbound.tokens.file.token_pointer",
            "starts with '/'",
        ),
        (
            OUTBOUND.replace("path: /var/run/token", "path: /t\n      client_id: x"),
            "outbound.tokens.file.client_id",
            "not used by kind file",
        ),
        (
            OUTBOUND.replace("      client_secret: ${SECRET}\n", ""),
            "outbound.tokens.cc.client_secret",
            "needs client_secret",
        ),
        (
            OUTBOUND.replace(
                "client_id: orders",
                "client_id: orders\n      client_auth: private_key_jwt",
            ),
            "outbound.tokens.cc.client_secret",
            "not used with client_auth private_key_jwt",
        ),
        (
            OUTBOUND.replace(
                "client_id: orders",
                "client_id: orders\n      client_auth: mtls",
            ),
            "outbound.tokens.cc.client_auth",
            "expected client_secret_basic",
        ),
        (
            OUTBOUND.replace("renew_before: 30%", "renew_before: 95%"),
            "outbound.tokens.cc.renew_before",
            "1% to 90%",
        ),
        (
            OUTBOUND.replace("renew_before: 45s", "renew_before: soon"),
            "outbound.tokens.file.renew_before",
            "expected a duration",
        ),
        (
            OUTBOUND.replace("token={token}", "token=x"),
            "outbound.tokens.file.inject",
            "must contain {token}",
        ),
        (
            OUTBOUND.replace("[401, 403]", "[200]"),
            "outbound.tokens.file.retry_on[0]",
            "4xx or 5xx",
        ),
        (
            OUTBOUND.replace("token: cc }", "token: nope }"),
            "outbound.routes[0].token",
            "\"nope\" is not a configured token",
        ),
        (
            OUTBOUND.replace("host: \"*\"", "host: payments.internal"),
            "outbound.routes[1].host",
            "duplicate host",
        ),
        (
            OUTBOUND.replace("host: Payments.Internal", "host: payments.internal:15001"),
            "outbound.routes[0].host",
            "without port or wildcard",
        ),
        (
            OUTBOUND.replace("host: Payments.Internal", "host: \"*.internal\""),
            "outbound.routes[0].host",
            "without port or wildcard",
        ),
        (
            OUTBOUND.replace("https://idp/token", "idp/token"),
            "outbound.tokens.cc.token_url",
            "http:// or https://",
        ),
        (
            OUTBOUND.replace("path: /var/run/token", "path: /t\n      dpop: { generate: ES256 }"),
            "outbound.tokens.file.dpop",
            "not used by kind file",
        ),
        (
            OUTBOUND.replace("resource: urn:payments", "resource: urn:payments\n      dpop: { generate: HS256 }"),
            "outbound.tokens.cc.dpop.generate",
            "expected ES256, ES384 or EdDSA, got \"HS256\"",
        ),
        (
            OUTBOUND.replace("resource: urn:payments", "resource: urn:payments\n      dpop: {}"),
            "outbound.tokens.cc.dpop",
            "set key_file or generate",
        ),
        (
            OUTBOUND.replace("resource: urn:payments", "resource: urn:payments\n      dpop: { generate: ES256, key_file: /k.pem }"),
            "outbound.tokens.cc.dpop",
            "one of them",
        ),
        (
            OUTBOUND.replace("resource: urn:payments", "resource: urn:payments\n      dpop: { key_file: /nonexistent/dpop.pem }"),
            "outbound.tokens.cc.dpop.key_file",
            "cannot read /nonexistent/dpop.pem",
        ),
        (
            OUTBOUND.replace("resource: urn:payments", "resource: urn:payments\n      dpop: { generate: ES256 }\n      inject: \"Bearer {token}\""),
            "outbound.tokens.cc.inject",
            "inject does not apply",
        ),
        (
            OUTBOUND.replace("resource: urn:payments", "resource: urn:payments\n      certificate_bound: true"),
            "outbound.tokens.cc.certificate_bound",
            "needs the client certificate its tokens are bound to",
        ),
        (
            OUTBOUND.replace("resource: urn:payments", "resource: urn:payments\n      certificate_bound: true\n      tls: { ca_file: /etc/hosts }"),
            "outbound.tokens.cc.certificate_bound",
            "tls.cert_file and tls.key_file",
        ),
        (
            OUTBOUND.replace("path: /var/run/token", "path: /t\n      certificate_bound: true"),
            "outbound.tokens.file.certificate_bound",
            "not used by kind file",
        ),
    ];
    for (yaml, path, fragment) in cases {
        let errors = load(&yaml).expect_err(path);
        assert!(
            errors
                .iter()
                .any(|(p, m)| p == path && m.contains(fragment)),
            "want {path}: …{fragment}…, got {errors:?}"
        );
    }
}

#[test]
fn private_key_jwt_loads_the_assertion_key() {
    let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .unwrap();
    let der = pair.to_pkcs8v1().unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    let file = std::env::temp_dir().join(format!("tokengate-{}-pk.pem", std::process::id()));
    std::fs::write(&file, pem).unwrap();
    let yaml = OUTBOUND.replace(
        "      client_secret: ${SECRET}\n",
        &format!(
            "      client_auth: private_key_jwt\n      private_key_file: {}\n      key_id: k1\n",
            file.display()
        ),
    );
    let o = load(&yaml).unwrap().outbound.unwrap();
    let TokenSource::OAuth(c) = &o.tokens[0].source else {
        panic!("client_credentials")
    };
    let ClientAuth::PrivateKeyJwt(key) = &c.client.as_ref().unwrap().auth else {
        panic!("private_key_jwt")
    };
    assert_eq!(key.alg, Algorithm::ES256);
    assert_eq!(key.key_id.as_deref(), Some("k1"));
    std::fs::write(&file, "not a key").unwrap();
    let errors = load(&yaml).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|(p, m)| p == "outbound.tokens.cc.private_key_file" && m.contains("not a PEM")),
        "{errors:?}"
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_dpop_source_loads_its_key_and_sends_its_token_as_dpop() {
    let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
    )
    .unwrap();
    let der = pair.to_pkcs8v1().unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    let file = std::env::temp_dir().join(format!("tokengate-{}-dpop.pem", std::process::id()));
    std::fs::write(&file, pem).unwrap();
    for (dpop, alg) in [
        (format!("{{ key_file: {} }}", file.display()), "ES384"),
        ("{ generate: EdDSA }".to_string(), "EdDSA"),
    ] {
        let yaml = OUTBOUND.replace(
            "resource: urn:payments",
            &format!("resource: urn:payments\n      dpop: {dpop}"),
        );
        let o = load(&yaml).unwrap().outbound.unwrap();
        let cc = &o.tokens[0];
        assert_eq!(cc.inject.render("abc").unwrap(), "DPoP abc");
        let TokenSource::OAuth(c) = &cc.source else {
            panic!("client_credentials")
        };
        assert_eq!(c.dpop.as_ref().unwrap().alg(), alg);
    }
    std::fs::write(&file, "not a key").unwrap();
    let yaml = OUTBOUND.replace(
        "resource: urn:payments",
        &format!(
            "resource: urn:payments\n      dpop: {{ key_file: {} }}",
            file.display()
        ),
    );
    let errors = load(&yaml).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|(p, m)| p == "outbound.tokens.cc.dpop.key_file"
                && m.contains("not a PEM private key")),
        "{errors:?}"
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn rule_hosts_are_written_as_requests_are_matched() {
    let yaml = MINIMAL.replace(
        "{ path: /health, allow: anonymous }",
        "{ path: /health, host: Admin.Internal., allow: anonymous }",
    );
    let config = load(&yaml).unwrap();
    let rule = &config.inbound.unwrap().guard.rules[0];
    assert!(rule.matches(&hyper::Method::GET, b"admin.internal", "/health"));
}

#[test]
fn a_token_source_lists_the_fields_set() {
    let raw: RawTokenSource =
        serde_yaml::from_str("{ kind: login, body: {}, login_token_ttl: 5m }").unwrap();
    let mut present = raw.present();
    present.sort();
    assert_eq!(present, ["body", "kind", "login_token_ttl"]);
}

/// `inbound`'s issuers and rules, as an `authz` section.
fn authz_yaml(extra: &str) -> String {
    let section = MINIMAL
        .replace("inbound:", "authz:")
        .replace("  listen: 127.0.0.1:8443\n", "")
        .replace("  upstream: http://127.0.0.1:${PORT}\n", "");
    format!("{section}{extra}")
}

#[test]
fn an_authz_section_decides_like_inbound_and_forwards_nothing() {
    let c = load(&authz_yaml("")).unwrap();
    assert!(c.inbound.is_none());
    let a = c.authz.unwrap();
    assert_eq!(a.listen.to_string(), "127.0.0.1:9191");
    assert_eq!(a.grpc_listen, None);
    assert_eq!(a.guard.mode, Mode::Strict);
    assert_eq!(a.guard.rules.len(), 2);
    assert_eq!(a.guard.issuers[0].issuer, "https://idp");
    // It cannot strip what the app gets: override headers are checked instead.
    assert!(a.guard.forward.keep_override_headers);
    let both = load(&format!(
        "{MINIMAL}{}",
        authz_yaml("  listen: 127.0.0.1:7000\n  grpc_listen: 127.0.0.1:7001\n")
    ))
    .unwrap();
    let a = both.authz.unwrap();
    assert_eq!(a.listen.to_string(), "127.0.0.1:7000");
    assert_eq!(
        a.grpc_listen.map(|g| g.to_string()).as_deref(),
        Some("127.0.0.1:7001")
    );
    assert!(both.inbound.is_some());
}

#[test]
fn authz_errors_name_their_path() {
    let cases = [
        (
            authz_yaml("  upstream: http://app\n"),
            "authz.upstream",
            "unknown field",
        ),
        (
            authz_yaml("  tls: { cert_file: c, key_file: k }\n"),
            "authz.tls",
            "unknown field",
        ),
        (
            authz_yaml("  listen: localhost:9191\n"),
            "authz.listen",
            "expected host:port",
        ),
        (
            authz_yaml("  grpc_listen: nine\n"),
            "authz.grpc_listen",
            "expected host:port",
        ),
        (
            authz_yaml("  mode: lax\n"),
            "authz.mode",
            "strict, permissive or audit",
        ),
        (
            authz_yaml("  forward:\n    authorization: strip\n"),
            "authz.forward.authorization",
            "forwards nothing",
        ),
        (
            authz_yaml("  forward:\n    override_headers: keep\n"),
            "authz.forward.override_headers",
            "always checked",
        ),
        (
            authz_yaml("  forward:\n    claims_to_headers: { sub: host }\n"),
            "authz.forward.claims_to_headers.sub",
            "cannot carry identity",
        ),
        (
            authz_yaml("  timeouts:\n    upstream_response: 1s\n"),
            "authz.timeouts.upstream_response",
            "only header_read and drain apply",
        ),
        (
            authz_yaml("  limits:\n    max_connections: 0\n"),
            "authz.limits.max_connections",
            "at least 1",
        ),
        (
            authz_yaml("").replace("/health, allow", "health, allow"),
            "authz.rules[0].path",
            "must start with '/'",
        ),
        (
            authz_yaml("").replace("audiences: [api]", "audiences: []"),
            "authz.issuers[0].audiences",
            "at least one audience",
        ),
    ];
    for (yaml, path, message) in cases {
        let errors = load(&yaml).expect_err(&yaml);
        assert!(
            errors.iter().any(|(p, m)| p == path && m.contains(message)),
            "{path}: {message} not in {errors:?}"
        );
    }
}

/// Two issuers, the second introspecting (`{intro}` is its `introspection`).
fn introspecting(intro: &str, rules: &str) -> String {
    format!(
        r#"
inbound:
  listen: 127.0.0.1:8443
  upstream: http://127.0.0.1:1
  issuers:
    - issuer: https://jwt
      jwks_uri: https://jwt/jwks
      audiences: [api]
    - issuer: https://opaque
      audiences: [api]
      introspection: {intro}
  rules:
{rules}
"#
    )
}

#[test]
fn an_introspecting_issuer_needs_no_keys_and_takes_the_opaque_tokens_of_its_rules() {
    let c = load(&introspecting(
        "{ endpoint: https://opaque/introspect, client_id: rs, client_secret: s }",
        "    - { path: /orders, scopes: [orders:read] }\n    - { path: /jwt, issuers: [https://jwt] }",
    ))
    .unwrap();
    let guard = &c.inbound.unwrap().guard;
    assert_eq!(guard.issuers[1].keys, KeySource::None);
    let i = guard.issuers[1].introspection.as_ref().unwrap();
    assert_eq!(
        i.endpoint,
        IntrospectionEndpoint::Uri("https://opaque/introspect".parse().unwrap())
    );
    assert!(matches!(i.client.auth, ClientAuth::SecretBasic(_)));
    assert_eq!(
        (i.max_ttl, i.negative_ttl, i.timeout, i.max_entries),
        (
            IntrospectionConfig::DEFAULT_MAX_TTL,
            IntrospectionConfig::DEFAULT_NEGATIVE_TTL,
            IntrospectionConfig::DEFAULT_TIMEOUT,
            IntrospectionConfig::DEFAULT_MAX_ENTRIES
        )
    );
    let introspect = |rule: usize| match &guard.rules[rule].access {
        Access::Token(r) => r.introspect,
        Access::Anonymous => panic!("a token rule"),
    };
    assert_eq!(introspect(0), Some(IssuerId::new(1)));
    assert_eq!(
        introspect(1),
        None,
        "a rule for the JWT issuer only refuses opaque tokens"
    );

    // Discovery names the endpoint when none is given.
    let yaml = MINIMAL.replace(
        "jwks_uri: https://idp/jwks",
        "discovery: true\n      introspection: { client_id: rs, client_auth: client_secret_post, client_secret: s, max_ttl: 30s }",
    );
    let c = load(&yaml).unwrap();
    let i = c.inbound.unwrap().guard.issuers[0]
        .introspection
        .clone()
        .unwrap();
    assert_eq!(
        i.endpoint,
        IntrospectionEndpoint::Discovery(
            "https://idp/.well-known/openid-configuration"
                .parse()
                .unwrap()
        )
    );
    assert!(matches!(i.client.auth, ClientAuth::SecretPost(_)));
    assert_eq!(i.max_ttl, Duration::from_secs(30));
}

#[test]
fn introspection_errors_name_their_path() {
    let rule = "    - { path: /orders, scopes: [orders:read] }";
    let path = "inbound.issuers[1].introspection";
    let cases: Vec<(String, String, &str)> = vec![
        (
            introspecting("{ client_id: rs, client_secret: s }", rule),
            format!("{path}.endpoint"),
            "required unless the issuer uses discovery: true",
        ),
        (
            introspecting("{ endpoint: https://opaque/i }", rule),
            format!("{path}.client_id"),
            "required: the introspection endpoint must know who asks",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_auth: client_secret_jwt, client_secret: s }", rule),
            format!("{path}.client_auth"),
            "expected client_secret_basic, client_secret_post, private_key_jwt or none, got \"client_secret_jwt\"",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_auth: client_secret_post }", rule),
            format!("{path}.client_secret"),
            "this client_auth needs client_secret or client_secret_file",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_secret: s, client_secret_file: /f }", rule),
            format!("{path}.client_secret"),
            "set client_secret or client_secret_file, not both",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_auth: private_key_jwt }", rule),
            format!("{path}.private_key_file"),
            "required",
        ),
        (
            introspecting("{ endpoint: ftp://opaque/i, client_id: rs, client_secret: s }", rule),
            format!("{path}.endpoint"),
            "http",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_secret: s, max_ttl: 0s }", rule),
            format!("{path}.max_ttl"),
            "must be greater than zero",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_secret: s, timeout: 0s }", rule),
            format!("{path}.timeout"),
            "must be greater than zero",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_secret: s, tokens: jwt }", rule),
            format!("{path}.tokens"),
            "expected opaque or all, got \"jwt\"",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_secret: s, max_entries: 0 }", rule),
            format!("{path}.max_entries"),
            "must be at least 1",
        ),
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_secret: s, cache: 1 }", rule),
            "inbound.issuers[1]".to_string(),
            "unknown field `cache`",
        ),
        // Two introspecting issuers: a rule accepting both cannot say where an
        // opaque token goes; naming one settles it.
        (
            introspecting("{ endpoint: https://opaque/i, client_id: rs, client_secret: s }", rule)
                .replace("jwks_uri: https://jwt/jwks", "jwks_uri: https://jwt/jwks\n      introspection: { endpoint: https://jwt/i, client_id: rs, client_secret: s }"),
            "inbound.rules[0].issuers".to_string(),
            "an opaque token names no issuer, and this rule accepts 2 that introspect (https://jwt, https://opaque): name the one its opaque tokens go to",
        ),
    ];
    for (yaml, want_path, want) in cases {
        let errors = load(&yaml).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|(p, m)| p.starts_with(&want_path) && m.contains(want)),
            "{want_path}: {want}\ngot {errors:?}"
        );
    }
    let named = introspecting("{ endpoint: https://opaque/i, client_id: rs, client_secret: s }", "    - { path: /orders, issuers: [https://opaque] }")
        .replace("jwks_uri: https://jwt/jwks", "jwks_uri: https://jwt/jwks\n      introspection: { endpoint: https://jwt/i, client_id: rs, client_secret: s }");
    assert!(load(&named).is_ok(), "{:?}", load(&named).err());
}

/// One plain issuer, then `{entry}` (a `match` entry's fields) and `rules`.
fn tenants(entry: &str, rules: &str) -> String {
    format!(
        r#"
inbound:
  listen: 127.0.0.1:8443
  upstream: http://127.0.0.1:1
  issuers:
    - issuer: https://idp
      jwks_uri: https://idp/jwks
      audiences: [api]
    - {entry}
      audiences: [api]
  rules:
{rules}
"#
    )
}

#[test]
fn a_match_allows_each_listed_issuer_and_each_tenant_of_a_pattern() {
    let rule = "    - { path: /, scopes: [a] }";
    // A pattern: the tenant goes into the issuer and the JWKS URL.
    let c = load(&tenants(
        "match: { issuer: \"https://login/{tenant}/v2.0\", tenants: [t-1, T.2] }\n      jwks_uri: \"https://login/{tenant}/keys\"",
        "    - { path: /t, issuers: [\"https://login/{tenant}/v2.0\"] }\n    - { path: /one, issuers: [https://login/t-1/v2.0] }",
    ))
    .unwrap();
    let guard = &c.inbound.unwrap().guard;
    let built: Vec<_> = guard
        .issuers
        .iter()
        .map(|i| (i.issuer.as_str(), i.keys.clone(), i.matched.clone()))
        .collect();
    let tenant = |t: &str| {
        Some(Matched::Tenant {
            pattern: "https://login/{tenant}/v2.0".into(),
            tenant: t.into(),
        })
    };
    assert_eq!(
        built,
        vec![
            (
                "https://idp",
                KeySource::Jwks("https://idp/jwks".parse().unwrap()),
                None
            ),
            (
                "https://login/t-1/v2.0",
                KeySource::Jwks("https://login/t-1/keys".parse().unwrap()),
                tenant("t-1")
            ),
            (
                "https://login/T.2/v2.0",
                KeySource::Jwks("https://login/T.2/keys".parse().unwrap()),
                tenant("T.2")
            ),
        ]
    );
    let accepted = |rule: usize| match &guard.rules[rule].access {
        Access::Token(r) => r.issuers.clone(),
        Access::Anonymous => panic!("a token rule"),
    };
    assert_eq!(
        accepted(0),
        Some(vec![IssuerId::new(1), IssuerId::new(2)]),
        "a rule naming the pattern accepts every tenant"
    );
    assert_eq!(accepted(1), Some(vec![IssuerId::new(1)]));

    // An exact list, written as a list or as `issuers:`, each by discovery.
    for entry in [
        "match: [https://a, https://b]\n      discovery: true",
        "match: { issuers: [https://a, https://b] }\n      discovery: true",
    ] {
        let c = load(&tenants(entry, rule)).unwrap();
        let built: Vec<_> = c.inbound.unwrap().guard.issuers[1..]
            .iter()
            .map(|i| (i.issuer.clone(), i.keys.clone(), i.matched.clone()))
            .collect();
        let discovery = |at: &str| {
            KeySource::Discovery(
                format!("{at}/.well-known/openid-configuration")
                    .parse()
                    .unwrap(),
            )
        };
        assert_eq!(
            built,
            vec![
                (
                    "https://a".to_string(),
                    discovery("https://a"),
                    Some(Matched::Listed)
                ),
                (
                    "https://b".to_string(),
                    discovery("https://b"),
                    Some(Matched::Listed)
                ),
            ],
            "{entry}"
        );
    }
}

#[test]
fn a_match_regex_is_one_issuer_whose_tenants_share_its_keys() {
    let pattern = "https://login/{tenant}/v2.0";
    let c = load(&tenants(
        "match: { issuer: \"https://login/{tenant}/v2.0\", regex: \"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\" }\n      jwks_uri: https://login/common/keys",
        "    - { path: /t, issuers: [\"https://login/{tenant}/v2.0\"] }",
    ))
    .unwrap();
    let guard = &c.inbound.unwrap().guard;
    assert_eq!(guard.issuers.len(), 2, "one issuer for the whole pattern");
    let issuer = &guard.issuers[1];
    assert_eq!(issuer.issuer, pattern);
    assert_eq!(
        issuer.keys,
        KeySource::Jwks("https://login/common/keys".parse().unwrap())
    );
    assert!(!issuer.on_demand(), "its one key set is fetched at start");
    assert_eq!(issuer.pattern(), Some(pattern));
    match &guard.rules[0].access {
        Access::Token(r) => assert_eq!(r.issuers, Some(vec![IssuerId::new(1)])),
        Access::Anonymous => panic!("a token rule"),
    }
    let Some(Matched::Open(open)) = &issuer.matched else {
        panic!("an open pattern: {:?}", issuer.matched);
    };
    let id = "0d3c8f2a-1b2c-4d5e-8f90-123456789abc";
    let cases = [
        (format!("https://login/{id}/v2.0"), Some(id)),
        // The regex takes the whole tenant, never a part of it.
        (format!("https://login/x{id}/v2.0"), None),
        (format!("https://login/{id}x/v2.0"), None),
        (format!("https://login/{id}/v2.0/"), None),
        (format!("https://login/{id}/v1.0"), None),
        (format!("http://login/{id}/v2.0"), None),
        ("https://login//v2.0".to_string(), None),
        (pattern.to_string(), None),
        (format!("https://login/{id}/x/{id}/v2.0"), None),
    ];
    for (iss, want) in cases {
        assert_eq!(open.tenant(&iss), want, "{iss}");
    }
}

#[test]
fn match_errors_name_their_path() {
    let rule = "    - { path: /, scopes: [a] }";
    let path = "inbound.issuers[1]";
    let cases: Vec<(String, String, &str)> = vec![
        (
            tenants("issuer: https://x\n      match: [https://y]\n      discovery: true", rule),
            format!("{path}.match"),
            "set issuer or match, not both",
        ),
        (
            tenants("discovery: true", rule),
            format!("{path}.issuer"),
            "required (or match: the issuers allowed)",
        ),
        (
            tenants("match: []\n      discovery: true", rule),
            format!("{path}.match.issuers"),
            "must name at least one issuer",
        ),
        (
            tenants("match: [\"https://x/{tenant}\"]\n      discovery: true", rule),
            format!("{path}.match.issuers[0]"),
            "a {tenant} pattern goes in match.issuer",
        ),
        (
            tenants("match: { issuer: \"https://x/{tenant}\" }\n      discovery: true", rule),
            format!("{path}.match.tenants"),
            "a {tenant} pattern needs the tenants it may take",
        ),
        (
            tenants("match: { issuer: \"https://x/{tenant}\", regex: \"[a-z]+\" }\n      discovery: true", rule),
            format!("{path}.discovery"),
            "not with match.regex: discovery is read from each issuer's own URL",
        ),
        (
            tenants("match: { issuer: \"https://x/{tenant}\", regex: \"[a-z]+\" }\n      jwks_uri: \"https://x/{tenant}/keys\"", rule),
            format!("{path}.jwks_uri"),
            "no {tenant} with match.regex",
        ),
        (
            tenants("match: { issuer: \"https://x/{tenant}\", regex: \"[a-z\" }\n      jwks_uri: https://x/keys", rule),
            format!("{path}.match.regex"),
            "not a regex",
        ),
        (
            tenants("match: { issuer: \"https://x/{tenant}\", regex: \"[a-z]+\", tenants: [a] }\n      jwks_uri: https://x/keys", rule),
            format!("{path}.match"),
            "set tenants or regex, not both",
        ),
        (
            tenants("match: { issuer: https://x/t, regex: \"[a-z]+\" }\n      jwks_uri: https://x/keys", rule),
            format!("{path}.match.issuer"),
            "must hold {tenant} exactly once",
        ),
        (
            tenants("match: { issuer: https://x/t, tenants: [a] }\n      discovery: true", rule),
            format!("{path}.match.issuer"),
            "must hold {tenant} exactly once",
        ),
        (
            tenants("match: { issuer: \"https://x/{tenant}\", tenants: [\"a/b\"] }\n      discovery: true", rule),
            format!("{path}.match.tenants[0]"),
            "a tenant is letters, digits",
        ),
        (
            tenants("match: { issuer: \"https://x/{tenant}\", tenants: [] }\n      discovery: true", rule),
            format!("{path}.match.tenants"),
            "must name at least one tenant",
        ),
        (
            tenants("match: { issuers: [https://a], issuer: \"https://x/{tenant}\", tenants: [a] }\n      discovery: true", rule),
            format!("{path}.match"),
            "set issuers, or issuer with tenants or regex, not both",
        ),
        (
            tenants("match: { issuer: \"https://x/{tenant}\", tenant: [a] }\n      discovery: true", rule),
            format!("{path}.match.tenant"),
            "unknown field `tenant`, expected one of",
        ),
        (
            tenants("match: [https://a]\n      jwks_uri: \"https://a/{tenant}/keys\"", rule),
            format!("{path}.jwks_uri"),
            "{tenant} is only for an issuer matched by a pattern",
        ),
        (
            tenants("match: [https://idp]\n      discovery: true", rule),
            format!("{path}.match"),
            "duplicate issuer \"https://idp\"",
        ),
        (
            tenants("match: [https://a]\n      introspection: { endpoint: https://a/i, client_id: rs, client_secret: s }", rule),
            format!("{path}.match"),
            "cannot go with introspection",
        ),
    ];
    for (yaml, path, message) in cases {
        let errors = load(&yaml).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|(p, m)| *p == path && m.contains(message)),
            "{path}: {message} not in {errors:?}"
        );
    }
    // A mistake shared by every tenant is said once.
    let errors = load(&tenants(
        "match: { issuer: \"https://x/{tenant}\", tenants: [a, b, c] }\n      discovery: true\n      leeway: soon",
        rule,
    ))
    .unwrap_err();
    let about_leeway = errors.iter().filter(|(p, _)| p.ends_with("leeway")).count();
    assert_eq!(about_leeway, 1, "{errors:?}");
}

#[test]
fn dpop_works_without_config_and_its_settings_and_bindings_are_validated() {
    let guard = load(MINIMAL).unwrap().inbound.unwrap().guard;
    assert_eq!(guard.dpop, DpopConfig::default());
    assert_eq!(guard.issuers[0].require_binding, None);
    let yaml = format!(
        "{MINIMAL}  dpop: {{ origin: \"HTTPS://API.example.com:8443/\", max_age: 2m, leeway: 1s, replay_cache_entries: 10, require_nonce: true }}\n"
    )
    .replace("audiences: [api]", "audiences: [api]\n      require_binding: any")
    .replace(
        "- { path: /health, allow: anonymous }",
        "- { path: /health, allow: anonymous }\n    - { path: /pay, require_binding: dpop }",
    );
    let guard = load(&yaml).unwrap().inbound.unwrap().guard;
    assert_eq!(
        guard.dpop,
        DpopConfig {
            max_age: Duration::from_secs(120),
            leeway: Duration::from_secs(1),
            replay_cache_entries: 10,
            origin: Some(("https".into(), "api.example.com:8443".into())),
            require_nonce: true,
        }
    );
    assert_eq!(guard.issuers[0].require_binding, Some(RequireBinding::Any));
    match &guard.rules[1].access {
        Access::Token(r) => assert_eq!(r.binding, Some(RequireBinding::Dpop)),
        Access::Anonymous => panic!("a token rule"),
    }

    let cases = [
        (
            "dpop: { origin: https://api.example.com/v1 }",
            "inbound.dpop.origin",
            "an http(s) scheme and host, nothing after",
        ),
        (
            "dpop: { origin: \"api.example.com\" }",
            "inbound.dpop.origin",
            "an http(s) scheme and host",
        ),
        (
            "dpop: { origin: \"https://u@api.example.com\" }",
            "inbound.dpop.origin",
            "an http(s) scheme and host",
        ),
        (
            "dpop: { max_age: 0s }",
            "inbound.dpop.max_age",
            "must be more than 0s and at most 1h",
        ),
        (
            "dpop: { max_age: 2h }",
            "inbound.dpop.max_age",
            "must be more than 0s and at most 1h",
        ),
        (
            "dpop: { leeway: 10m }",
            "inbound.dpop.leeway",
            "must be at most 5m",
        ),
        (
            "dpop: { replay_cache_entries: 0 }",
            "inbound.dpop.replay_cache_entries",
            "must be at least 1",
        ),
        (
            "dpop: { nonce: true }",
            "inbound.dpop.nonce",
            "unknown field `nonce`",
        ),
    ];
    for (extra, path, message) in cases {
        let errors = load(&format!("{MINIMAL}  {extra}\n")).unwrap_err();
        assert!(
            errors.iter().any(|(p, m)| p == path && m.contains(message)),
            "{extra}: {errors:?}"
        );
    }
    let errors = load(&MINIMAL.replace(
        "audiences: [api]",
        "audiences: [api]\n      require_binding: dpop+mtls",
    ))
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|(p, m)| p == "inbound.issuers[0].require_binding" && m.contains("dpop")),
        "{errors:?}"
    );
    let errors = load(&MINIMAL.replace(
        "{ path: /health, allow: anonymous }",
        "{ path: /health, allow: anonymous, require_binding: dpop }",
    ))
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|(p, m)| p == "inbound.rules[0].allow" && m.contains("or a binding")),
        "{errors:?}"
    );
}

#[test]
fn inbound_tls_asks_for_client_certificates_only_when_told() {
    let with_tls = |extra: &str| {
        MINIMAL.replace(
            "  upstream: http://127.0.0.1:${PORT}\n",
            &format!("  upstream: http://127.0.0.1:${{PORT}}\n  tls: {{ cert_file: /c.pem, key_file: /k.pem{extra} }}\n"),
        )
    };
    let clients =
        |extra: &str| load(&with_tls(extra)).map(|c| c.inbound.unwrap().tls.unwrap().clients);
    assert_eq!(clients(""), Ok(ClientCerts::None));
    assert_eq!(
        clients(", client_certificates: optional"),
        Ok(ClientCerts::Any { required: false })
    );
    assert_eq!(
        clients(", client_certificates: required"),
        Ok(ClientCerts::Any { required: true })
    );
    assert_eq!(
        clients(", client_ca_file: /ca.pem"),
        Ok(ClientCerts::Ca {
            ca_file: "/ca.pem".into(),
            required: false
        })
    );
    assert_eq!(
        clients(", client_ca_file: /ca.pem, client_certificates: required"),
        Ok(ClientCerts::Ca {
            ca_file: "/ca.pem".into(),
            required: true
        })
    );
    let errors = clients(", client_certificates: always").unwrap_err();
    assert!(
        errors
            .iter()
            .any(|(p, m)| p == "inbound.tls.client_certificates" && m.contains("optional")),
        "{errors:?}"
    );
}

#[test]
fn a_client_certificate_header_needs_its_trusted_peers() {
    let with = |block: &str| {
        MINIMAL.replace(
            "  upstream: http://127.0.0.1:${PORT}\n",
            &format!(
                "  upstream: http://127.0.0.1:${{PORT}}\n  client_certificate_header: {block}\n"
            ),
        )
    };
    let c = load(&with(
        "{ name: ssl-client-cert, trusted_peers: [10.0.0.0/8, 127.0.0.1] }",
    ))
    .unwrap();
    let header = c.inbound.unwrap().client_certificate_header.unwrap();
    assert_eq!(header.name, "ssl-client-cert");
    assert_eq!(
        header.trusted_peers,
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap()
        ]
    );
    let cases = [
        (
            "{ name: ssl-client-cert }",
            "inbound.client_certificate_header.trusted_peers",
            "name the peers allowed to set it",
        ),
        (
            "{ name: ssl-client-cert, trusted_peers: [10.0.0.0/33] }",
            "inbound.client_certificate_header.trusted_peers[0]",
            "not an address or CIDR range",
        ),
        (
            "{ name: \"bad name\", trusted_peers: [10.0.0.1] }",
            "inbound.client_certificate_header.name",
            "not a header name",
        ),
    ];
    for (block, path, message) in cases {
        let errors = load(&with(block)).unwrap_err();
        assert!(
            errors.iter().any(|(p, m)| p == path && m.contains(message)),
            "{block}: {errors:?}"
        );
    }
}
