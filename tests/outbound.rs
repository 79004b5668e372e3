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
use tokio_util::sync::CancellationToken;

struct Out {
    issuer: DevIssuer,
    echo: Echo,
    app: tokengate::App,
    base: String,
    admin: String,
}

/// Outbound config: route `api.test` → `upstream` with token `default` from the
/// issuer; `extra_token` is YAML under that token, `extra` under `outbound:`.
fn outbound_yaml(token_url: &str, upstream: &str, extra_token: &str, extra: &str) -> String {
    let indent = |text: &str, n: usize| {
        text.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
outbound:
  listen: "127.0.0.1:0"
  routes:
    - {{ host: api.test, upstream: "{upstream}", token: default }}
  tokens:
    default:
      kind: client_credentials
      token_url: "{token_url}"
      client_id: demo-app
      client_secret: demo-app-secret
      scopes: ["orders:read"]
      audience: {AUD}
{extra_token}{extra}"#,
        extra_token = indent(extra_token, 6),
        extra = indent(extra, 2),
    )
}

async fn start(issuer: DevIssuer, echo: Echo, extra_token: &str, extra: &str) -> Out {
    let yaml = outbound_yaml(
        &issuer.token_url(),
        &format!("http://{}", echo.addr),
        extra_token,
        extra,
    );
    let config =
        Config::from_yaml(&yaml, "test", &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let app = tokengate::start(&config, CancellationToken::new())
        .await
        .unwrap();
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

async fn parts() -> (DevIssuer, Echo) {
    (
        DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
            .await
            .unwrap(),
        Echo::start().await.unwrap(),
    )
}

impl Out {
    async fn ready(&self) {
        for _ in 0..400 {
            if get(&format!("{}/readyz", self.admin), None).await.0 == StatusCode::OK {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("outbound never became ready");
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
    while o.issuer.token_calls().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        get(&format!("{}/readyz", o.admin), None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        o.metric("tokengate_token_refresh_total{result=\"rejected\",token=\"default\"}")
            .await,
        1.0
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
    let (status, body) = o.call("api.test", "/again", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(o.echo.hits(), hits + 2, "one refused attempt, one retry");
    assert_eq!(o.issuer.token_calls().len(), 2, "exactly one refetch");
    let second = o.seen_authorization();
    assert_ne!(first, second);

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
    for _ in 0..400 {
        if o.issuer.token_calls().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        o.issuer.token_calls().len(),
        3,
        "a renewal followed the refused streamed request"
    );
    assert_eq!(o.call("api.test", "/after", &[]).await.0, StatusCode::OK);
    o.app.shutdown().await;
}

#[tokio::test]
async fn a_file_token_is_reread_when_it_changes() {
    let (issuer, echo) = parts().await;
    let file = std::env::temp_dir().join(format!("tokengate-{}-file-token", std::process::id()));
    std::fs::write(&file, "first-token\n").unwrap();
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
    let config = Config::from_yaml(&yaml, "test", &|_| None).unwrap();
    let app = tokengate::start(&config, CancellationToken::new())
        .await
        .unwrap();
    let o = Out {
        base: format!("http://{}", app.outbound_addr.unwrap()),
        admin: format!("http://{}", app.admin_addr),
        issuer,
        echo,
        app,
    };
    o.ready().await;
    assert_eq!(o.call("anything.test", "/", &[]).await.0, StatusCode::OK);
    assert_eq!(o.seen_authorization(), "Bearer first-token");
    std::fs::write(&file, "second-token\n").unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        o.call("anything.test", "/", &[]).await;
        seen = o.seen_authorization();
        if seen == "Bearer second-token" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen, "Bearer second-token",
        "the changed file is picked up without a restart"
    );
    std::fs::remove_file(&file).unwrap();
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
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "growing back-off: {gaps:?}"
    );

    // Recovery: once the server answers again, requests succeed.
    o.issuer.set_token_failing(false);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..100 {
        status = o.call("api.test", "/", &[]).await.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::OK);
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
    let guard_yaml = config_yaml(&issuer.issuer, &format!("http://{}", echo.addr), "", "")
        .replace("leeway: 5s", "leeway: 0s");
    let guard = tokengate::start(
        &Config::from_yaml(&guard_yaml, "guard", &|_| None).unwrap(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let guard_url = format!("http://{}", guard.inbound_addr.unwrap());
    let stable =
        std::env::temp_dir().join(format!("tokengate-{}-stable-token", std::process::id()));
    std::fs::write(&stable, issuer.mint(json!({ "scope": "orders:read" }))).unwrap();
    let yaml = outbound_yaml(&issuer.token_url(), &guard_url, "", "")
        .replace(
            "  tokens:\n",
            &format!("    - {{ host: stable.test, upstream: \"{guard_url}\", token: stable }}\n  tokens:\n    stable: {{ kind: file, path: \"{}\" }}\n", stable.display()),
        );
    let app = tokengate::start(
        &Config::from_yaml(&yaml, "out", &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}")),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let o = Out {
        base: format!("http://{}", app.outbound_addr.unwrap()),
        admin: format!("http://{}", app.admin_addr),
        issuer,
        echo,
        app,
    };
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
    std::fs::remove_file(&stable).unwrap();
    o.app.shutdown().await;
    guard.shutdown().await;
}
