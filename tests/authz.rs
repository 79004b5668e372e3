//! Forward-auth end to end: the authz listener against a real dev issuer,
//! asked the way each fronting proxy asks. Traefik's, ingress-nginx's and
//! Envoy's HTTP-mode contracts are sent as raw bytes (what those proxies put
//! on the wire); Envoy's gRPC `Check` with tonic's client built from the
//! published protos. `authz_nginx.rs` runs a real nginx in front.

mod support;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use serde_json::json;
use std::collections::HashMap;
use support::dpop::DpopClient;
use support::*;
use tokengate::demo::{DevIssuer, KeyKind, SigningKey};

struct Authz {
    issuer: DevIssuer,
    app: tokengate::App,
    addr: std::net::SocketAddr,
    admin: String,
}

impl Authz {
    async fn start(extra: &str) -> Authz {
        Authz::with(|issuer| authz_yaml(issuer, extra)).await
    }

    /// With the config `yaml` writes for the issuer's URL.
    async fn with(yaml: impl FnOnce(&str) -> String) -> Authz {
        let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
            .await
            .expect("issuer");
        let app = start_yaml(&yaml(&issuer.issuer)).await;
        wait_ready(&app).await;
        let addr = app.authz_addr.expect("authz listener");
        let admin = format!("http://{}", app.admin_addr);
        Authz {
            issuer,
            app,
            addr,
            admin,
        }
    }

    fn token(&self, sub: &str, scope: &str) -> String {
        self.issuer.mint(json!({ "sub": sub, "scope": scope }))
    }

    /// One raw HTTP/1.1 request to the authz listener.
    async fn ask(&self, request_line: &str, headers: &[(&str, String)]) -> RawAnswer {
        raw_request(self.addr, request_line, &self.addr.to_string(), headers).await
    }

    async fn metric(&self, series: &str) -> f64 {
        metric_value(
            &get(&format!("{}/metrics", self.admin), None).await.2,
            series,
        )
    }
}

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// Traefik's forwardAuth request for `method uri` on `api.example.com`.
fn traefik(method: &str, uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-Forwarded-Method", method.to_string()),
        ("X-Forwarded-Proto", "https".into()),
        ("X-Forwarded-Host", "api.example.com".into()),
        ("X-Forwarded-Uri", uri.to_string()),
        ("X-Forwarded-For", "203.0.113.7".into()),
    ]
}

#[tokio::test]
async fn traefik_forward_auth_gets_the_inbound_decision_on_the_original_request() {
    let a = Authz::start("").await;
    let reader = a.token("alice", "orders:read");
    let with = |mut h: Vec<(&'static str, String)>, token: &str| {
        h.push(bearer(token));
        h
    };
    // Allowed: 200, the identity for authResponseHeaders, no body to speak of.
    let ok = a
        .ask(
            "GET /authz",
            &with(traefik("GET", "/orders/7?x=1"), &reader),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("x-auth-subject"), Some("alice"));
    assert_eq!(ok.header("x-envoy-auth-headers-to-remove"), None);
    // The rule is the original method's: POST /orders needs orders:write.
    let post = a
        .ask("GET /authz", &with(traefik("POST", "/orders"), &reader))
        .await;
    assert_eq!(post.status, 403, "{post:?}");
    assert!(post
        .header("www-authenticate")
        .unwrap()
        .contains("orders:write"));
    assert_eq!(json(&post.body)["error"], "insufficient_scope");
    // No token: the inbound guard's 401 and challenge.
    let none = a.ask("GET /authz", &traefik("GET", "/orders/7")).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("bearer realm=\"tokengate\"")
    );
    assert_eq!(json(&none.body)["error"], "invalid_request");
    // The original path's rule: /admin needs admin, whoever asks how.
    let admin = a
        .ask("GET /authz", &with(traefik("GET", "/admin/users"), &reader))
        .await;
    assert_eq!(admin.status, 403);
    let root = a.token("root", "admin");
    let admin = a
        .ask("GET /authz", &with(traefik("GET", "/admin/users"), &root))
        .await;
    assert_eq!(
        (admin.status, admin.header("x-auth-subject")),
        (200, Some("root"))
    );
    // Anonymous: allowed, and the proxy is told to drop a caller's identity header.
    let public = a.ask("GET /authz", &traefik("GET", "/public/x")).await;
    assert_eq!(public.status, 200);
    assert_eq!(public.header("x-auth-subject"), None);
    assert_eq!(
        public.header("x-envoy-auth-headers-to-remove"),
        Some("x-auth-subject")
    );
    // A tampered token.
    let bad = a
        .ask(
            "GET /authz",
            &with(traefik("GET", "/orders"), &format!("{reader}x")),
        )
        .await;
    assert_eq!(bad.status, 401);
    assert!(bad
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    // Metrics: direction authz, by rule; the decisions counted.
    let series = |rule: &str, status: &str| {
        format!(
            "tokengate_requests_total{{direction=\"authz\",route=\"{rule}\",status=\"{status}\"}}"
        )
    };
    assert_eq!(a.metric(&series("/orders", "200")).await, 1.0);
    assert_eq!(a.metric(&series("/orders", "403")).await, 1.0);
    assert_eq!(a.metric(&series("/admin", "200")).await, 1.0);
    assert_eq!(a.metric(&series("/public", "200")).await, 1.0);
    assert!(
        a.metric("tokengate_verify_cache_hits_total").await >= 1.0,
        "the decision cache serves authz"
    );
    a.app.shutdown().await;
}

#[tokio::test]
async fn ingress_nginx_and_envoy_http_contracts() {
    let a = Authz::start("").await;
    let reader = a.token("alice", "orders:read");
    // ingress-nginx auth-url: X-Original-URL (absolute) and X-Original-Method.
    let original = |method: &str, url: &str| {
        vec![
            ("X-Original-URL", url.to_string()),
            ("X-Original-Method", method.to_string()),
            ("X-Sent-From", "nginx-ingress-controller".to_string()),
            bearer(&reader),
        ]
    };
    let ok = a
        .ask(
            "GET /authz",
            &original("GET", "https://shop.example.com/orders?page=2"),
        )
        .await;
    assert_eq!(
        (ok.status, ok.header("x-auth-subject")),
        (200, Some("alice"))
    );
    let denied = a
        .ask(
            "GET /authz",
            &original("DELETE", "https://shop.example.com/orders"),
        )
        .await;
    assert_eq!(denied.status, 403, "no rule for DELETE /orders");
    // Envoy ext_authz HTTP mode, path_prefix /authz: the method is the request's own.
    let envoy = a.ask("GET /authz/orders/7?x=1", &[bearer(&reader)]).await;
    assert_eq!(
        (envoy.status, envoy.header("x-auth-subject")),
        (200, Some("alice"))
    );
    let envoy_post = a
        .ask(
            "POST /authz/orders",
            &[bearer(&reader), ("Content-Length", "0".into())],
        )
        .await;
    assert_eq!(envoy_post.status, 403);
    let envoy_none = a.ask("GET /authz/admin", &[]).await;
    assert_eq!(envoy_none.status, 401);
    // The path's spelling rules hold on the original path, as inbound.
    for sneaky in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/ADMIN",
        "/public;/admin",
    ] {
        let r = a.ask("GET /authz", &traefik("GET", sneaky)).await;
        assert!(matches!(r.status, 400 | 401), "{sneaky}: {r:?}");
        assert_ne!(r.status, 200, "{sneaky}");
    }
    let sneaky = a.ask("GET /authz/public/..%2fadmin", &[]).await;
    assert_eq!(sneaky.status, 400, "{sneaky:?}");
    a.app.shutdown().await;
}

#[tokio::test]
async fn an_original_request_that_cannot_be_determined_is_never_allowed() {
    let a = Authz::start("").await;
    let anyone = a.token("mallory", "orders:read");
    let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        // Nothing names it.
        ("GET /authz", vec![]),
        ("GET /authz?uri=/public", vec![]),
        // A caller's extra contract header, naming another request than the proxy's.
        (
            "GET /authz",
            [
                traefik("GET", "/admin"),
                vec![("X-Original-URL", "/public".into())],
            ]
            .concat(),
        ),
        (
            "GET /authz",
            vec![
                ("X-Original-URL", "https://h/admin".into()),
                ("X-Forwarded-Uri", "/public".into()),
            ],
        ),
        (
            "GET /authz/public",
            vec![("X-Forwarded-Uri", "/admin".into())],
        ),
        // Sent twice.
        (
            "GET /authz",
            vec![
                ("X-Forwarded-Uri", "/public".into()),
                ("X-Forwarded-Uri", "/admin".into()),
            ],
        ),
        // An override header naming a request under another rule (the app
        // behind the proxy may honour it; nothing strips it there).
        (
            "GET /authz",
            [
                traefik("GET", "/orders"),
                vec![("X-HTTP-Method-Override", "POST".into())],
            ]
            .concat(),
        ),
        (
            "GET /authz",
            [
                traefik("GET", "/public"),
                vec![("X-Rewrite-URL", "/admin".into())],
            ]
            .concat(),
        ),
        (
            "GET /authz",
            [
                traefik("GET", "/public"),
                vec![("X_Original_URL", "/admin".into())],
            ]
            .concat(),
        ),
        (
            "GET /authz",
            [
                traefik("GET", "/public"),
                vec![("X_Auth_Subject", "root".into())],
            ]
            .concat(),
        ),
        (
            "GET /authz",
            vec![("X-Forwarded-Uri", "http://evil.example/admin".into())],
        ),
    ];
    for (line, mut headers) in cases {
        headers.push(bearer(&anyone));
        let r = a.ask(line, &headers).await;
        assert_eq!(r.status, 400, "{line} {headers:?}: {r:?}");
        assert_eq!(json(&r.body)["error"], "bad_request");
    }
    // Not the authz path at all.
    let elsewhere = a.ask("GET /orders", &traefik("GET", "/public")).await;
    assert_eq!(elsewhere.status, 404);
    // A gRPC-looking original request is still answered in plain HTTP: a
    // trailers-only gRPC refusal would be a 200, an allow to the proxy.
    let grpc = a
        .ask(
            "POST /authz",
            &[
                ("X-Forwarded-Uri", "/orders".into()),
                ("X-Forwarded-Method", "POST".into()),
                ("Content-Type", "application/grpc".into()),
                ("Content-Length", "0".into()),
            ],
        )
        .await;
    assert_eq!(grpc.status, 401, "{grpc:?}");
    assert_eq!(grpc.header("grpc-status"), None);
    a.app.shutdown().await;
}

type Headers = Vec<(&'static str, String)>;

fn headers(pairs: &[(&'static str, &str)]) -> Headers {
    pairs.iter().map(|(n, v)| (*n, v.to_string())).collect()
}

/// Issue 25, class 1: the host is read wherever it is named. Each of these
/// was decided by the listener's own Host before (the anonymous `/public`
/// rule: 200) while the app behind the proxy would read `admin.internal`.
#[tokio::test]
async fn the_host_is_read_wherever_it_is_named_and_must_agree() {
    let a = Authz::with(authz_yaml_with_host_rule).await;
    let refused = "bad_request";
    let cases: Vec<(Headers, u16)> = vec![
        // Named once, beside any target contract: the host rule applies.
        (
            headers(&[
                ("X-Original-URI", "/public/x"),
                ("X-Forwarded-Host", "admin.internal"),
            ]),
            401,
        ),
        (
            headers(&[
                ("X-Original-URL", "/public/x"),
                ("X-Forwarded-Host", "Admin.Internal."),
            ]),
            401,
        ),
        (
            headers(&[
                ("X-Original-URI", "/public/x"),
                ("X_Forwarded_Host", "admin.internal"),
            ]),
            401,
        ),
        (
            headers(&[
                ("X-Original-URI", "/public/x"),
                ("Forwarded", "for=203.0.113.7;host=admin.internal"),
            ]),
            401,
        ),
        (
            headers(&[
                ("X-Original-URI", "/public/x"),
                ("X-Host", "admin.internal"),
            ]),
            401,
        ),
        (
            headers(&[
                ("X-Original-URI", "/public/x"),
                ("X-Original-Host", "admin.internal:443"),
            ]),
            401,
        ),
        (
            headers(&[
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Forwarded-Host", "www.example, admin.internal"),
            ]),
            400,
        ),
        // Named twice, differently: no one host.
        (
            headers(&[
                ("X-Original-URL", "https://www.example/public/x"),
                ("X-Forwarded-Host", "admin.internal"),
            ]),
            400,
        ),
        (
            headers(&[
                ("X-Original-URL", "https://admin.internal/public/x"),
                ("X-Forwarded-Host", "www.example"),
            ]),
            400,
        ),
        (
            headers(&[
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Forwarded-Host", "www.example"),
                ("Forwarded", "host=admin.internal"),
            ]),
            400,
        ),
        (
            headers(&[
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Forwarded-Host", "www.example"),
                ("X_Forwarded_Host", "admin.internal"),
            ]),
            400,
        ),
        (
            headers(&[
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Forwarded-Host", "www.example"),
                ("X-Forwarded-Host", "admin.internal"),
            ]),
            400,
        ),
        (
            headers(&[
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Forwarded-Host", "www.example"),
                ("X-Host", "admin.internal"),
            ]),
            400,
        ),
        (
            headers(&[
                ("X-Original-URI", "/public/x"),
                ("Forwarded", "host=www.example, host=admin.internal"),
            ]),
            400,
        ),
        // Present but empty: not absent.
        (
            headers(&[("X-Forwarded-Uri", "/public/x"), ("X-Forwarded-Host", "")]),
            400,
        ),
        (
            headers(&[("X-Original-URI", "/public/x"), ("X-Forwarded-Host", "")]),
            400,
        ),
        (
            headers(&[("X-Forwarded-Uri", "/public/x"), ("Forwarded", "host=\"\"")]),
            400,
        ),
        (
            headers(&[
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Forwarded-Host", "www.example,"),
            ]),
            400,
        ),
        // Agreeing namings, and none: the listener's own Host.
        (
            headers(&[
                ("X-Original-URL", "https://www.example/public/x"),
                ("X-Forwarded-Host", "WWW.example:443"),
                ("Forwarded", "host=www.example;proto=https"),
                ("X-Forwarded-Proto", "https"),
            ]),
            200,
        ),
        (headers(&[("X-Original-URI", "/public/x")]), 200),
    ];
    for (mut sent, want) in cases {
        sent.push(("X-Original-Method", "GET".into()));
        let r = a.ask("GET /authz", &sent).await;
        assert_eq!(r.status, want, "{sent:?}: {r:?}");
        if want == 400 {
            assert_eq!(json(&r.body)["error"], refused, "{sent:?}");
        }
    }
    // The answer names the headers that disagree.
    let r = a
        .ask(
            "GET /authz",
            &headers(&[
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Forwarded-Host", "www.example"),
                ("Forwarded", "host=admin.internal"),
            ]),
        )
        .await;
    assert_eq!(
        json(&r.body)["error_description"],
        "bad request: the original host is named differently by x-forwarded-host and forwarded"
    );
    a.app.shutdown().await;
}

/// Issue 25, class 2: every spelling of every naming is read. Each of these
/// passed unexamined before (Traefik names `/public`: 200).
#[tokio::test]
async fn underscore_spellings_of_every_naming_are_read() {
    let a = Authz::start("").await;
    let anyone = a.token("mallory", "orders:read");
    let cases: Vec<(&'static str, &str)> = vec![
        ("X_Forwarded_Uri", "/admin"),
        ("X_Forwarded_Method", "DELETE"),
        ("X_Forwarded_Host", "admin.internal"),
        ("X_Forwarded_Proto", "http"),
        ("X_Forwarded_Scheme", "http"),
        ("X_Forwarded_Ssl", "off"),
        ("X_Original_URI", "/admin"),
        ("X_Original_Method", "DELETE"),
        ("X_Original_Host", "admin.internal"),
        ("X_Rewrite_URL", "/admin"),
        ("X_HTTP_Method", "DELETE"),
        ("X_Method_Override", "DELETE"),
        ("x-forwarded-ssl", "off"),
        ("Front-End-Https", "off"),
        ("X-Url-Scheme", "http"),
        ("X-Scheme", "http"),
        ("Forwarded", "proto=http"),
        ("X-HTTP-Method-Override", "DELETE"),
    ];
    for (name, value) in cases {
        let mut sent = traefik("GET", "/public/x");
        sent.push((name, value.to_string()));
        sent.push(bearer(&anyone));
        let r = a.ask("GET /authz", &sent).await;
        assert_eq!(r.status, 400, "{name}: {value}: {r:?}");
        let why = json(&r.body)["error_description"].to_string();
        assert!(why.contains(&name.to_ascii_lowercase()), "{name}: {why}");
    }
    // The same values agreeing with the proxy's change nothing.
    let mut sent = traefik("GET", "/public/x");
    sent.extend(headers(&[
        ("X_Forwarded_Uri", "/public/x"),
        ("X_Forwarded_Host", "api.example.com"),
        ("X-Forwarded-Ssl", "on"),
        (
            "Forwarded",
            "for=203.0.113.7;proto=https;host=api.example.com",
        ),
    ]));
    assert_eq!(a.ask("GET /authz", &sent).await.status, 200);
    a.app.shutdown().await;
}

/// Issue 25, items 3 and 4: HEAD is judged by the GET rule; an empty
/// `X-Original-URL` or `X-Original-Method` is a 400 on every face; and a
/// subrequest that names no method (nginx sends its auth_request as GET
/// whatever the original method) is decided only where no method matters.
#[tokio::test]
async fn head_empty_namings_and_unnamed_methods() {
    let a = Authz::start("").await;
    let reader = a.token("alice", "orders:read");
    // /orders has a GET rule and a POST rule: HEAD is a GET without the body.
    let head = a
        .ask(
            "GET /authz",
            &[traefik("HEAD", "/orders/7"), vec![bearer(&reader)]].concat(),
        )
        .await;
    assert_eq!(
        (head.status, head.header("x-auth-subject")),
        (200, Some("alice")),
        "{head:?}"
    );
    let head = a.ask("GET /authz", &traefik("HEAD", "/orders/7")).await;
    assert_eq!(head.status, 401, "{head:?}");
    let envoy_head = a.ask("HEAD /authz/orders/7", &[bearer(&reader)]).await;
    assert_eq!(envoy_head.status, 200, "{envoy_head:?}");
    // Empty namings.
    for sent in [
        headers(&[("X-Original-URL", ""), ("X-Original-Method", "GET")]),
        headers(&[
            ("X-Original-URL", "https://shop.example/public"),
            ("X-Original-Method", ""),
        ]),
        headers(&[("X-Original-URI", "/public"), ("X-Original-Method", " ")]),
        headers(&[("X-Forwarded-Uri", "/public"), ("X-Forwarded-Method", "")]),
    ] {
        let r = a.ask("GET /authz", &sent).await;
        assert_eq!(r.status, 400, "{sent:?}: {r:?}");
        let why = json(&r.body)["error_description"].to_string();
        assert!(why.contains("names an empty"), "{why}");
    }
    // No method named: where rules differ by method, a 400 asking for one...
    let unnamed = a
        .ask(
            "DELETE /authz",
            &[("X-Original-URI", "/orders/7".into()), bearer(&reader)],
        )
        .await;
    assert_eq!(unnamed.status, 400, "{unnamed:?}");
    assert!(json(&unnamed.body)["error_description"]
        .to_string()
        .contains("X-Forwarded-Method"));
    // ... elsewhere decided as any method would be.
    let root = a.token("root", "admin");
    let admin = a
        .ask(
            "GET /authz",
            &[("X-Original-URI", "/admin/x".into()), bearer(&root)],
        )
        .await;
    assert_eq!(admin.status, 200, "{admin:?}");
    let admin = a
        .ask("GET /authz", &[("X-Original-URI", "/admin/x".into())])
        .await;
    assert_eq!(admin.status, 401, "{admin:?}");
    a.app.shutdown().await;
}

#[tokio::test]
async fn audit_and_permissive_modes_answer_as_inbound_forwards() {
    let audit = Authz::start("mode: audit").await;
    let r = audit.ask("GET /authz", &traefik("GET", "/admin")).await;
    assert_eq!(
        (r.status, r.header("x-auth-subject")),
        (200, None),
        "audit allows, without identity"
    );
    assert_eq!(
        audit
            .metric("tokengate_auth_decisions_total{decision=\"audit\",reason=\"missing_token\"}")
            .await,
        1.0
    );
    audit.app.shutdown().await;
    let permissive = Authz::start("mode: permissive").await;
    let r = permissive
        .ask("GET /authz", &traefik("GET", "/orders"))
        .await;
    assert_eq!(r.status, 200);
    let bad = permissive
        .ask(
            "GET /authz",
            &[traefik("GET", "/orders"), vec![bearer("x.y.z")]].concat(),
        )
        .await;
    assert_eq!(bad.status, 401, "a presented token must be valid");
    permissive.app.shutdown().await;
}

/// The CheckRequest Envoy sends for `method path` with `headers`.
fn check(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([(":authority".to_string(), "api.example.com".to_string())])
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The CheckRequest Envoy sends with `encode_raw_headers: true`: each header
/// line in `header_map`, as sent, and no `headers` map.
fn check_raw(method: &str, path: &str, lines: &[(&str, &str)]) -> CheckRequest {
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    let mut request = check(method, path, &[]);
    let http = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    http.headers.clear();
    http.header_map = Some(HeaderMap {
        headers: lines
            .iter()
            .map(|(k, v)| HeaderValue {
                key: k.to_string(),
                raw_value: v.as_bytes().to_vec(),
                ..Default::default()
            })
            .collect(),
    });
    request
}

#[tokio::test]
async fn envoy_ext_authz_grpc_check() {
    let a = Authz::start("").await;
    let grpc = a.app.authz_grpc_addr.expect("grpc_listen");
    let mut client = AuthorizationClient::connect(format!("http://{grpc}"))
        .await
        .expect("connects");
    let reader = format!("Bearer {}", a.token("alice", "orders:read"));
    // Allowed: OK, the identity set (overwriting a caller's), nothing to remove.
    let ok = client
        .check(check(
            "GET",
            "/orders/7?x=1",
            &[("authorization", &reader), ("x-auth-subject", "root")],
        ))
        .await
        .expect("a Check answer")
        .into_inner();
    assert_eq!(ok.status.as_ref().map(|s| s.code), Some(0));
    let Some(HttpResponse::OkResponse(allowed)) = ok.http_response else {
        panic!("an OkHttpResponse: {ok:?}");
    };
    let set: Vec<(String, String)> = allowed
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref().map(|h| (h.key.clone(), h.value.clone())))
        .collect();
    assert_eq!(set, [("x-auth-subject".to_string(), "alice".to_string())]);
    assert!(allowed.headers_to_remove.is_empty());
    // Anonymous: OK, and the caller's identity header removed.
    let public = client
        .check(check("GET", "/public", &[("x-auth-subject", "root")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(public.status.as_ref().map(|s| s.code), Some(0));
    let Some(HttpResponse::OkResponse(allowed)) = public.http_response else {
        panic!("an OkHttpResponse: {public:?}");
    };
    assert_eq!(allowed.headers_to_remove, ["x-auth-subject"]);
    // Namings that agree with the described request change nothing.
    let agreeing = client
        .check(check(
            "HEAD",
            "/public",
            &[
                ("x-forwarded-host", "API.example.com:443"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "proto=https;host=api.example.com"),
                ("x-original-method", "HEAD"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        agreeing.status.as_ref().map(|s| s.code),
        Some(0),
        "{agreeing:?}"
    );
    let raw = client
        .check(check_raw("GET", "/orders/7", &[("authorization", &reader)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.status.as_ref().map(|s| s.code), Some(0), "{raw:?}");
    // Denied: UNAUTHENTICATED / PERMISSION_DENIED, with the HTTP answer Envoy sends.
    let denials = [
        (check("GET", "/orders", &[]), 16, 401, "invalid_request"),
        (
            check("POST", "/orders", &[("authorization", &reader)]),
            7,
            403,
            "insufficient_scope",
        ),
        (
            check("GET", "/admin", &[("authorization", &reader)]),
            7,
            403,
            "insufficient_scope",
        ),
        (
            check("GET", "/public/../admin", &[]),
            13,
            400,
            "bad_request",
        ),
        (check_raw("GET", "/orders", &[]), 16, 401, "invalid_request"),
    ];
    // No one original request: every naming in the headers map must agree
    // with the described request, in every spelling; an empty one names
    // nothing; Envoy's joined map cannot hide a second line (`/admin` and `x`
    // joined equal this path, while an app reading the first routes /admin);
    // with encode_raw_headers, each line is read as sent.
    let no_one_request = [
        check("GET", "/public", &[("x-forwarded-host", "admin.internal")]),
        check(
            "GET",
            "/public",
            &[("forwarded", "for=x;host=admin.internal")],
        ),
        check("GET", "/public", &[("x_forwarded_uri", "/admin")]),
        check(
            "GET",
            "/public",
            &[("x-original-url", "https://api.example.com/admin")],
        ),
        check("GET", "/public", &[("x-http-method-override", "DELETE")]),
        check(
            "GET",
            "/public",
            &[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "off")],
        ),
        check("GET", "/public", &[("x-original-url", "")]),
        check("GET", "/public", &[("x-original-method", "")]),
        check("GET", "/admin,x", &[("x-original-url", "/admin,x")]),
        check_raw(
            "GET",
            "/public",
            &[
                ("x-forwarded-host", "api.example.com"),
                ("x-forwarded-host", "admin.internal"),
            ],
        ),
        check_raw("GET", "/public", &[("x_forwarded_uri", "/admin")]),
    ]
    .map(|request| (request, 13, 400, "bad_request"));

    for (request, code, status, error) in denials.into_iter().chain(no_one_request) {
        let answer = client.check(request).await.unwrap().into_inner();
        assert_eq!(
            answer.status.as_ref().map(|s| s.code),
            Some(code),
            "{answer:?}"
        );
        let Some(HttpResponse::DeniedResponse(denied)) = answer.http_response else {
            panic!("a DeniedHttpResponse: {answer:?}");
        };
        assert_eq!(denied.status.map(|s| s.code), Some(status));
        assert_eq!(json(&denied.body)["error"], error);
        let challenge = denied
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "www-authenticate");
        assert_eq!(challenge.is_some(), status != 400, "{denied:?}");
    }
    let series = "tokengate_requests_total{direction=\"authz\",route=\"/orders\",status=\"401\"}";
    assert_eq!(
        a.metric(series).await,
        2.0,
        "the two token-less /orders checks"
    );
    a.app.shutdown().await;
}

#[tokio::test]
async fn a_reload_swaps_the_authz_rules_and_keeps_its_listeners() {
    let mut a = Authz::start("").await;
    let asked = || traefik("GET", "/orders/7");
    assert_eq!(a.ask("GET /authz", &asked()).await.status, 401);
    let anonymous = Yaml::parse(&authz_yaml(&a.issuer.issuer, ""))
        .set(
            "authz.rules[2]",
            "{ path: /orders, methods: [GET], allow: anonymous }",
        )
        .text();
    let config = tokengate::config::Config::from_yaml(&anonymous, "reload", &|_| None).unwrap();
    a.app.reload(config).await.expect("reloads");
    assert_eq!(a.ask("GET /authz", &asked()).await.status, 200);
    // Its listeners are fixed for the process: a changed port needs a restart.
    // The new port is one held here, so nothing else could be bound to it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let moved = Yaml::parse(&anonymous)
        .set("authz.grpc_listen", &held.local_addr().unwrap().to_string())
        .text();
    let config = tokengate::config::Config::from_yaml(&moved, "reload", &|_| None).unwrap();
    let refused = a.app.reload(config).await.expect_err("a restart is needed");
    assert!(refused.to_string().contains("grpc_listen"), "{refused}");
    assert_eq!(
        a.ask("GET /authz", &asked()).await.status,
        200,
        "the running config serves on"
    );
    a.app.shutdown().await;
}

/// The access log (of the binary, as run): one line per answer, naming the
/// authz direction, the rule, and the original request's method and path,
/// never its query or token; no `upstream_status`, since nothing was forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_gets_an_access_log_line_for_the_original_request() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let config = temp_file("authz.yaml", &authz_yaml(&issuer.issuer, ""));
    let mut command = std::process::Command::new(process::BIN);
    command
        .args(["--log-format", "json", "run", "--config"])
        .arg(config.to_str().unwrap())
        .env_remove("RUST_LOG");
    let running = process::Running::spawn(command);
    let listening = running.wait_for("authz listening");
    let addr = process::field(&listening, "authz").parse().unwrap();
    ready_at(&running.admin).await;
    let token = issuer.mint(json!({ "sub": "alice", "scope": "orders:read" }));
    let ask = |uri: &'static str, token: Option<&str>| {
        let mut headers = traefik("GET", uri);
        headers.extend(token.map(bearer));
        async move {
            raw_request(addr, "GET /authz", &addr.to_string(), &headers)
                .await
                .status
        }
    };
    assert_eq!(ask("/orders/7?secret=hush", Some(&token)).await, 200);
    assert_eq!(ask("/admin", None).await, 401);
    let (running, lines) = tokio::task::spawn_blocking(move || {
        let lines = [
            running.wait_for("tokengate::access"),
            running.wait_for("tokengate::access"),
        ];
        (running, lines)
    })
    .await
    .unwrap();
    let entry =
        |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["fields"].clone();
    let (allowed, denied) = (entry(&lines[0]), entry(&lines[1]));
    assert_eq!(allowed["direction"], "authz");
    assert_eq!(allowed["route"], "/orders");
    assert_eq!(
        (allowed["method"].as_str(), allowed["path"].as_str()),
        (Some("GET"), Some("/orders/7"))
    );
    assert_eq!(
        (allowed["status"].as_u64(), allowed["reason"].as_str()),
        (Some(200), Some("valid_token"))
    );
    assert!(
        allowed.get("upstream_status").is_none_or(|v| v.is_null()),
        "{allowed}"
    );
    assert_eq!(
        (denied["path"].as_str(), denied["status"].as_u64()),
        (Some("/admin"), Some(401))
    );
    assert_eq!(denied["reason"], "missing_token");
    for line in &lines {
        assert!(!line.contains(&token) && !line.contains("hush"), "{line}");
    }
    let code = tokio::task::spawn_blocking(move || running.stop())
        .await
        .unwrap();
    assert_eq!(code, 0);
}

/// Issue 29: a DPoP-bound token through forward-auth. The proof travels
/// with the request the fronting proxy asks about, and its `htu` is the
/// original URL as the proxy names it (`X-Forwarded-Proto` https, the
/// forwarded host and URI): a proof for that URL passes, one for the
/// listener's own `http` URL, or one spent before, does not.
#[tokio::test]
async fn forward_auth_checks_a_dpop_proof_against_the_original_url() {
    let a = Authz::start("").await;
    let client = DpopClient::generate();
    let token = a
        .issuer
        .mint(json!({ "sub": "alice", "scope": "orders:read", "cnf": { "jkt": client.jkt() } }));
    let asked = |proof: &str| {
        let mut h = traefik("GET", "/orders/7?x=1");
        h.push(("Authorization", format!("DPoP {token}")));
        h.push(("DPoP", proof.to_string()));
        h
    };
    let htu = "https://api.example.com/orders/7";
    let good = client.proof("GET", htu, &token, json!({}));
    let ok = a.ask("GET /authz", &asked(&good)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("x-auth-subject"), Some("alice"));
    let refused = [
        good.clone(),
        client.proof("GET", "http://api.example.com/orders/7", &token, json!({})),
        client.proof(
            "GET",
            &format!("http://{}/authz", a.addr),
            &token,
            json!({}),
        ),
    ];
    for proof in refused {
        let no = a.ask("GET /authz", &asked(&proof)).await;
        assert_eq!(no.status, 401, "{no:?}");
        let challenge = no.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_dpop_proof\""),
            "{challenge}"
        );
    }

    // The same through Envoy's gRPC Check: the URL is Envoy's scheme and
    // host with the path, and the proof is spent there too.
    let grpc = a.app.authz_grpc_addr.expect("grpc_listen");
    let mut envoy = AuthorizationClient::connect(format!("http://{grpc}"))
        .await
        .expect("connects");
    let dpop = format!("DPoP {token}");
    let ask = |proof: String| {
        check(
            "GET",
            "/orders/7?x=1",
            &[("authorization", &dpop), ("dpop", &proof)],
        )
    };
    let good = client.proof("GET", htu, &token, json!({}));
    let ok = envoy.check(ask(good.clone())).await.unwrap().into_inner();
    assert_eq!(ok.status.as_ref().map(|s| s.code), Some(0), "{ok:?}");
    let refused = [
        good,
        client.proof("GET", "http://api.example.com/orders/7", &token, json!({})),
        client.proof("DELETE", htu, &token, json!({})),
    ];
    for proof in refused {
        let answer = envoy.check(ask(proof)).await.unwrap().into_inner();
        assert_eq!(
            answer.status.as_ref().map(|s| s.code),
            Some(16),
            "{answer:?}"
        );
        let Some(HttpResponse::DeniedResponse(denied)) = answer.http_response else {
            panic!("a DeniedHttpResponse: {answer:?}");
        };
        assert_eq!(denied.status.map(|s| s.code), Some(401));
        let challenge = denied
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "www-authenticate")
            .map(|h| h.value.clone())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("invalid_dpop_proof"),
            "{challenge}"
        );
    }
    a.app.shutdown().await;
}
