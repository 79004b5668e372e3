//! Interop with a real, widely used OpenID provider nobody here wrote: the npm
//! package `oidc-provider` (tests/interop/provider.js), issuing JWT access tokens
//! via client_credentials with resource indicators. The test installs the pinned
//! package itself (`npm ci` from tests/interop/package-lock.json) when it is
//! missing, so `cargo test --release` runs it on a fresh clone; only
//! `TOKENGATE_SKIP_INTEROP=1` skips it, and never under CI.

mod support;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::dpop::DpopClient;
use support::*;
use tokengate::demo::{DevIssuer, Echo, KeyKind, SigningKey};

/// The provider process; killed (by its pid, via `Child`) when dropped.
struct Provider {
    child: Child,
    issuer: String,
    /// Its HTTPS port, when started with `TLS_CERT_FILE`.
    tls_port: Option<u64>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Set to skip the interop tests on a machine without node. Outside CI a skip
/// says SKIPPED loudly; under CI (the `CI` environment variable) it fails.
const OPT_OUT: &str = "TOKENGATE_SKIP_INTEROP";

/// Installs the provider's pinned npm packages (`npm ci` from the lockfile) when
/// they are missing, once per test binary; the error says what failed.
fn install_provider(dir: &Path) -> Result<(), String> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            if dir.join("node_modules/oidc-provider/package.json").exists() {
                return Ok(());
            }
            eprintln!(
                "interop: installing oidc-provider (npm ci in {})",
                dir.display()
            );
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| {
                    format!(
                        "cannot run npm ({e}); install node and npm, or set {OPT_OUT}=1 to skip"
                    )
                })?;
            if !out.status.success() {
                return Err(format!(
                    "npm ci failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(())
        })
        .clone()
}

/// Starts the provider, installing its packages first when missing. `None` only
/// when the opt-out variable is set outside CI; every other obstacle fails the test.
fn start_provider(env: &[(&str, String)]) -> Option<Provider> {
    if std::env::var_os(OPT_OUT).is_some() {
        if std::env::var_os("CI").is_some() {
            panic!("{OPT_OUT} is set, but under CI the interop tests must run");
        }
        eprintln!("\n*** SKIPPED interop test against oidc-provider: {OPT_OUT} is set ***\n");
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    if let Err(why) = install_provider(&dir) {
        panic!("interop test cannot run: {why}");
    }
    let mut child = Command::new("node")
        .arg(dir.join("provider.js"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        // Generous: node starting two providers at once on a loaded 2-core CI
        // machine once took over 30 s.
        .recv_timeout(Duration::from_secs(90))
        .expect("provider printed its address");
    let info: serde_json::Value =
        serde_json::from_str(&line).expect("provider start-up line is JSON");
    let issuer = info["issuer"].as_str().expect("issuer").to_string();
    let tls_port = info["tls_port"].as_u64();
    Some(Provider {
        child,
        issuer,
        tls_port,
    })
}

async fn post_form(
    url: &str,
    basic: Option<(&str, &str)>,
    form: &str,
) -> (StatusCode, serde_json::Value) {
    post_form_with(url, basic, form, &[]).await
}

/// [`post_form`] with more headers (a `DPoP` proof).
async fn post_form_with(
    url: &str,
    basic: Option<(&str, &str)>,
    form: &str,
    headers: &[(&str, String)],
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    if let Some((id, secret)) = basic {
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req = req.header("authorization", format!("Basic {cred}"));
    }
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(req.body(Full::new(Bytes::from(form.to_string()))).unwrap()),
    )
    .await
    .expect("token request timed out")
    .expect("token request failed");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A client_credentials access token from the provider (client_secret_basic).
async fn token(p: &Provider, client: (&str, &str), resource: &str, scope: &str) -> String {
    let form = format!(
        "grant_type=client_credentials&resource={resource}&scope={}",
        scope.replace(' ', "+")
    );
    let (status, body) = post_form(&format!("{}/token", p.issuer), Some(client), &form).await;
    assert_eq!(status, StatusCode::OK, "token request: {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// A JWT's claims, unverified.
fn claims_of(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn tokengate_accepts_and_rejects_real_oidc_provider_tokens() {
    let Some(provider) = start_provider(&[("TOKEN_TTL", "300".into())]) else {
        return;
    };
    let echo = Echo::start().await.unwrap();
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - issuer: "{issuer}"
      discovery: true
      audiences: ["urn:orders"]
      algorithms: [RS256]
      require_typ: at+jwt
  rules:
    - {{ path: /orders, methods: [GET], scopes: ["orders:read"] }}
    - {{ path: /orders, methods: [POST], scopes: ["orders:write"] }}
  forward:
    claims_to_headers: {{ sub: x-auth-subject, client_id: x-auth-client-id }}
"#,
        echo = echo.addr,
        issuer = provider.issuer
    );
    let app = start_yaml(&yaml).await;
    let base = format!("http://{}", app.inbound_addr.unwrap());
    let admin = format!("http://{}", app.admin_addr);
    assert!(
        eventually(Duration::from_millis(10_000), || async {
            get(&format!("{admin}/readyz"), None).await.0 == StatusCode::OK
        })
        .await,
        "JWKS loaded via discovery"
    );

    // A real token with the right audience and scopes: accepted, identity forwarded.
    let writer = token(
        &provider,
        ("svc-basic", "basic-secret"),
        "urn:orders",
        "orders:read orders:write",
    )
    .await;
    assert_eq!(kid_of(&writer), "key-1");
    let (status, _, body) = get(&format!("{base}/orders/1"), Some(&writer)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = echo.last_headers().unwrap();
    assert_eq!(seen["x-auth-subject"], "svc-basic");
    assert_eq!(seen["x-auth-client-id"], "svc-basic");
    let (status, _, _) = send(
        Method::POST,
        &format!("{base}/orders"),
        &[("authorization", format!("Bearer {writer}"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // client_secret_post works the same way.
    let (status, body) = post_form(
        &format!("{}/token", provider.issuer),
        None,
        "grant_type=client_credentials&resource=urn:orders&scope=orders:read&client_id=svc-post&client_secret=post-secret",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let posted = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        get(&format!("{base}/orders/1"), Some(&posted)).await.0,
        StatusCode::OK
    );

    // Wrong audience: a real token for another resource server.
    let other = token(
        &provider,
        ("svc-basic", "basic-secret"),
        "urn:other",
        "other:read",
    )
    .await;
    let (status, _, body) = get(&format!("{base}/orders/1"), Some(&other)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("audience does not match"), "{body}");

    // Missing scope: the read-only client cannot write.
    let reader = token(
        &provider,
        ("svc-readonly", "ro-secret"),
        "urn:orders",
        "orders:read",
    )
    .await;
    assert_eq!(
        get(&format!("{base}/orders/1"), Some(&reader)).await.0,
        StatusCode::OK
    );
    let (status, headers, _) = send(
        Method::POST,
        &format!("{base}/orders"),
        &[("authorization", format!("Bearer {reader}"))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));

    // The provider rotates its signing key and publishes only the new one.
    let (status, body) = post_form(&format!("{}/__rotate", provider.issuer), None, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rotated = token(
        &provider,
        ("svc-basic", "basic-secret"),
        "urn:orders",
        "orders:read",
    )
    .await;
    assert_eq!(kid_of(&rotated), "key-2");
    let (status, _, body) = get(&format!("{base}/orders/1"), Some(&rotated)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "rotated key accepted without restart: {body}"
    );
    // key-1 left the JWKS: its tokens stop verifying, cached or not.
    assert_eq!(
        get(&format!("{base}/orders/1"), Some(&writer)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&format!("{base}/orders/1"), Some(&reader)).await.0,
        StatusCode::UNAUTHORIZED
    );

    app.shutdown().await;
    drop(provider);
}

/// An RSA key for the `svc-pkjwt` client: PKCS#8 PEM for tokengate, public JWKS for the provider.
fn pkjwt_key() -> (tempfile::TempPath, tempfile::TempPath) {
    use aws_lc_rs::signature::KeyPair;
    let (pair, pem) = rsa_pkcs8();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let public = pair.public_key();
    let jwks = serde_json::json!({ "keys": [{
        "kty": "RSA", "kid": "orders-pk", "alg": "RS256", "use": "sig",
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    }]});
    (
        temp_file("pkjwt.pem", &pem),
        temp_file("pkjwt.jwks", &jwks.to_string()),
    )
}

/// App → tokengate outbound (client_secret_basic, client_secret_post and
/// private_key_jwt clients of the real provider, 4-second tokens) → tokengate
/// inbound (verifying them against the provider's JWKS, no leeway) → echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_obtains_and_renews_real_provider_tokens_through_an_inbound_guard() {
    let (key, jwks) = pkjwt_key();
    let Some(provider) = start_provider(&[
        ("TOKEN_TTL", "4".into()),
        ("PKJWT_JWKS_FILE", jwks.display().to_string()),
    ]) else {
        return;
    };
    let echo = Echo::start().await.unwrap();
    let guard_yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - {{ issuer: "{issuer}", discovery: true, audiences: ["urn:orders"], algorithms: [RS256], require_typ: at+jwt, leeway: 0s }}
  rules:
    - {{ path: /orders, methods: [GET], scopes: ["orders:read"] }}
  forward:
    claims_to_headers: {{ client_id: x-auth-client-id }}
"#,
        echo = echo.addr,
        issuer = provider.issuer
    );
    let guard = start_yaml(&guard_yaml).await;
    let guard_url = format!("http://{}", guard.inbound_addr.unwrap());
    let common = format!(
        "kind: client_credentials, token_url: \"{}/token\", resource: \"urn:orders\", scopes: [\"orders:read\"], renew_before: 25%",
        provider.issuer
    );
    let out_yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
outbound:
  listen: "127.0.0.1:0"
  routes:
    - {{ host: basic.test, upstream: "{guard_url}", token: basic }}
    - {{ host: post.test, upstream: "{guard_url}", token: post }}
    - {{ host: pkjwt.test, upstream: "{guard_url}", token: pkjwt }}
  tokens:
    basic: {{ {common}, client_id: svc-basic, client_secret: basic-secret }}
    post: {{ {common}, client_id: svc-post, client_secret: post-secret, client_auth: client_secret_post }}
    pkjwt: {{ {common}, client_id: svc-pkjwt, client_auth: private_key_jwt, private_key_file: "{key}", key_id: orders-pk }}
"#,
        key = key.display()
    );
    let out = start_yaml(&out_yaml).await;
    let base = format!("http://{}", out.outbound_addr.unwrap());
    let admin = format!("http://{}", out.admin_addr);
    let guard_admin = format!("http://{}", guard.admin_addr);
    eventually(Duration::from_millis(10_000), || async {
        get(&format!("{admin}/readyz"), None).await.0 == StatusCode::OK
            && get(&format!("{guard_admin}/readyz"), None).await.0 == StatusCode::OK
    })
    .await;
    let started = std::time::Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(10) {
        for (host, client) in [
            ("basic.test", "svc-basic"),
            ("post.test", "svc-post"),
            ("pkjwt.test", "svc-pkjwt"),
        ] {
            let (status, _, body) = send(
                Method::GET,
                &format!("{base}/orders/1"),
                &[("host", host.to_string())],
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{host}: {body}");
            assert_eq!(echo.last_headers().unwrap()["x-auth-client-id"], client);
        }
        requests += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(&format!("{admin}/metrics"), None).await.2;
    for token in ["basic", "post", "pkjwt"] {
        let fetched = metric_value(
            &metrics,
            &format!("tokengate_token_refresh_total{{result=\"ok\",token=\"{token}\"}}"),
        );
        // 10 seconds of 4-second tokens renewed at 75%: the first token and at least two renewals.
        println!("interop renewal: token {token}: {fetched} fetches of 4-second tokens in 10 s, {requests} requests");
        assert!(fetched >= 3.0, "{token}: {fetched} fetches");
        assert!(
            fetched <= 8.0,
            "{token}: {fetched} fetches for {requests} requests"
        );
        assert_eq!(
            metric_value(
                &metrics,
                &format!("tokengate_token_waits_total{{token=\"{token}\"}}")
            ),
            0.0
        );
    }
    out.shutdown().await;
    guard.shutdown().await;
    drop(provider);
}

/// An opaque access token from the provider (client_secret_basic).
async fn opaque_token(p: &Provider, client: (&str, &str), resource: &str, scope: &str) -> String {
    let token = token(p, client, resource, scope).await;
    assert!(!token.contains('.'), "an opaque token, not a JWT: {token}");
    token
}

/// The provider's opaque tokens, judged by its introspection endpoint (RFC
/// 7662) through tokengate's cache: active → forwarded with identity; a
/// missing scope → 403, from the cached answer too; revoked (RFC 7009) → 401
/// once the cached answer's `max_ttl` is over; expired → 401, the cache never
/// outliving `exp`; the endpoint stopped → 503 and nothing forwarded, while a
/// cached answer serves until it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_provider_tokens_are_introspected_through_a_scope_aware_cache() {
    let Some(provider) = start_provider(&[("TOKEN_TTL", "300".into())]) else {
        return;
    };
    let echo = Echo::start().await.unwrap();
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - issuer: "{issuer}"
      discovery: true
      audiences: ["urn:opaque", "urn:opaque-short"]
      introspection:
        client_id: rs-introspector
        client_secret: introspect-secret
        max_ttl: 3s
        negative_ttl: 1s
  rules:
    - {{ path: /orders, methods: [GET], scopes: ["orders:read"] }}
    - {{ path: /orders, methods: [POST], scopes: ["orders:write"] }}
  forward:
    claims_to_headers: {{ client_id: x-auth-client-id }}
"#,
        echo = echo.addr,
        issuer = provider.issuer
    );
    let app = start_yaml(&yaml).await;
    let base = format!("http://{}", app.inbound_addr.unwrap());
    let admin = format!("http://{}", app.admin_addr);
    assert!(
        eventually(Duration::from_secs(20), || async {
            get(&format!("{admin}/readyz"), None).await.0 == StatusCode::OK
        })
        .await,
        "keys loaded and the introspection endpoint (from discovery) answered: {}",
        get(&format!("{admin}/readyz"), None).await.2
    );
    let issuer = provider.issuer.clone();
    // Calls to the introspection endpoint with this result, by tokengate's metrics.
    let calls = |result: &'static str| {
        let (url, issuer) = (format!("{admin}/metrics"), issuer.clone());
        async move {
            let series =
                format!("tokengate_introspection_total{{issuer=\"{issuer}\",result=\"{result}\"}}");
            metric_value(&get(&url, None).await.2, &series)
        }
    };

    // Active, with both scopes: forwarded with the identity the answer names,
    // and introspected once for two requests.
    let writer = opaque_token(
        &provider,
        ("svc-basic", "basic-secret"),
        "urn:opaque",
        "orders:read orders:write",
    )
    .await;
    for _ in 0..2 {
        let (status, _, body) = get(&format!("{base}/orders/1"), Some(&writer)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            echo.last_headers().unwrap()["x-auth-client-id"],
            "svc-basic"
        );
    }
    assert_eq!(calls("active").await, 1.0, "one call for two requests");

    // A missing scope is refused from the answer and again from the cache: an
    // answer that was active allows only what its scopes allow.
    let reader = opaque_token(
        &provider,
        ("svc-readonly", "ro-secret"),
        "urn:opaque",
        "orders:read",
    )
    .await;
    let hits = echo.hits();
    for _ in 0..2 {
        let (status, headers, _) = send(
            Method::POST,
            &format!("{base}/orders"),
            &[("authorization", format!("Bearer {reader}"))],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"));
    }
    assert_eq!(echo.hits(), hits, "nothing forwarded");
    assert_eq!(
        get(&format!("{base}/orders/1"), Some(&reader)).await.0,
        StatusCode::OK
    );
    assert_eq!(calls("active").await, 2.0);

    // Revoked at the provider: refused once the cached answer's max_ttl is over.
    let (status, body) = post_form(
        &format!("{issuer}/token/revocation"),
        Some(("svc-basic", "basic-secret")),
        &format!("token={writer}&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "revocation: {body}");
    let refused = eventually(Duration::from_secs(10), || async {
        get(&format!("{base}/orders/1"), Some(&writer)).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(refused, "a revoked token is refused after max_ttl");
    let hits = echo.hits();
    let (status, headers, body) = get(&format!("{base}/orders/1"), Some(&writer)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("token is not active"), "{body}");
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    assert_eq!(echo.hits(), hits, "nothing forwarded");

    // Expired: the cached answer ends at the token's own exp (2 s), before
    // max_ttl (3 s), and with it the leeway a JWT's exp would get: past exp the
    // endpoint is asked again, and says inactive.
    let short = opaque_token(
        &provider,
        ("svc-basic", "basic-secret"),
        "urn:opaque-short",
        "orders:read",
    )
    .await;
    let obtained = std::time::Instant::now();
    assert_eq!(
        get(&format!("{base}/orders/1"), Some(&short)).await.0,
        StatusCode::OK
    );
    let inactive_before = calls("inactive").await;
    // Past exp (at most 2 s after it was issued), within max_ttl of the first call.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(obtained.elapsed())).await;
    let (status, _, body) = get(&format!("{base}/orders/1"), Some(&short)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        calls("inactive").await,
        inactive_before + 1.0,
        "asked again past exp"
    );

    // The endpoint stops: a token it has not answered for gets 503 and is not
    // forwarded; a cached answer serves until its own expiry, then 503 too.
    let cached = opaque_token(
        &provider,
        ("svc-basic", "basic-secret"),
        "urn:opaque",
        "orders:read",
    )
    .await;
    let unseen = opaque_token(
        &provider,
        ("svc-basic", "basic-secret"),
        "urn:opaque",
        "orders:read",
    )
    .await;
    assert_eq!(
        get(&format!("{base}/orders/1"), Some(&cached)).await.0,
        StatusCode::OK
    );
    drop(provider);
    let hits = echo.hits();
    let (status, _, body) = get(&format!("{base}/orders/1"), Some(&unseen)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("introspection_unavailable"), "{body}");
    assert_eq!(echo.hits(), hits, "nothing forwarded");
    let (status, _, body) = get(&format!("{admin}/readyz"), None).await;
    assert_eq!(status, StatusCode::OK, "cached answers still serve: {body}");
    assert!(
        body.contains("degraded") && body.contains("introspection"),
        "{body}"
    );
    let refused = eventually(Duration::from_secs(10), || async {
        get(&format!("{base}/orders/1"), Some(&cached)).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(refused, "a cached answer serves only until it expires");
    app.shutdown().await;
}

/// Issue 28, item 4: two real oidc-providers as two tenants of one
/// `{tenant}` pattern (the tenant is the port: `http://127.0.0.1:{tenant}`),
/// and a made-up tenant: a real issuer, not among the tenants, whose signed
/// token is refused without one fetch of its keys. A tenant's keys are
/// fetched on its first token, not at start; rules may require one tenant;
/// `tokengate verify` says which pattern matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_of_a_pattern_are_fetched_on_first_use_and_made_up_ones_never() {
    let Some(a) = start_provider(&[]) else {
        return;
    };
    let Some(b) = start_provider(&[]) else {
        return;
    };
    let made_up = DevIssuer::start(
        vec![SigningKey::generate(KeyKind::Rs256, "k")],
        "urn:orders",
    )
    .await
    .unwrap();
    let port = |issuer: &str| issuer.rsplit(':').next().unwrap().to_string();
    let echo = Echo::start().await.unwrap();
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - match: {{ issuer: "http://127.0.0.1:{{tenant}}", tenants: ["{ta}", "{tb}"] }}
      discovery: true
      audiences: ["urn:orders"]
  rules:
    - {{ path: /only-a, issuers: ["{a}"] }}
    - {{ path: /only-b, claims: {{ iss: "{b}" }} }}
    - {{ path: /orders, issuers: ["http://127.0.0.1:{{tenant}}"], scopes: ["orders:read"] }}
"#,
        echo = echo.addr,
        a = a.issuer,
        b = b.issuer,
        ta = port(&a.issuer),
        tb = port(&b.issuer),
    );
    let app = start_yaml(&yaml).await;
    let base = format!("http://{}", app.inbound_addr.unwrap());
    let admin = format!("http://{}", app.admin_addr);
    let fetches = |issuer: &str| {
        let (url, issuer) = (format!("{admin}/metrics"), issuer.to_string());
        async move {
            let metrics = get(&url, None).await.2;
            ["ok", "error"]
                .iter()
                .map(|r| {
                    let series = format!(
                        "tokengate_jwks_refresh_total{{issuer=\"{issuer}\",result=\"{r}\"}}"
                    );
                    metric_value(&metrics, &series)
                })
                .sum::<f64>()
        }
    };
    ready_at(&admin).await;
    assert_eq!(
        fetches(&a.issuer).await,
        0.0,
        "ready without a tenant's keys"
    );
    assert_eq!(fetches(&b.issuer).await, 0.0);

    // Each tenant's first token fetches its keys; its next ones use them. A
    // tenant no token has named holds none meanwhile (B's fetch, done, shows
    // that A's would have been too had it been made at start).
    let from_a = token(
        &a,
        ("svc-basic", "basic-secret"),
        "urn:orders",
        "orders:read",
    )
    .await;
    let from_b = token(
        &b,
        ("svc-basic", "basic-secret"),
        "urn:orders",
        "orders:read",
    )
    .await;
    for (tenant, token) in [(&b, &from_b), (&a, &from_a)] {
        for _ in 0..2 {
            let (status, _, body) = get(&format!("{base}/orders/1"), Some(token)).await;
            assert_eq!(status, StatusCode::OK, "{}: {body}", tenant.issuer);
        }
        assert_eq!(fetches(&tenant.issuer).await, 1.0, "{}", tenant.issuer);
        if tenant.issuer == b.issuer {
            assert_eq!(fetches(&a.issuer).await, 0.0, "no token from A yet");
        }
    }

    // A rule may take one tenant, by `issuers` or by a claim.
    let status = |path: &'static str, token: &str| {
        let (url, token) = (format!("{base}{path}"), token.to_string());
        async move { get(&url, Some(&token)).await.0 }
    };
    assert_eq!(status("/only-a", &from_a).await, StatusCode::OK);
    assert_eq!(status("/only-a", &from_b).await, StatusCode::FORBIDDEN);
    assert_eq!(status("/only-b", &from_b).await, StatusCode::OK);
    assert_eq!(status("/only-b", &from_a).await, StatusCode::FORBIDDEN);

    // A made-up tenant, however well signed: refused, its keys never asked for.
    let forged = made_up.mint(serde_json::json!({ "scope": "orders:read" }));
    let hits = echo.hits();
    let (status, _, body) = get(&format!("{base}/orders/1"), Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(echo.hits(), hits, "nothing forwarded");
    assert_eq!(
        (made_up.jwks_hits(), made_up.discovery_hits()),
        (0, 0),
        "no fetch for a tenant not allowed"
    );
    assert_eq!(fetches(&made_up.issuer).await, 0.0);

    // `verify` names the pattern a tenant's token matched.
    let config = temp_file("tenants.yaml", &yaml);
    let out = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["verify", "--config"])
        .arg(&*config)
        .args(["--token", &from_b, "--path", "/orders/1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "matched pattern http://127.0.0.1:{{tenant}} with tenant {}",
            port(&b.issuer)
        )),
        "{stdout}"
    );
    app.shutdown().await;
}

/// Issue 29: DPoP-bound tokens from the real oidc-provider (its client
/// `svc-dpop` must prove a key at the token endpoint; the token it gets is
/// `token_type: DPoP` with the provider's own `cnf.jkt`), verified inbound
/// with a fresh proof per request. What the provider binds and what
/// tokengate checks must agree: a good proof passes, the token as Bearer,
/// a proof by another key, or one for another request is refused, and
/// nothing refused reaches the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_provider_tokens_pass_only_with_their_keys_proof() {
    let Some(provider) = start_provider(&[]) else {
        return;
    };
    let client = DpopClient::generate();
    let token_url = format!("{}/token", provider.issuer);
    let proof = client.proof("POST", &token_url, "", serde_json::json!({ "ath": null }));
    let (status, body) = post_form_with(
        &token_url,
        Some(("svc-dpop", "dpop-secret")),
        "grant_type=client_credentials&resource=urn:orders&scope=orders:read",
        &[("dpop", proof)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "token request: {body}");
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let claims = claims_of(&token);
    assert_eq!(claims["cnf"]["jkt"], client.jkt(), "{claims}");
    // Without a proof the provider issues nothing to this client.
    let (status, _) = post_form(
        &token_url,
        Some(("svc-dpop", "dpop-secret")),
        "grant_type=client_credentials&resource=urn:orders&scope=orders:read",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let echo = Echo::start().await.unwrap();
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - issuer: "{issuer}"
      discovery: true
      audiences: ["urn:orders"]
      require_typ: at+jwt
  rules:
    - {{ path: /orders, scopes: ["orders:read"], require_binding: dpop }}
"#,
        echo = echo.addr,
        issuer = provider.issuer,
    );
    let app = start_yaml(&yaml).await;
    let addr = app.inbound_addr.unwrap();
    ready_at(&format!("http://{}", app.admin_addr)).await;
    let htu = format!("http://{addr}/orders/1");
    let ask = |authorization: String, proof: Option<String>| async move {
        let mut headers = vec![("Authorization", authorization)];
        headers.extend(proof.map(|p| ("DPoP", p)));
        raw_request(addr, "GET /orders/1", &addr.to_string(), &headers).await
    };
    let mut spent = String::new();
    for _ in 0..2 {
        let proof = client.proof("GET", &htu, &token, serde_json::json!({}));
        let answer = ask(format!("DPoP {token}"), Some(proof.clone())).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        spent = proof;
    }
    let hits = echo.hits();
    let another = DpopClient::generate();
    let dpop = format!("DPoP {token}");
    let proof = |changes: serde_json::Value| Some(client.proof("GET", &htu, &token, changes));
    let refused = [
        (format!("Bearer {token}"), None, "plain bearer token"),
        (
            dpop.clone(),
            Some(another.proof("GET", &htu, &token, serde_json::json!({}))),
            "cnf.jkt",
        ),
        (
            dpop.clone(),
            Some(client.proof("DELETE", &htu, &token, serde_json::json!({}))),
            "htm",
        ),
        (
            dpop.clone(),
            proof(serde_json::json!({ "htu": format!("http://{addr}/orders/2") })),
            "htu",
        ),
        (
            dpop.clone(),
            proof(serde_json::json!({ "iat": tokengate::demo::unix_now() - 600 })),
            "iat",
        ),
        (
            dpop.clone(),
            proof(serde_json::json!({ "ath": null })),
            "ath",
        ),
        (dpop.clone(), Some(spent), "used before"),
    ];
    for (authorization, proof, says) in refused {
        let answer = ask(authorization, proof).await;
        assert_eq!(answer.status, 401, "{says}: {answer:?}");
        assert!(answer.body.contains(says), "{says}: {}", answer.body);
    }
    assert_eq!(echo.hits(), hits, "nothing refused reaches the app");
    app.shutdown().await;
}

/// Issue 29: certificate-bound tokens (RFC 8705) from the real
/// oidc-provider: its client `svc-mtls` gets a token bound to the client
/// certificate its request carried (as a TLS-terminating proxy would pass
/// it), and tokengate's TLS listener takes that token only over a
/// connection presenting that certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_bound_provider_tokens_pass_only_with_their_certificate() {
    use support::mtls::{client_cert, escaped_pem, tls_request, ClientCert, ServerCert};
    let Some(provider) = start_provider(&[]) else {
        return;
    };
    let made = rcgen::generate_simple_self_signed(vec!["orders.client".to_string()]).unwrap();
    let mine = ClientCert::of(&made);
    let (status, body) = post_form_with(
        &format!("{}/token", provider.issuer),
        Some(("svc-mtls", "mtls-secret")),
        "grant_type=client_credentials&resource=urn:orders&scope=orders:read",
        &[("x-ssl-client-cert", escaped_pem(&made.cert.pem()))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "token request: {body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let claims = claims_of(&token);
    assert_eq!(claims["cnf"]["x5t#S256"], mine.x5t, "{claims}");

    let server = ServerCert::generate();
    let echo = Echo::start().await.unwrap();
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  tls: {tls}
  issuers:
    - issuer: "{issuer}"
      discovery: true
      audiences: ["urn:orders"]
      require_typ: at+jwt
  rules:
    - {{ path: /orders, scopes: ["orders:read"], require_binding: mtls }}
"#,
        echo = echo.addr,
        issuer = provider.issuer,
        tls = server.tls_yaml("client_certificates: optional"),
    );
    let app = start_yaml(&yaml).await;
    let addr = app.inbound_addr.unwrap();
    ready_at(&format!("http://{}", app.admin_addr)).await;
    let request = format!(
        "GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let server_der = server.cert.clone();
    let answer = tls_request(addr, &server_der, Some(&mine), &request).await;
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
    let hits = echo.hits();
    let theirs = client_cert("other.client");
    for cert in [Some(&theirs), None] {
        let (status, body) = tls_request(addr, &server_der, cert, &request)
            .await
            .unwrap();
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("client certificate"), "{body}");
    }
    assert_eq!(echo.hits(), hits, "nothing refused reaches the app");
    app.shutdown().await;
}

/// Issue 29, outbound: a DPoP-bound token source against the real provider.
/// tokengate holds the key, proves it to the token endpoint (the client
/// `svc-dpop-nonce` must use the server's nonce: one resend), gets a
/// `token_type: DPoP` token, and signs a fresh proof of each forwarded
/// request, which tokengate's own inbound guard checks (demanding its own
/// nonce too, so the upstream's nonce is learnt and then kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_dpop_source_gets_provider_tokens_and_proves_each_request() {
    let Some(provider) = start_provider(&[]) else {
        return;
    };
    let echo = Echo::start().await.unwrap();
    let guard = start_yaml(&format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - {{ issuer: "{issuer}", discovery: true, audiences: ["urn:orders"], require_typ: at+jwt }}
  rules:
    - {{ path: /orders, scopes: ["orders:read"], require_binding: dpop }}
  dpop: {{ require_nonce: true }}
"#,
        echo = echo.addr,
        issuer = provider.issuer,
    ))
    .await;
    let guard_addr = guard.inbound_addr.unwrap();
    let guard_admin = format!("http://{}", guard.admin_addr);
    ready_at(&guard_admin).await;
    let out = start_yaml(&format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
outbound:
  listen: "127.0.0.1:0"
  routes:
    - {{ host: orders.test, upstream: "http://{guard_addr}", token: orders }}
  tokens:
    orders:
      kind: client_credentials
      token_url: "{issuer}/token"
      client_id: svc-dpop-nonce
      client_secret: dpop-nonce-secret
      resource: "urn:orders"
      scopes: ["orders:read"]
      dpop: {{ generate: ES256 }}
"#,
        issuer = provider.issuer,
    ))
    .await;
    // Ready only once the provider, which demands its nonce, issued a token.
    ready_at(&format!("http://{}", out.admin_addr)).await;
    let base = format!("http://{}", out.outbound_addr.unwrap());
    let nonce_refusals = || async {
        let metrics = get(&format!("{guard_admin}/metrics"), None).await.2;
        metric_value(
            &metrics,
            "tokengate_auth_decisions_total{decision=\"deny\",reason=\"use_dpop_nonce\"}",
        )
    };
    let mut jkt = None;
    for method in [Method::GET, Method::POST, Method::GET] {
        let hits = echo.hits();
        let (status, _, body) = send(
            method.clone(),
            &format!("{base}/orders/1?page=2"),
            &[("host", "orders.test".to_string())],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{method}: {body}");
        assert_eq!(echo.hits(), hits + 1, "one request reached the app");
        let seen = echo.last_headers().unwrap();
        let token = seen["authorization"].to_str().unwrap();
        let token = token.strip_prefix("DPoP ").unwrap();
        let proof = seen["dpop"].to_str().unwrap();
        // Judged by jsonwebtoken, which knows nothing of tokengate's signer.
        let header = jsonwebtoken::decode_header(proof).unwrap();
        let key = header.jwk.unwrap();
        let thumbprint = key.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256);
        assert_eq!(claims_of(token)["cnf"]["jkt"], thumbprint.as_str());
        let claims = claims_of(proof);
        assert_eq!(claims["htm"], method.as_str());
        assert_eq!(claims["htu"], format!("http://{guard_addr}/orders/1"));
        assert_eq!(claims["ath"], tokengate::sha256_base64url(token.as_bytes()));
        assert!(claims["nonce"].is_string(), "{claims}");
        // One key for the source's life.
        assert_eq!(jkt.get_or_insert(thumbprint.clone()), &thumbprint);
    }
    // The guard asked for its nonce once; the next requests carried it.
    assert_eq!(nonce_refusals().await, 1.0);
    // The provider's demand for its nonce was met within the first fetch.
    let metrics = get(&format!("http://{}/metrics", out.admin_addr), None)
        .await
        .2;
    let fetches = |result: &str| {
        metric_value(
            &metrics,
            &format!("tokengate_token_refresh_total{{result=\"{result}\",token=\"orders\"}}"),
        )
    };
    assert_eq!((fetches("ok"), fetches("rejected")), (1.0, 0.0));
    out.shutdown().await;
    guard.shutdown().await;
}

/// Issue 29, outbound: a certificate-bound token source. Its client
/// certificate is presented over TLS to the real provider's token endpoint
/// (which binds `svc-mtls`'s token to it) and to the upstream, tokengate's own
/// TLS guard, which takes the token only from that certificate's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_certificate_bound_source_presents_its_certificate_to_both() {
    use support::mtls::{ClientCert, ServerCert};
    // The provider and the upstream guard each have their own certificate:
    // the source's tls trusts the provider's, outbound.tls the guard's.
    let (server, guard_server) = (ServerCert::generate(), ServerCert::generate());
    let (cert_file, key_file) = server.files();
    let Some(provider) = start_provider(&[
        ("TLS_CERT_FILE", cert_file.display().to_string()),
        ("TLS_KEY_FILE", key_file.display().to_string()),
    ]) else {
        return;
    };
    let tls_port = provider.tls_port.expect("the provider serves HTTPS");
    let made = rcgen::generate_simple_self_signed(vec!["orders.client".to_string()]).unwrap();
    let mine = ClientCert::of(&made);
    let client_cert = temp_file("client.crt", &made.cert.pem());
    let client_key = temp_file("client.key", &made.signing_key.serialize_pem());
    let echo = Echo::start().await.unwrap();
    let guard = start_yaml(&format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  tls: {tls}
  issuers:
    - {{ issuer: "{issuer}", discovery: true, audiences: ["urn:orders"], require_typ: at+jwt }}
  rules:
    - {{ path: /orders, scopes: ["orders:read"], require_binding: mtls }}
"#,
        echo = echo.addr,
        issuer = provider.issuer,
        tls = guard_server.tls_yaml("client_certificates: optional"),
    ))
    .await;
    let guard_addr = guard.inbound_addr.unwrap();
    ready_at(&format!("http://{}", guard.admin_addr)).await;
    let out = start_yaml(&format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
outbound:
  listen: "127.0.0.1:0"
  routes:
    - {{ host: orders.test, upstream: "https://127.0.0.1:{guard_port}", token: orders }}
    - {{ host: plain.test, upstream: "https://127.0.0.1:{guard_port}" }}
  tokens:
    orders:
      kind: client_credentials
      token_url: "https://127.0.0.1:{tls_port}/token"
      client_id: svc-mtls
      client_secret: mtls-secret
      resource: "urn:orders"
      scopes: ["orders:read"]
      tls: {{ ca_file: "{ca}", cert_file: "{cert}", key_file: "{key}" }}
      certificate_bound: true
  tls: {{ ca_file: "{guard_ca}" }}
"#,
        guard_port = guard_addr.port(),
        ca = cert_file.display(),
        guard_ca = guard_server.files().0.display(),
        cert = client_cert.display(),
        key = client_key.display(),
    ))
    .await;
    ready_at(&format!("http://{}", out.admin_addr)).await;
    let base = format!("http://{}", out.outbound_addr.unwrap());
    let (status, _, body) = send(
        Method::GET,
        &format!("{base}/orders/1"),
        &[("host", "orders.test".to_string())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = echo.last_headers().unwrap();
    let token = seen["authorization"].to_str().unwrap();
    let token = token.strip_prefix("Bearer ").unwrap();
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], mine.x5t);
    // The same token from a connection without the certificate (a
    // pass-through route, the app sending it itself) is refused.
    let hits = echo.hits();
    let (status, _, body) = send(
        Method::GET,
        &format!("{base}/orders/1"),
        &[
            ("host", "plain.test".to_string()),
            ("authorization", format!("Bearer {token}")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("client certificate"), "{body}");
    assert_eq!(echo.hits(), hits);
    out.shutdown().await;
    guard.shutdown().await;
}
