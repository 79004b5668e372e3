//! `tokengate verify` explains the proxy's own decision: the same requests,
//! sent as raw bytes to a running proxy and described to the CLI, get the same
//! status (and the CLI's label is the `error` the proxy answered with).

mod support;

use serde_json::json;
use std::process::Command;
use std::time::Duration;
use support::*;
use tokengate::demo::{unix_now, DevIssuer, Echo, KeyKind, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

struct Case {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    token: Option<String>,
    /// The status both must give; checked so that agreeing on a wrong answer fails too.
    want: u16,
}

fn case(
    name: &'static str,
    method: &'static str,
    target: &'static str,
    token: Option<String>,
    want: u16,
) -> Case {
    Case {
        name,
        method,
        target,
        token,
        want,
    }
}

/// The proxy's answer to `case`, sent as raw bytes: status, and the `error` of
/// its JSON body (`forward` when the app answered).
async fn proxy(addr: std::net::SocketAddr, case: &Case) -> (u16, String) {
    let auth = case
        .token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let raw = format!(
        "{} {} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n",
        case.method, case.target
    );
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("the proxy answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status: u16 = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}: no status in {answer:?}", case.name));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let label = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v["error"].is_string() => v["error"].as_str().unwrap().to_string(),
        _ => "forward".to_string(),
    };
    (status, label)
}

/// The CLI's decision for `case`: status and label of its `decision:` line, and
/// its exit code.
async fn cli(config: &std::path::Path, case: &Case) -> (u16, String, i32) {
    let mut args = vec![
        "verify".to_string(),
        "--config".into(),
        config.to_str().unwrap().into(),
        "--method".into(),
        case.method.into(),
        "--path".into(),
        case.target.into(),
    ];
    if let Some(t) = &case.token {
        args.extend(["--token".into(), t.clone()]);
    }
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output())
        .await
        .unwrap()
        .expect("run tokengate verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let decision = decision_line(&stdout)
        .strip_prefix("decision: ")
        .unwrap_or_else(|| panic!("no decision line: {stdout}"));
    let (status, label) = decision.split_once(' ').expect("status and label");
    (
        status.parse().unwrap(),
        label.to_string(),
        out.status.code().unwrap_or(-1),
    )
}

/// Runs `cases` through a proxy started on `inbound_extra` and through the CLI
/// on the same config file.
async fn agree(
    issuer: &DevIssuer,
    echo: &Echo,
    issuer_extra: &str,
    inbound_extra: &str,
    cases: &[Case],
) {
    let yaml = config_yaml(
        &issuer.issuer,
        &format!("http://{}", echo.addr),
        issuer_extra,
        inbound_extra,
    );
    let file = temp_file("agree.yaml", &yaml);
    let app = start_yaml(&yaml).await;
    let addr = app.inbound_addr.unwrap();
    wait_ready(&app).await;
    for case in cases {
        assert_decisions(addr, &file, case).await;
    }
    app.shutdown().await;
}

async fn assert_decisions(addr: std::net::SocketAddr, config: &std::path::Path, case: &Case) {
    let (proxy_status, proxy_label) = proxy(addr, case).await;
    let (cli_status, cli_label, code) = cli(config, case).await;
    assert_eq!(proxy_status, case.want, "{}: the proxy", case.name);
    assert_eq!(
        cli_status, proxy_status,
        "{}: the CLI and the proxy disagree",
        case.name
    );
    assert_eq!(cli_label, proxy_label, "{}: label", case.name);
    assert_eq!(
        code,
        if cli_status == 200 { 0 } else { 1 },
        "{}: exit code",
        case.name
    );
}

#[tokio::test]
async fn verify_and_the_proxy_decide_alike() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let read = || Some(issuer.mint(json!({ "scope": "orders:read" })));
    let expired = || Some(issuer.mint(json!({ "scope": "orders:read", "exp": unix_now() - 3600 })));
    let garbage = || Some("garbage".to_string());
    let strict = [
        case(
            "anonymous route, garbage token",
            "GET",
            "/public/x",
            garbage(),
            200,
        ),
        case("anonymous route, no token", "GET", "/public/x", None, 200),
        case("valid", "GET", "/orders/1?x=1", read(), 200),
        case("missing scope", "POST", "/orders/1", read(), 403),
        case("no token", "GET", "/orders/1", None, 401),
        case("expired", "GET", "/orders/1", expired(), 401),
        case("garbage token", "GET", "/orders/1", garbage(), 401),
        case("no matching rule", "GET", "/nowhere", read(), 403),
        case(
            "non-canonical path",
            "GET",
            "/public/../orders/1",
            None,
            400,
        ),
        case(
            "encoded dot segment",
            "GET",
            "/public/%2e%2e/orders/1",
            None,
            400,
        ),
        case("lower-case method", "get", "/public/x", None, 400),
    ];
    agree(&issuer, &echo, "", "", &strict).await;

    let permissive = [
        case("permissive, no token", "GET", "/orders/1", None, 200),
        case("permissive, bad token", "GET", "/orders/1", garbage(), 401),
        case(
            "permissive, missing scope",
            "POST",
            "/orders/1",
            read(),
            403,
        ),
    ];
    agree(&issuer, &echo, "", "mode: permissive", &permissive).await;

    let audit = [
        case("audit, bad token", "GET", "/orders/1", garbage(), 200),
        case("audit, no rule", "GET", "/nowhere", None, 200),
        case(
            "audit, non-canonical path",
            "GET",
            "/public/../orders/1",
            None,
            400,
        ),
    ];
    agree(&issuer, &echo, "", "mode: audit", &audit).await;
}

#[tokio::test]
async fn keys_past_their_stale_bound_are_a_503_to_both() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = config_yaml(
        &issuer.issuer,
        &format!("http://{}", echo.addr),
        "jwks_cache: { refresh_interval: 1s, min_refresh: 1s, stale_if_error: 1s }",
        "",
    );
    let file = temp_file("stale.yaml", &yaml);
    let app = start_yaml(&yaml).await;
    wait_ready(&app).await;
    let token = issuer.mint(json!({ "scope": "orders:read" }));
    issuer.set_failing(true);
    let stale = case(
        "keys past their stale bound",
        "GET",
        "/orders/1",
        Some(token),
        503,
    );
    let addr = app.inbound_addr.unwrap();
    // Bounded wait for the keys to pass their bound.
    eventually(Duration::from_millis(5000), || async {
        proxy(addr, &stale).await.0 != 200
    })
    .await;
    assert_decisions(addr, &file, &stale).await;
    let anonymous = case("anonymous route meanwhile", "GET", "/public/x", None, 200);
    assert_decisions(addr, &file, &anonymous).await;
    app.shutdown().await;
}

/// The `decision:` line: the last line, or the one before a token the
/// decision did not reach, judged on its own line after it.
fn decision_line(stdout: &str) -> &str {
    let mut lines = stdout.lines().rev();
    let last = lines.next().unwrap_or("");
    match last.starts_with("token (not reached by the decision): ") {
        true => lines.next().unwrap_or(""),
        false => last,
    }
}

#[test]
fn the_decision_line_is_last_and_exact() {
    // No network needed: a config whose issuer has only a shared secret.
    let yaml = r#"
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://127.0.0.1:1"
  issuers:
    - issuer: "https://idp"
      shared_secret: "0123456789abcdef0123456789abcdef"
      algorithms: [HS256]
      audiences: [api]
  rules:
    - { path: /public, allow: anonymous }
    - { path: /orders, scopes: ["orders:read"] }
"#;
    let file = temp_file("decision.yaml", yaml);
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["verify", "--config", file.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["--path", "/public/x", "--token", "garbage"],
            0,
            "decision: 200 forward",
        ),
        (
            &["--path", "/orders/1", "--token", "garbage"],
            1,
            "decision: 401 invalid_token",
        ),
        (&["--path", "/orders/1"], 1, "decision: 401 invalid_request"),
        (&["--path", "/nowhere"], 1, "decision: 403 access_denied"),
        (&["--path", "/public/./x"], 1, "decision: 400 bad_request"),
    ];
    for (args, code, line) in cases {
        let (got, stdout) = run(args);
        assert_eq!(got, Some(code), "{args:?}: {stdout}");
        assert_eq!(decision_line(&stdout), line, "{args:?}: {stdout}");
        // Only a token the decision did not reach is judged after it.
        let after = stdout.lines().last() != Some(line);
        assert_eq!(
            after,
            args == ["--path", "/public/x", "--token", "garbage"],
            "{stdout}"
        );
    }
}
