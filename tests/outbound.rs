//! Outbound end to end: a real tokengate outbound listener, the dev issuer's
//! token endpoint (counting calls, able to fail, be slow or issue short-lived
//! tokens) and an echo upstream, all on 127.0.0.1:0.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;
use tokengate::config::Config;
use tokengate::demo::{DevIssuer, Echo, KeyKind, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Out {
    issuer: DevIssuer,
    echo: Echo,
    app: tokengate::App,
    base: String,
    admin: String,
}

async fn start(issuer: DevIssuer, echo: Echo, extra_token: &str, extra: &str) -> Out {
    let yaml = outbound_yaml(
        &issuer.token_url(),
        &format!("http://{}", echo.addr),
        extra_token,
        extra,
    );
    let app = start_yaml(&yaml).await;
    Out::from_app(issuer, echo, app)
}

async fn parts() -> (DevIssuer, Echo) {
    (
        DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
            .await
            .unwrap(),
        Echo::start().await.unwrap(),
    )
}

impl Out {
    fn from_app(issuer: DevIssuer, echo: Echo, app: tokengate::App) -> Out {
        let base = format!("http://{}", app.outbound_addr.unwrap());
        let admin = format!("http://{}", app.admin_addr);
        Out {
            issuer,
            echo,
            app,
            base,
            admin,
        }
    }

    async fn ready(&self) {
        ready_at(&self.admin).await;
    }

    /// A request from the app to `host` through tokengate.
    async fn call(&self, host: &str, path: &str, extra: &[(&str, String)]) -> (StatusCode, String) {
        let mut headers = vec![("host", host.to_string())];
        headers.extend(extra.iter().cloned());
        let (status, _, body) = send(Method::GET, &format!("{}{path}", self.base), &headers).await;
        (status, body)
    }

    fn seen_authorization(&self) -> String {
        let h = self
            .echo
            .last_headers()
            .expect("a request reached the upstream");
        assert_eq!(
            h.get_all("authorization").iter().count(),
            1,
            "exactly one Authorization upstream"
        );
        h["authorization"].to_str().unwrap().to_string()
    }

    async fn metric(&self, series: &str) -> f64 {
        metric_value(
            &get(&format!("{}/metrics", self.admin), None).await.2,
            series,
        )
    }
}

fn claims_of(authorization: &str) -> serde_json::Value {
    let token = authorization
        .split_once(' ')
        .map_or(authorization, |(_, t)| t);
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn injects_the_token_in_place_of_the_apps_own_and_routes_by_host() {
    let (issuer, echo) = parts().await;
    let o = start(issuer, echo, "", "").await;
    o.ready().await;
    let (status, body) = o
        .call(
            "api.test",
            "/orders/1",
            &[("authorization", "Bearer app-own-secret".into())],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let auth = o.seen_authorization();
    assert!(auth.starts_with("Bearer ey"), "{auth}");
    let claims = claims_of(&auth);
    assert_eq!(claims["client_id"], "demo-app");
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["aud"], AUD);
    let seen = o.echo.last_headers().unwrap();
    assert_eq!(
        seen["host"],
        o.echo.addr.to_string(),
        "Host is the upstream's"
    );
    assert!(
        seen.get("x-forwarded-for").is_none(),
        "nothing about the app's network leaks upstream"
    );

    // Unknown host and no fallback: a clear 404.
    let (status, body) = o.call("elsewhere.test", "/", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["error"], "no_route");

    // An HTTP_PROXY-style absolute-form request is routed by its target.
    let mut conn = tokio::net::TcpStream::connect(o.base.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(
        b"GET http://api.test/abs HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    assert_eq!(
        o.issuer.token_calls().len(),
        1,
        "one fetch serves every request"
    );
    assert_eq!(
        o.metric("tokengate_token_refresh_total{result=\"ok\",token=\"default\"}")
            .await,
        1.0
    );
    assert!(
        o.metric("tokengate_token_expiry_seconds{token=\"default\"}")
            .await
            > 3000.0
    );
    assert_eq!(
        o.metric(
            "tokengate_requests_total{direction=\"outbound\",route=\"api.test\",status=\"200\"}"
        )
        .await,
        2.0
    );
    o.app.shutdown().await;
}

#[tokio::test]
async fn concurrent_cold_requests_cause_exactly_one_fetch() {
    let (issuer, echo) = parts().await;
    issuer.set_token_delay(Duration::from_millis(400));
    let o = start(issuer, echo, "", "").await;
    let mut calls = Vec::new();
    for i in 0..20 {
        let (base, host) = (o.base.clone(), "api.test");
        calls.push(tokio::spawn(async move {
            send(
                Method::GET,
                &format!("{base}/cold/{i}"),
                &[("host", host.to_string())],
            )
            .await
            .0
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(o.issuer.token_calls().len(), 1);
    assert_eq!(o.echo.hits(), 20);
    o.app.shutdown().await;
}

#[tokio::test]
async fn readiness_waits_for_the_first_token() {
    let (issuer, echo) = parts().await;
    issuer.set_token_failing(true);
    let o = start(issuer, echo, "", "").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            !o.issuer.token_calls().is_empty()
        })
        .await,
        "the first token fetch was never attempted"
    );
    assert_eq!(
        get(&format!("{}/readyz", o.admin), None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // /readyz names the token and what its last fetch met.
    let why = readyz_saying(&o.admin, "token default: not fetched yet: ").await;
    assert!(why.contains("token default: not fetched yet: "), "{why}");
    assert!(
        o.metric("tokengate_token_refresh_total{result=\"rejected\",token=\"default\"}")
            .await
            >= 1.0,
        "the refused fetch is counted (a retry may have followed it)"
    );
    o.issuer.set_token_failing(false);
    o.ready().await;
    o.app.shutdown().await;
}

#[tokio::test]
async fn dcos_style_injection_format() {
    let (issuer, echo) = parts().await;
    let o = start(issuer, echo, "inject: \"token={token}\"", "").await;
    o.ready().await;
    assert_eq!(o.call("api.test", "/", &[]).await.0, StatusCode::OK);
    assert!(o.seen_authorization().starts_with("token=ey"));
    o.app.shutdown().await;
}

#[tokio::test]
async fn an_upstream_401_causes_one_refetch_and_one_retry() {
    let (issuer, echo) = parts().await;
    let o = start(issuer, echo, "", "limits: { max_retry_body_bytes: 1024 }").await;
    o.ready().await;
    assert_eq!(o.call("api.test", "/first", &[]).await.0, StatusCode::OK);
    let first = o.seen_authorization();
    // The upstream no longer accepts that token (revoked, or expired early).
    o.echo.refuse(first.parse().unwrap());
    let hits = o.echo.hits();
    // A small body is kept: the retry is the same request with the new token.
    let (status, _, body) = send_body(
        Method::POST,
        &format!("{}/again?x=1", o.base),
        &[("host", "api.test".into()), ("x-kept", "yes".into())],
        bytes::Bytes::from(vec![b'y'; 100]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(o.echo.hits(), hits + 2, "one refused attempt, one retry");
    assert_eq!(o.issuer.token_calls().len(), 2, "exactly one refetch");
    let second = o.seen_authorization();
    assert_ne!(first, second);
    let echo = &json(&body)["echo"];
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/again?x=1");
    assert_eq!(echo["body_bytes"], 100);
    assert_eq!(echo["headers"]["x-kept"], "yes");
    // The refusal was read to its end, so the replay went on the same connection.
    let peers = o.echo.recent_peers();
    assert_eq!(peers[peers.len() - 2], peers[peers.len() - 1]);

    // A body too large to keep is not replayed: the 401 goes back to the app, and
    // a renewal is requested so the app's own retry gets a new token.
    o.echo.refuse(second.parse().unwrap());
    let hits = o.echo.hits();
    let (status, _, _) = send_body(
        Method::POST,
        &format!("{}/upload", o.base),
        &[("host", "api.test".into())],
        bytes::Bytes::from(vec![b'x'; 4096]),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(o.echo.hits(), hits + 1, "not replayed");
    assert!(
        eventually(Duration::from_millis(4000), || async {
            o.issuer.token_calls().len() == 3
        })
        .await,
        "a renewal followed the refused streamed request ({} token calls)",
        o.issuer.token_calls().len()
    );
    assert_eq!(o.call("api.test", "/after", &[]).await.0, StatusCode::OK);
    o.app.shutdown().await;
}

#[tokio::test]
async fn a_refusal_goes_back_to_the_app_when_no_newer_token_comes() {
    let (issuer, echo) = parts().await;
    let o = start(issuer, echo, "fetch_timeout: 1s", "").await;
    o.ready().await;
    assert_eq!(o.call("api.test", "/first", &[]).await.0, StatusCode::OK);
    o.echo.refuse(o.seen_authorization().parse().unwrap());
    o.issuer.set_token_failing(true);
    let hits = o.echo.hits();
    let (status, body) = o.call("api.test", "/again", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        json(&body)["error"],
        "invalid_token",
        "the upstream's own answer"
    );
    assert_eq!(o.echo.hits(), hits + 1, "not replayed");
    o.app.shutdown().await;
}

#[tokio::test]
async fn a_file_token_is_reread_when_it_changes() {
    let (issuer, echo) = parts().await;
    let file = temp_file("file-token", "first-token\n");
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
outbound:
  listen: "127.0.0.1:0"
  routes: [{{ host: "*", upstream: "http://{}", token: projected }}]
  tokens:
    projected: {{ kind: file, path: "{}" }}
"#,
        echo.addr,
        file.display()
    );
    let app = start_yaml(&yaml).await;
    let o = Out::from_app(issuer, echo, app);
    o.ready().await;
    assert_eq!(o.call("anything.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(o.seen_authorization(), "Bearer first-token");
    std::fs::write(&file, "second-token\n").unwrap();
    eventually(Duration::from_millis(10_000), || async {
        o.call("anything.test", "/", &[]).await;
        o.seen_authorization() == "Bearer second-token"
    })
    .await;
    // What the last call carried (no new call is made).
    let seen = o.seen_authorization();
    assert_eq!(
        seen, "Bearer second-token",
        "the changed file is picked up without a restart"
    );
    o.app.shutdown().await;
}

#[tokio::test]
async fn token_server_down_keeps_the_valid_token_then_503s_then_recovers() {
    let (issuer, echo) = parts().await;
    issuer.set_token_ttl(4);
    let o = start(issuer, echo, "fetch_timeout: 1s", "").await;
    o.ready().await;
    o.issuer.set_token_failing(true);
    let fetched_at = Instant::now();

    // While the cached token is valid, requests succeed although every renewal fails.
    let mut statuses = Vec::new();
    while fetched_at.elapsed() < Duration::from_secs(9) {
        let (status, body) = o.call("api.test", "/", &[]).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(
                json(&body)["error"],
                "token_unavailable",
                "a clear error, not a hang"
            );
        }
        statuses.push((fetched_at.elapsed(), status));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_503 = statuses
        .iter()
        .position(|(_, s)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .expect("503 after expiry");
    assert!(
        statuses[..first_503]
            .iter()
            .all(|(_, s)| *s == StatusCode::OK),
        "no failures before the token expired"
    );
    assert!(
        statuses[first_503].0 >= Duration::from_secs(3),
        "503 only once the token has expired"
    );
    assert!(statuses[first_503..]
        .iter()
        .all(|(_, s)| *s == StatusCode::SERVICE_UNAVAILABLE));

    // Back-off is visible in the call times: the gaps between failed attempts grow.
    let calls = o.issuer.token_calls();
    let gaps: Vec<Duration> = calls[1..].windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 2, "several retries: {gaps:?}");
    assert!(
        // (Back-offs are drawn from 0.5–1 s, 1–2 s, …: ranges that meet, so
        // a few ms of scheduling noise is allowed where they do.)
        gaps.windows(2)
            .all(|g| g[1] + Duration::from_millis(50) >= g[0]),
        "growing back-off: {gaps:?}"
    );

    // Recovery: once the server answers again, requests succeed.
    o.issuer.set_token_failing(false);
    assert!(
        eventually(Duration::from_millis(20_000), || async {
            o.call("api.test", "/", &[]).await.0 == StatusCode::OK
        })
        .await,
        "requests succeed again once the token server answers"
    );
    o.app.shutdown().await;
}

/// App → tokengate outbound → tokengate inbound (verifying exp with no leeway) →
/// echo, with 6-second tokens and 20 seconds of steady traffic. A second route
/// carries a long-lived token through the same chain: the pass-through baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_second_tokens_renew_before_expiry_without_blocking_requests() {
    let (issuer, echo) = parts().await;
    issuer.set_token_ttl(6);
    // A slow token server: a request that waited for a fetch would show it.
    issuer.set_token_delay(Duration::from_millis(300));
    let guard_yaml = config_yaml(&issuer.issuer, &format!("http://{}", echo.addr), "", "");
    let guard_yaml = Yaml::parse(&guard_yaml)
        .set("inbound.issuers[0].leeway", "0s")
        .text();
    let guard = start_yaml(&guard_yaml).await;
    let guard_url = format!("http://{}", guard.inbound_addr.unwrap());
    let stable = temp_file(
        "stable-token",
        &issuer.mint(json!({ "scope": "orders:read" })),
    );
    let yaml = outbound_yaml(&issuer.token_url(), &guard_url, "", "");
    let yaml = Yaml::parse(&yaml)
        .insert(
            "outbound.routes",
            1,
            &format!("{{ host: stable.test, upstream: \"{guard_url}\", token: stable }}"),
        )
        .set(
            "outbound.tokens.stable",
            &format!("{{ kind: file, path: \"{}\" }}", stable.display()),
        )
        .text();
    let app = start_yaml(&yaml).await;
    let o = Out::from_app(issuer, echo, app);
    o.ready().await;
    let waits_before = o
        .metric("tokengate_token_waits_total{token=\"default\"}")
        .await;

    let (mut renewing_max, mut stable_max) = (Duration::ZERO, Duration::ZERO);
    let mut requests = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        for (host, max) in [
            ("api.test", &mut renewing_max),
            ("stable.test", &mut stable_max),
        ] {
            let t = Instant::now();
            let (status, body) = o.call(host, "/orders/1", &[]).await;
            *max = (*max).max(t.elapsed());
            assert_eq!(
                status,
                StatusCode::OK,
                "{host}: every request carried a token valid when it arrived: {body}"
            );
        }
        requests += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fetches = o.issuer.token_calls().len();
    // 20s of 6s tokens renewed at 75–80% of their life: about five fetches, whatever the traffic.
    assert!(
        (4..=7).contains(&fetches),
        "{fetches} fetches for {requests} requests"
    );
    assert_eq!(
        o.metric("tokengate_token_waits_total{token=\"default\"}")
            .await,
        waits_before,
        "no request waited for a token fetch"
    );
    println!(
        "renewal: {requests} requests per route, {fetches} token fetches, max latency renewing {renewing_max:?} vs stable {stable_max:?} (ratio {:.2})",
        renewing_max.as_secs_f64() / stable_max.as_secs_f64()
    );
    o.app.shutdown().await;
    guard.shutdown().await;
}

/// Config with one catch-all route to the echo and one token written as YAML.
fn single_token_yaml(echo: &Echo, token_yaml: &str) -> String {
    format!(
        "admin: {{ listen: \"127.0.0.1:0\" }}\noutbound:\n  listen: \"127.0.0.1:0\"\n  routes: [{{ host: \"*\", upstream: \"http://{}\", token: t }}]\n  tokens:\n    t:\n{}",
        echo.addr,
        indent(token_yaml, 6)
    )
}

async fn start_single(issuer: DevIssuer, echo: Echo, token_yaml: &str) -> Out {
    let yaml = single_token_yaml(&echo, token_yaml);
    let app = start_yaml(&yaml).await;
    let o = Out::from_app(issuer, echo, app);
    o.ready().await;
    o
}

/// A PKCS#8 PEM RSA key in a temp file, and its public key in DER (SubjectPublicKeyInfo).
fn rsa_key_file(name: &str) -> (tempfile::TempPath, Vec<u8>) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let (pair, pem) = rsa_pkcs8();
    let public = pair.public_key().as_der().unwrap().as_ref().to_vec();
    (temp_file(name, &pem), public)
}

#[tokio::test]
async fn jwt_bearer_with_a_projected_token_file_and_token_exchange() {
    let (issuer, echo) = parts().await;
    let projected = temp_file(
        "projected",
        &issuer.mint(json!({ "sub": "system:serviceaccount:shop:orders" })),
    );
    let token_yaml = format!(
        "kind: jwt_bearer\ntoken_url: \"{}\"\nassertion_file: \"{}\"",
        issuer.token_url(),
        projected.display()
    );
    let o = start_single(issuer, echo, &token_yaml).await;
    assert_eq!(o.call("x.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(
        claims_of(&o.seen_authorization())["sub"],
        "system:serviceaccount:shop:orders"
    );
    o.app.shutdown().await;

    let (issuer, echo) = parts().await;
    let subject = temp_file("subject", &issuer.mint(json!({ "sub": "user-42" })));
    let token_yaml = format!(
        "kind: token_exchange\ntoken_url: \"{}\"\nsubject_token_file: \"{}\"\naudience: {AUD}",
        issuer.token_url(),
        subject.display()
    );
    let o = start_single(issuer, echo, &token_yaml).await;
    assert_eq!(o.call("x.test", "/", &[]).await.0, StatusCode::OK);
    let claims = claims_of(&o.seen_authorization());
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("user-42"), Some(AUD))
    );
    o.app.shutdown().await;
}

#[tokio::test]
async fn jwt_bearer_with_a_self_signed_assertion() {
    let (issuer, echo) = parts().await;
    let (key, _) = rsa_key_file("bearer-key");
    let token_yaml = format!(
        "kind: jwt_bearer\ntoken_url: \"{}\"\nclient_id: orders\nsubject: batch-job\nprivate_key_file: \"{}\"\nkey_id: orders-1",
        issuer.token_url(),
        key.display()
    );
    let o = start_single(issuer, echo, &token_yaml).await;
    assert_eq!(o.call("x.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(claims_of(&o.seen_authorization())["sub"], "batch-job");
    o.app.shutdown().await;
}

/// A JSON endpoint on 127.0.0.1:0 answering with `answer(request body)`.
async fn json_endpoint(
    answer: impl Fn(serde_json::Value) -> (u16, serde_json::Value) + Send + Sync + 'static,
) -> String {
    use http_body_util::BodyExt;
    let answer = std::sync::Arc::new(answer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, json) =
                                answer(serde_json::from_slice(&body).unwrap_or_default());
                            let resp = hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    json.to_string(),
                                )))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test]
async fn dcos_service_login() {
    let (issuer, echo) = parts().await;
    let (key, public_der) = rsa_key_file("dcos-key");
    let auth_token = issuer.mint(json!({ "uid": "svc-orders", "sub": "svc-orders" }));
    // The DC/OS login endpoint: checks the service login token's signature with the
    // service's public key and its uid, then answers {"token": …}.
    let login_url = json_endpoint(move |body| {
        let login_token = body["token"].as_str().unwrap_or("");
        let (input, sig) = login_token.rsplit_once('.').unwrap_or(("", ""));
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
        let verified = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, &public_der)
            .verify(input.as_bytes(), &sig)
            .is_ok();
        let claims = input.split('.').nth(1).and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
        let claims: serde_json::Value = claims.and_then(|c| serde_json::from_slice(&c).ok()).unwrap_or_default();
        if verified && body["uid"] == "svc-orders" && claims["uid"] == "svc-orders" && claims["exp"].is_u64() {
            (200, json!({ "token": auth_token }))
        } else {
            (401, json!({ "title": "Invalid authentication credentials", "code": "ERR_INVALID_CREDENTIALS" }))
        }
    })
    .await;
    let token_yaml = format!(
        "kind: login\ntoken_url: \"{login_url}/acs/api/v1/auth/login\"\nclient_id: svc-orders\nprivate_key_file: \"{}\"\nlogin_token_claims: {{ uid: \"{{client_id}}\" }}\nbody: {{ uid: \"{{client_id}}\", token: \"{{login_token}}\" }}\ntoken_pointer: /token\ninject: \"token={{token}}\"",
        key.display()
    );
    let o = start_single(issuer, echo, &token_yaml).await;
    assert_eq!(o.call("x.test", "/", &[]).await.0, StatusCode::OK);
    let auth = o.seen_authorization();
    assert!(auth.starts_with("token=ey"), "{auth}");
    assert_eq!(
        claims_of(auth.trim_start_matches("token="))["uid"],
        "svc-orders"
    );
    // Lifetime read from the returned JWT's exp (about an hour).
    assert!(
        o.metric("tokengate_token_expiry_seconds{token=\"t\"}")
            .await
            > 3000.0
    );
    o.app.shutdown().await;
}

#[tokio::test]
async fn graphql_service_account_login() {
    let (issuer, echo) = parts().await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = calls.clone();
    let url = json_endpoint(move |body| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let ok = body["query"].as_str().is_some_and(|q| q.contains("authenticateServiceAccount"))
            && body["variables"]["id"] == "7c0f2b"
            && body["variables"]["secret"] == "s3cr\"et";
        if ok {
            (200, json!({ "data": { "authenticateServiceAccount": { "accessToken": format!("gql-{n}"), "expiresInSeconds": 3600, "tokenType": "Bearer" } } }))
        } else {
            (200, json!({ "data": null, "errors": [{ "message": "Invalid client credentials" }] }))
        }
    })
    .await;
    let query = "mutation($id: String!, $secret: String!) { authenticateServiceAccount(input: {clientId: $id, clientSecret: $secret}) { accessToken expiresInSeconds tokenType } }";
    let token_yaml = format!(
        "kind: login\ntoken_url: \"{url}/graphql\"\nclient_id: \"7c0f2b\"\nclient_secret: 's3cr\"et'\nbody:\n  query: \"{query}\"\n  variables: {{ id: \"{{client_id}}\", secret: \"{{client_secret}}\" }}\ntoken_pointer: /data/authenticateServiceAccount/accessToken\nexpires_in_pointer: /data/authenticateServiceAccount/expiresInSeconds"
    );
    let o = start_single(issuer, echo, &token_yaml).await;
    assert_eq!(o.call("x.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(o.seen_authorization(), "Bearer gql-1");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let left = o
        .metric("tokengate_token_expiry_seconds{token=\"t\"}")
        .await;
    assert!(
        (3500.0..=3600.0).contains(&left),
        "lifetime from expiresInSeconds: {left}"
    );
    o.app.shutdown().await;
}

/// An HTTPS upstream on 127.0.0.1:0 that requires a client certificate signed by the test CA.
async fn mtls_upstream(pki: &Pki) -> std::net::SocketAddr {
    mtls_server(pki, "mtls ok").await
}

/// An HTTPS server on 127.0.0.1:0 answering every request with `body`, to
/// clients presenting a certificate signed by the test CA.
async fn mtls_server(pki: &Pki, body: &'static str) -> std::net::SocketAddr {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_tls_with_an_extra_ca_and_a_client_certificate() {
    let pki = pki();
    let upstream = mtls_upstream(&pki).await;
    for (tls, want) in [
        (
            format!(
                "tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}",
                pki.ca.display(),
                pki.client_cert.display(),
                pki.client_key.display()
            ),
            StatusCode::OK,
        ),
        // Trusting the CA is not enough: without a client certificate the handshake is refused.
        (
            format!("tls: {{ ca_file: \"{}\" }}", pki.ca.display()),
            StatusCode::BAD_GATEWAY,
        ),
    ] {
        let (issuer, echo) = parts().await;
        let yaml = outbound_yaml(
            &issuer.token_url(),
            &format!("https://localhost:{}", upstream.port()),
            "",
            &tls,
        );
        let app = start_yaml(&yaml).await;
        let o = Out::from_app(issuer, echo, app);
        o.ready().await;
        let (status, body) = o.call("api.test", "/", &[]).await;
        assert_eq!(status, want, "{tls}: {body}");
        if want == StatusCode::OK {
            assert_eq!(body, "mtls ok");
        }
        o.app.shutdown().await;
    }
}

/// A token source's own `tls` block: its token server (private CA, client
/// certificate required) is reached with it; without it the source is not
/// ready and /readyz names the certificate problem.
#[tokio::test]
async fn a_token_source_has_its_own_tls() {
    let pki = pki();
    let token_server = mtls_server(
        &pki,
        r#"{"access_token":"from-the-private-idp","token_type":"Bearer","expires_in":3600}"#,
    )
    .await;
    let token_url = format!("https://localhost:{}/token", token_server.port());
    let own_tls = format!(
        "tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let (issuer, echo) = parts().await;
    let upstream = format!("http://{}", echo.addr);
    let app = start_yaml(&outbound_yaml(&token_url, &upstream, &own_tls, "")).await;
    let o = Out::from_app(issuer, echo, app);
    o.ready().await;
    assert_eq!(o.call("api.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(o.seen_authorization(), "Bearer from-the-private-idp");
    o.app.shutdown().await;

    let (issuer, echo) = parts().await;
    let app = start_yaml(&outbound_yaml(&token_url, &upstream, "", "")).await;
    let o = Out::from_app(issuer, echo, app);
    let why = readyz_saying(&o.admin, "UnknownIssuer").await;
    assert!(
        why.contains("token default: not fetched yet: token endpoint unreachable")
            && why.contains("invalid peer certificate: UnknownIssuer"),
        "{why}"
    );
    o.app.shutdown().await;
}

#[tokio::test]
async fn reload_swaps_token_sources_once_the_new_tokens_are_fetched() {
    let (issuer, echo) = parts().await;
    let yaml = outbound_yaml(
        &issuer.token_url(),
        &format!("http://{}", echo.addr),
        "",
        "",
    );
    let mut o = start(issuer, echo, "", "").await;
    o.ready().await;
    assert_eq!(o.call("api.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(claims_of(&o.seen_authorization())["scope"], "orders:read");

    // A changed token source is fetched first, then swapped in.
    let changed = Yaml::parse(&yaml)
        .set("outbound.tokens.default.scopes", "[\"orders:write\"]")
        .text();
    o.app
        .reload(Config::from_yaml(&changed, "test", &|_| None).unwrap())
        .await
        .unwrap();
    assert_eq!(o.call("api.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(claims_of(&o.seen_authorization())["scope"], "orders:write");

    // A source whose token server cannot be reached is refused; the current one keeps serving.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let broken = Yaml::parse(&changed)
        .set(
            "outbound.tokens.default.token_url",
            &format!("http://{closed}/token"),
        )
        .set("outbound.tokens.default.fetch_timeout", "200ms")
        .text();
    let err = o
        .app
        .reload(Config::from_yaml(&broken, "test", &|_| None).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("could not be fetched"), "{err}");
    assert_eq!(o.call("api.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(claims_of(&o.seen_authorization())["scope"], "orders:write");

    // Listener settings need a restart (the new port is one held here).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let moved = Yaml::parse(&changed)
        .set("outbound.listen", &held.local_addr().unwrap().to_string())
        .text();
    let err = o
        .app
        .reload(Config::from_yaml(&moved, "test", &|_| None).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("restart to apply"), "{err}");
    o.app.shutdown().await;
}

#[tokio::test]
async fn a_route_without_a_token_passes_the_request_through() {
    let (issuer, echo) = parts().await;
    let upstream = format!("http://{}", echo.addr);
    let yaml = outbound_yaml(&issuer.token_url(), &upstream, "", "");
    let yaml = Yaml::parse(&yaml)
        .insert(
            "outbound.routes",
            1,
            &format!("{{ host: public.test, upstream: \"{upstream}\" }}"),
        )
        .text();
    let o = Out::from_app(issuer, echo, start_yaml(&yaml).await);
    o.ready().await;

    let own = ("authorization", "Bearer app-own-secret".to_string());
    let proof = ("dpop", "app-own-proof".to_string());
    let (status, body) = o
        .call("public.test", "/p", &[own.clone(), proof.clone()])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(o.seen_authorization(), "Bearer app-own-secret");
    assert_eq!(o.echo.last_headers().unwrap()["dpop"], "app-own-proof");
    let (status, _) = o.call("public.test", "/p", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(o
        .echo
        .last_headers()
        .unwrap()
        .get("authorization")
        .is_none());

    // The tokened route beside it still replaces the app's credentials, its
    // DPoP proof included.
    let (status, _) = o.call("api.test", "/t", &[own, proof]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(o.seen_authorization().starts_with("Bearer ey"));
    assert!(o.echo.last_headers().unwrap().get("dpop").is_none());
    assert_eq!(
        o.metric(
            "tokengate_requests_total{direction=\"outbound\",route=\"public.test\",status=\"200\"}"
        )
        .await,
        2.0
    );
    o.app.shutdown().await;
}
