//! Introspection (RFC 7662) against an endpoint this test scripts, for what a
//! real provider will not do on demand: answer garbage, fail, stall past the
//! timeout, and show the credentials it was sent. (Interop with a real
//! provider's opaque tokens, revocation and expiry: tests/interop.rs.)

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokengate::demo::Echo;

/// How the scripted endpoint answers a token it does not know.
#[derive(Clone, Debug)]
enum Mode {
    /// `{"active": false}`.
    Inactive,
    /// 200 with this body, whatever the token.
    Body(&'static str),
    Status(u16),
    /// Answers `{"active": false}` after this long.
    Slow(Duration),
}

#[derive(Default)]
struct Seen {
    /// Each call: the form and the `Authorization` header.
    calls: Vec<(HashMap<String, String>, Option<String>)>,
}

/// The scripted endpoint: known tokens get their answers (after `delay`),
/// others what `mode` says.
struct Endpoint {
    addr: SocketAddr,
    answers: Mutex<HashMap<String, serde_json::Value>>,
    mode: Mutex<Mode>,
    delay: Mutex<Duration>,
    seen: Mutex<Seen>,
}

impl Endpoint {
    async fn start() -> Arc<Endpoint> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Arc::new(Endpoint {
            addr: listener.local_addr().unwrap(),
            answers: Mutex::default(),
            mode: Mutex::new(Mode::Inactive),
            delay: Mutex::new(Duration::ZERO),
            seen: Mutex::default(),
        });
        let serving = endpoint.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let endpoint = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let endpoint = endpoint.clone();
                        async move { Ok::<_, std::convert::Infallible>(endpoint.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service)
                        .await;
                });
            }
        });
        endpoint
    }

    fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    fn knows(&self, token: &str, answer: serde_json::Value) {
        self.answers.lock().unwrap().insert(token.into(), answer);
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Calls made for `token` so far.
    fn calls_for(&self, token: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.calls
            .iter()
            .filter(|(form, _)| form.get("token").map(String::as_str) == Some(token))
            .count()
    }

    fn last_call(&self) -> (HashMap<String, String>, Option<String>) {
        self.seen.lock().unwrap().calls.last().cloned().unwrap()
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let authorization = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        let token = form.get("token").cloned().unwrap_or_default();
        self.seen.lock().unwrap().calls.push((form, authorization));
        let known = self.answers.lock().unwrap().get(&token).cloned();
        let mode = self.mode.lock().unwrap().clone();
        let delay = *self.delay.lock().unwrap();
        let (status, body) = match (known, mode) {
            (Some(answer), _) => {
                tokio::time::sleep(delay).await;
                (200, answer.to_string())
            }
            (None, Mode::Inactive) => (200, r#"{"active":false}"#.to_string()),
            (None, Mode::Body(body)) => (200, body.to_string()),
            (None, Mode::Status(status)) => (status, r#"{"error":"server_error"}"#.to_string()),
            (None, Mode::Slow(wait)) => {
                tokio::time::sleep(wait).await;
                (200, r#"{"active":false}"#.to_string())
            }
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        resp
    }
}

const ISSUER: &str = "https://opaque.example";

/// A guard in front of `echo` whose one issuer introspects at `endpoint`;
/// `introspection` is YAML added to its `introspection` block.
async fn guard(endpoint: &Endpoint, echo: &Echo, introspection: &str) -> (tokengate::App, String) {
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - issuer: "{ISSUER}"
      audiences: [api]
      introspection:
        endpoint: "{url}"
        client_id: rs
        timeout: 500ms
{introspection}
  rules:
    - {{ path: /orders, methods: [GET], scopes: ["orders:read"] }}
  forward:
    claims_to_headers: {{ sub: x-auth-subject, "/ext/tenant": x-auth-tenant }}
"#,
        echo = echo.addr,
        url = endpoint.url(),
        introspection = indent(introspection, 8),
    );
    let app = start_yaml(&yaml).await;
    wait_ready(&app).await;
    let base = format!("http://{}", app.inbound_addr.unwrap());
    (app, base)
}

fn active(scope: &str) -> serde_json::Value {
    serde_json::json!({
        "active": true,
        "iss": ISSUER,
        "aud": "api",
        "sub": "svc-a",
        "scope": scope,
        "exp": tokengate_now() + 300,
        "ext": { "tenant": "t-1" },
    })
}

fn tokengate_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn an_endpoint_that_fails_is_a_503_and_nothing_is_forwarded() {
    let endpoint = Endpoint::start().await;
    let echo = Echo::start().await.unwrap();
    let (app, base) = guard(&endpoint, &echo, "client_secret: s").await;
    let cases = [
        ("not JSON", Mode::Body("<html>oops</html>")),
        ("no active member", Mode::Body(r#"{"scope":"orders:read"}"#)),
        ("active not a boolean", Mode::Body(r#"{"active":"true"}"#)),
        ("a server error", Mode::Status(500)),
        ("our credentials refused", Mode::Status(401)),
        (
            "slower than the timeout",
            Mode::Slow(Duration::from_secs(3)),
        ),
    ];
    for (i, (label, mode)) in cases.into_iter().enumerate() {
        endpoint.set_mode(mode);
        let token = format!("opaque-{i}");
        let started = std::time::Instant::now();
        let (status, _, body) = get(&format!("{base}/orders/1"), Some(&token)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{label}: {body}");
        assert_eq!(json(&body)["error"], "introspection_unavailable", "{label}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{label}: bounded by the timeout"
        );
        // Not cached: the next request asks again.
        get(&format!("{base}/orders/1"), Some(&token)).await;
        assert_eq!(
            endpoint.calls_for(&token),
            2,
            "{label}: a failure is not cached"
        );
    }
    assert_eq!(echo.hits(), 0, "nothing forwarded");
    let metrics = get(&format!("http://{}/metrics", app.admin_addr), None)
        .await
        .2;
    let errors = metric_value(
        &metrics,
        &format!("tokengate_introspection_total{{issuer=\"{ISSUER}\",result=\"error\"}}"),
    );
    assert_eq!(errors, 12.0, "{metrics}");
    let (status, _, body) = get(&format!("http://{}/readyz", app.admin_addr), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("degraded") && body.contains(ISSUER), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn one_call_answers_every_request_for_a_token_and_rules_read_the_cached_answer() {
    let endpoint = Endpoint::start().await;
    let echo = Echo::start().await.unwrap();
    let (app, base) = guard(&endpoint, &echo, "client_secret: s").await;
    endpoint.knows("shared", active("orders:read"));
    *endpoint.delay.lock().unwrap() = Duration::from_millis(100);
    let requests = (0..16).map(|_| {
        let url = format!("{base}/orders/1");
        tokio::spawn(async move { get(&url, Some("shared")).await.0 })
    });
    for status in futures_join(requests).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(endpoint.calls_for("shared"), 1, "single flight");
    // Identity headers from the answer, a JSON pointer included.
    let seen = echo.last_headers().unwrap();
    assert_eq!(seen["x-auth-subject"], "svc-a");
    assert_eq!(seen["x-auth-tenant"], "t-1");
    // Another token without the scope: refused, from the answer and then the cache.
    endpoint.knows("narrow", active("orders:write"));
    for _ in 0..2 {
        let (status, headers, _) = get(&format!("{base}/orders/1"), Some("narrow")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"));
    }
    assert_eq!(endpoint.calls_for("narrow"), 1);
    // An answer for another issuer or audience is refused like such a JWT.
    let mut other = active("orders:read");
    other["iss"] = "https://elsewhere".into();
    endpoint.knows("other-issuer", other);
    let mut other = active("orders:read");
    other["aud"] = serde_json::json!(["not-api"]);
    endpoint.knows("other-audience", other);
    for (token, why) in [
        ("other-issuer", "is not trusted"),
        ("other-audience", "audience does not match"),
    ] {
        let (status, _, body) = get(&format!("{base}/orders/1"), Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert!(body.contains(why), "{token}: {body}");
    }
    app.shutdown().await;
}

/// `futures::future::join_all` without the crate: awaits each in turn (they
/// run concurrently as spawned tasks).
async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_client_authenticates_as_configured_and_the_token_is_hinted() {
    let endpoint = Endpoint::start().await;
    let echo = Echo::start().await.unwrap();
    let (key, pem) = rsa_pkcs8();
    drop(key);
    let pem = temp_file("introspect.pem", &pem);
    let cases = [
        ("client_secret: s3cret", "basic"),
        (
            "client_auth: client_secret_post\nclient_secret: s3cret",
            "post",
        ),
        (
            &*format!(
                "client_auth: private_key_jwt\nprivate_key_file: {}",
                pem.display()
            ),
            "jwt",
        ),
    ];
    for (i, (auth, kind)) in cases.into_iter().enumerate() {
        let (app, base) = guard(&endpoint, &echo, auth).await;
        let token = format!("who-asks-{i}");
        get(&format!("{base}/orders/1"), Some(&token)).await;
        let (form, authorization) = endpoint.last_call();
        assert_eq!(form["token"], token);
        assert_eq!(form["token_type_hint"], "access_token");
        match kind {
            "basic" => {
                // base64("rs:s3cret")
                assert_eq!(authorization.as_deref(), Some("Basic cnM6czNjcmV0"));
                assert!(!form.contains_key("client_secret"));
            }
            "post" => {
                assert_eq!(authorization, None);
                assert_eq!(
                    (form["client_id"].as_str(), form["client_secret"].as_str()),
                    ("rs", "s3cret")
                );
            }
            _ => {
                assert_eq!(authorization, None);
                assert_eq!(
                    form["client_assertion_type"],
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                );
                let claims = tokengate_claims(&form["client_assertion"]);
                assert_eq!(claims["iss"], "rs");
                assert_eq!(claims["aud"], endpoint.url());
            }
        }
        app.shutdown().await;
    }
}

/// The payload of a JWT, unverified.
fn tokengate_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_guard_is_not_ready_until_its_introspection_endpoint_answers() {
    let endpoint = Endpoint::start().await;
    endpoint.set_mode(Mode::Status(401));
    let echo = Echo::start().await.unwrap();
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - issuer: "{ISSUER}"
      audiences: [api]
      introspection: {{ endpoint: "{url}", client_id: rs, client_secret: wrong }}
  rules:
    - {{ path: /orders, scopes: ["orders:read"] }}
"#,
        echo = echo.addr,
        url = endpoint.url(),
    );
    let app = start_yaml(&yaml).await;
    let admin = format!("http://{}", app.admin_addr);
    let said = readyz_saying(&admin, "refused tokengate's client credentials (401)").await;
    assert!(
        said.contains("refused tokengate's client credentials (401)") && said.contains(ISSUER),
        "{said}"
    );
    // A 200 that is no introspection answer (a wrong URL's HTML page) is not
    // an answer either.
    endpoint.set_mode(Mode::Body("<html>login</html>"));
    let said = readyz_saying(&admin, "not a JSON object with a boolean").await;
    assert!(said.contains("not a JSON object with a boolean"), "{said}");
    let (status, _, said) = get(&format!("{admin}/readyz"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{said}");
    endpoint.set_mode(Mode::Inactive);
    ready_at(&admin).await;
    app.shutdown().await;
}

/// `tokengate verify` on an opaque token: the endpoint's answer with what
/// could be a secret elided, the checks, what the cache would do, and the
/// proxy's decision and exit code (0 forwarded, 1 not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_explains_an_opaque_token_by_its_introspection_answer() {
    let endpoint = Endpoint::start().await;
    let mut answer = active("orders:read");
    answer["refresh_token"] = "rt-do-not-print".into();
    endpoint.knows("opaque-good", answer);
    let yaml = format!(
        r#"inbound:
  listen: "127.0.0.1:0"
  upstream: "http://127.0.0.1:9"
  issuers:
    - issuer: "{ISSUER}"
      audiences: [api]
      introspection: {{ endpoint: "{url}", client_id: rs, client_secret: s, max_ttl: 30s }}
  rules:
    - {{ path: /orders, methods: [GET], scopes: ["orders:read"] }}
"#,
        url = endpoint.url()
    );
    let config = temp_file("introspect-verify.yaml", &yaml);
    let verify = |token: &'static str| {
        let config = config.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokengate"))
                .args(["verify", "--config"])
                .arg(config)
                .args(["--token", token, "--path", "/orders/1"])
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
    };

    let (code, stdout) = verify("opaque-good").await.unwrap();
    assert_eq!(code, Some(0), "{stdout}");
    for line in [
        "not a JWT: asked the issuer's introspection endpoint",
        "\"sub\":\"svc-a\"",
        "\"refresh_token\":\"…\"",
        "active: cached 30s (max_ttl; the token expires in",
        "decision: 200 forward",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
    assert!(!stdout.contains("rt-do-not-print"), "{stdout}");
    assert_eq!(endpoint.calls_for("opaque-good"), 1);

    let (code, stdout) = verify("opaque-unknown").await.unwrap();
    assert_eq!(code, Some(1), "{stdout}");
    for line in [
        "\"active\":false",
        "refused (inactive): remembered 10s (negative_ttl)",
        "decision: 401 invalid_token",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
}

/// `tokens: all`: a JWT naming the issuer goes to its endpoint too, whose
/// answer (not the signature, which no key here could check) is the verdict;
/// by default the same JWT is never sent there.
#[tokio::test]
async fn with_tokens_all_a_jwt_of_the_issuer_is_introspected() {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let jwt = format!(
        "{}.{}.c2ln",
        b64(serde_json::json!({ "alg": "RS256", "kid": "k" })),
        b64(serde_json::json!({ "iss": ISSUER, "aud": "api", "exp": tokengate_now() + 300 })),
    );
    let endpoint = Endpoint::start().await;
    endpoint.knows(&jwt, active("orders:read"));
    let echo = Echo::start().await.unwrap();

    let (app, base) = guard(&endpoint, &echo, "client_secret: s").await;
    let (status, _, body) = get(&format!("{base}/orders/1"), Some(&jwt)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        endpoint.calls_for(&jwt),
        0,
        "a JWT is verified, not introspected"
    );
    app.shutdown().await;

    let (app, base) = guard(&endpoint, &echo, "client_secret: s\ntokens: all").await;
    for _ in 0..2 {
        let (status, _, body) = get(&format!("{base}/orders/1"), Some(&jwt)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(endpoint.calls_for(&jwt), 1, "asked once, then cached");
    assert_eq!(echo.last_headers().unwrap()["x-auth-subject"], "svc-a");
    // A JWT naming another issuer is not sent there.
    let elsewhere = jwt.replacen(
        jwt.split('.').nth(1).unwrap(),
        &b64(serde_json::json!({ "iss": "https://elsewhere", "aud": "api" })),
        1,
    );
    let (status, _, _) = get(&format!("{base}/orders/1"), Some(&elsewhere)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(endpoint.calls_for(&elsewhere), 0);
    app.shutdown().await;
}
