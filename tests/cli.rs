//! The real binary: exit codes, `check`, `verify` explanations, `run` with a
//! SIGTERM drain, and `demo` as a newcomer would use it.

mod support;

use hyper::StatusCode;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::process::*;
use support::*;
use tokengate::demo::{unix_now, DevIssuer, Echo, KeyKind, SigningKey};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run tokengate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml");
    let (code, stdout, stderr) = run(&["check", "--config", example]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn check_exits_64_and_names_the_typo() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))
            .unwrap();
    let typo = Yaml::parse(&example)
        .rename("inbound.issuers[0].audiences", "audience")
        .text();
    let typo = temp_file("typo.yaml", &typo);
    let (code, _, stderr) = run(&["check", "--config", typo.to_str().unwrap()]);
    assert_eq!(code, 64);
    assert!(
        stderr.contains("inbound.issuers[0].audience: unknown field `audience`"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["check", "--config", "/nonexistent/tokengate.yaml"]);
    assert_eq!(code, 64);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn bad_usage_exits_64_and_workers_is_a_global_option() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml");
    let (code, _, stderr) = run(&["--workers", "0", "check", "--config", example]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--workers"), "{stderr}");
    let (code, _, stderr) = run(&["check", "--config", example, "--bogus"]);
    assert_eq!(code, 64, "{stderr}");
    for workers in ["1", "3"] {
        let (code, stdout, stderr) = run(&["--workers", workers, "check", "--config", example]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("OK"), "{stdout}");
    }
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--workers"), "{stdout}");
}

#[test]
fn check_summarizes_both_directions() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml");
    let (code, stdout, _) = run(&["check", "--config", example]);
    assert_eq!(code, 0);
    let config = tokengate::config::Config::load(std::path::Path::new(example)).unwrap();
    for line in [
        format!("inbound  {}", config.inbound.unwrap().listen),
        format!("outbound {}", config.outbound.unwrap().listen),
        "host *  → https://api.example.com/  token default".to_string(),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in {stdout}");
    }
}

/// Files a config names may exist only in the pod (a mounted Secret, a
/// projected token): offline, `check` warns about each and exits 0 — the
/// shipped outbound example included; `--online` reads them and fails.
/// A file that is there but wrong still fails offline.
#[test]
fn check_offline_warns_about_files_that_exist_only_where_it_runs() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/outbound-sidecar/tokengate.yaml"
    );
    let (code, stdout, stderr) = run(&["check", "--config", example]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(
        stderr.contains("warning: /var/run/secrets/reports-client/client-secret does not exist"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let gone = |name: &str| dir.path().join("mounted").join(name).display().to_string();
    let yaml = format!(
        r#"inbound:
  listen: "127.0.0.1:0"
  upstream: "http://127.0.0.1:1"
  issuers:
    - issuer: "https://issuer.example"
      jwks_uri: "https://issuer.example/jwks.json"
      jwks_bearer_token_file: {bearer}
      audiences: [api]
      tls: {{ ca_file: {ca} }}
  rules:
    - {{ path: /, allow: anonymous }}
outbound:
  listen: "127.0.0.1:0"
  tls: {{ cert_file: {cert}, key_file: {key} }}
  routes:
    - {{ host: "*", upstream: "https://api.example", token: secret }}
  tokens:
    secret:
      kind: client_credentials
      token_url: "https://idp.example/token"
      client_id: app
      client_secret_file: {secret}
    signed:
      kind: client_credentials
      token_url: "https://idp.example/token"
      client_id: app
      client_auth: private_key_jwt
      private_key_file: {private}
"#,
        bearer = gone("bearer"),
        ca = gone("ca.crt"),
        cert = gone("tls.crt"),
        key = gone("tls.key"),
        secret = gone("client-secret"),
        private = gone("key.pem"),
    );
    let config = temp_file("absent-files.yaml", &yaml);
    let config = config.to_str().unwrap();
    let (code, stdout, stderr) = run(&["check", "--config", config]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for name in [
        "bearer",
        "ca.crt",
        "tls.crt",
        "tls.key",
        "client-secret",
        "key.pem",
    ] {
        let warning = format!("warning: {} does not exist here", gone(name));
        assert!(stderr.contains(&warning), "missing {warning:?} in {stderr}");
    }
    assert!(stdout.contains("token signed"), "{stdout}");

    let (code, _, stderr) = run(&["check", "--online", "--config", config]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("client-secret") && stderr.contains("cannot read"),
        "{stderr}"
    );

    // There but not a certificate: validated as before.
    let not_pem = temp_file("not-a-cert.pem", "hello");
    let wrong = Yaml::parse(&yaml)
        .set("inbound.issuers[0].tls.ca_file", not_pem.to_str().unwrap())
        .text();
    let wrong = temp_file("wrong-file.yaml", &wrong);
    let (code, _, stderr) = run(&["check", "--config", wrong.to_str().unwrap()]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("inbound.issuers[0].tls.ca_file"),
        "{stderr}"
    );
}

#[test]
fn run_exits_1_when_it_cannot_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml = config_yaml("https://idp.invalid", "http://127.0.0.1:1", "", "");
    let yaml = Yaml::parse(&yaml)
        .set("inbound.listen", &format!("127.0.0.1:{port}"))
        .text();
    let path = temp_file("taken.yaml", &yaml);
    let (code, _, stderr) = run(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[tokio::test]
async fn verify_explains_each_check() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let config = temp_file(
        "verify.yaml",
        &config_yaml(&issuer.issuer, "http://127.0.0.1:1", "", ""),
    );
    let config = config.to_str().unwrap().to_string();
    let expired_at = unix_now() - 3600;
    let expired = issuer.mint(json!({ "exp": expired_at, "scope": "orders:read" }));
    let good = issuer.mint(json!({ "scope": "orders:read" }));
    let verify = move |token: String, path: &'static str, method: &'static str| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            run(&[
                "verify", "--config", &config, "--token", &token, "--path", path, "--method",
                method,
            ])
        })
    };

    let (code, stdout, _) = verify(expired, "/orders/1", "GET").await.unwrap();
    assert_eq!(code, 1);
    assert!(stdout.contains("ok    signature"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL  expired        token expired at {expired_at}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("REJECTED with 401"), "{stdout}");

    let (code, stdout, _) = verify(good.clone(), "/orders/1", "GET").await.unwrap();
    assert_eq!(code, 0, "{stdout}");
    for line in [
        "ok    alg",
        "ok    exp",
        "ok    aud",
        "rules[2] /orders requirements met",
        "ALLOWED",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in {stdout}");
    }
    assert!(!stdout.contains(&good), "the token itself is never printed");

    let (code, stdout, _) = verify(good, "/orders", "POST").await.unwrap();
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FAIL  rule") && stdout.contains("orders:write"),
        "{stdout}"
    );
}

/// With no `--path` the request is `GET /`, which no rule takes: the decision
/// is the proxy's (no rule → 403, exit 1), and a line after it still says what
/// is wrong with the token itself — or that it is valid.
#[tokio::test]
async fn verify_judges_the_token_even_when_the_decision_stops_before_it() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let config = temp_file(
        "verify-no-path.yaml",
        &config_yaml(&issuer.issuer, "http://127.0.0.1:1", "", ""),
    );
    let config = config.to_str().unwrap().to_string();
    let expired_at = unix_now() - 3600;
    let mut other = issuer.mint(json!({ "scope": "orders:read" }));
    other.replace_range(other.len() - 4.., "AAAA");
    let cases = [
        (
            issuer.mint(json!({ "exp": expired_at })),
            format!("FAIL expired: token expired at {expired_at}"),
        ),
        (
            issuer.mint(json!({ "aud": "someone-else" })),
            "FAIL wrong_audience: audience does not match".to_string(),
        ),
        (
            other,
            "FAIL bad_signature: signature does not verify".to_string(),
        ),
        (
            issuer.mint(json!({ "scope": "orders:read" })),
            format!("valid, issuer {}, scopes [orders:read]", issuer.issuer),
        ),
    ];
    for (token, says) in cases {
        let config = config.clone();
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
            run(&["verify", "--config", &config, "--token", &token])
        })
        .await
        .unwrap();
        assert_eq!(code, 1, "{stdout}{stderr}");
        let (decided, after) = stdout
            .split_once("decision: 403 access_denied\n")
            .unwrap_or_else(|| panic!("the decision stays the proxy's: {stdout}"));
        assert!(decided.contains("no rule matches"), "{stdout}");
        assert!(
            after.starts_with(&format!("token (not reached by the decision): {says}"))
                && after.lines().count() == 1,
            "{stdout}"
        );
    }
}

/// Polls `url` until it stops answering 503 (bounded), returning the last status.
async fn once_serving(url: &str, token: Option<&str>) -> StatusCode {
    // The status the last poll got, not a fresh request after it: callers
    // count the requests the app saw and the access-log lines written.
    let last = std::sync::Mutex::new(None);
    eventually(Duration::from_millis(5000), || async {
        let status = get(url, token).await.0;
        *last.lock().unwrap() = Some(status);
        status != StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    last.into_inner().unwrap().expect("polled at least once")
}

// Multi-threaded: the log reader blocks, and the in-process issuer must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_drains_in_flight_requests_on_sigterm_and_exits_0() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let config = temp_file(
        "run.yaml",
        &config_yaml(&issuer.issuer, &format!("http://{}", echo.addr), "", ""),
    );
    let run = Running::start(&config);
    let base = run.base.clone();
    assert_eq!(
        once_serving(&format!("{base}/public/x"), None).await,
        StatusCode::OK
    );
    // A slow request is in flight when SIGTERM arrives; it still completes.
    let slow = tokio::spawn(async move {
        get(&format!("{base}/public/slow?delay_ms=800"), None)
            .await
            .0
    });
    assert!(
        eventually(Duration::from_secs(10), || async { echo.hits() >= 2 }).await,
        "the slow request never reached the app"
    );
    let code = tokio::task::spawn_blocking(move || run.stop());
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    assert_eq!(code.await.unwrap(), 0);
}

#[tokio::test]
async fn demo_shows_a_401_a_200_and_a_403() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("demo printed its banner")
        .unwrap();
    let text = lines.join("\n");
    assert!(text.contains("DEVELOPMENT ONLY"), "{text}");
    let value = |prefix: &str| {
        lines.iter().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .map(|v| v.split_whitespace().next().unwrap().to_string())
        })
    };
    let read = value("READ=").expect("READ token");
    let guard = value("guard").expect("guard URL");
    assert_eq!(
        get(&format!("{guard}/orders/42"), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&format!("{guard}/orders/42"), Some(&read)).await.0,
        StatusCode::OK
    );
    let (status, _, _) = send(
        hyper::Method::POST,
        &format!("{guard}/orders"),
        &[("authorization", format!("Bearer {read}"))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    terminate(&child);
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, 0);
}

/// Every `curl -i` command the demo prints, run as printed (by `sh`, with the
/// printed READ and WRITE), answers with the status, `error` and reason its
/// comment promises.
#[tokio::test]
async fn the_demo_commands_do_what_their_comments_say() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.contains("Ctrl-C"))
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("demo printed its banner")
        .unwrap();
    let exports: String = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("READ=") || l.starts_with("WRITE="))
        .map(|l| format!("{l}; "))
        .collect();
    let commands: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("curl -i"))
        .collect();
    assert!(commands.len() >= 5, "{lines:?}");
    for line in commands {
        let (command, comment) = line.split_once("# ").expect("a comment with the outcome");
        let want_status = &comment[..3];
        let want_error = comment[3..]
            .strip_prefix(": ")
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|label| label.contains('_'));
        let script = format!(
            "{exports}{} -s -w '\\n%{{http_code}}'",
            command.trim().replacen("curl -i", "curl", 1)
        );
        let out = tokio::task::spawn_blocking(move || {
            Command::new("sh").args(["-c", &script]).output().unwrap()
        })
        .await
        .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = answer.rsplit_once('\n').unwrap_or(("", &answer));
        assert_eq!(status, want_status, "{line}\n{answer}");
        if let Some(label) = want_error {
            assert!(body.contains(&format!("\"{label}\"")), "{line}\n{answer}");
            // The reason in parentheses (up to a colon) is the answer's error_description.
            if let Some((_, reason)) = comment.split_once('(') {
                let reason = reason.split([':', ')']).next().unwrap_or(reason);
                assert!(body.contains(reason), "{line}\n{answer}");
            }
        }
    }
    terminate(&child);
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, 0);
}

// Multi-threaded: the log reader blocks, and the in-process issuer must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_valid_config_and_rejects_an_invalid_one() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = config_yaml(&issuer.issuer, &format!("http://{}", echo.addr), "", "");
    let config = temp_file("reload.yaml", &yaml);
    let run = Running::start(&config);
    let url = format!("{}/items/1", run.base);
    let token = issuer.mint(json!({ "scope": "items:read" }));
    assert_eq!(once_serving(&url, Some(&token)).await, StatusCode::OK);

    // Valid change: /items now needs a scope the token lacks.
    let scoped = Yaml::parse(&yaml).set("inbound.rules[1].scopes", "[items:admin]");
    std::fs::write(&config, scoped.text()).unwrap();
    hangup(&run.child);
    run.wait_for("config reloaded");
    assert_eq!(get(&url, Some(&token)).await.0, StatusCode::FORBIDDEN);

    // Invalid change: rejected, the running config keeps serving.
    let typo = Yaml::parse(&yaml).rename("inbound.issuers[0].audiences", "audience");
    std::fs::write(&config, typo.text()).unwrap();
    hangup(&run.child);
    let rejected = run.wait_for("reload rejected");
    assert!(
        rejected.contains("inbound.issuers[0].audience"),
        "{rejected}"
    );
    assert_eq!(get(&url, Some(&token)).await.0, StatusCode::FORBIDDEN);

    let code = tokio::task::spawn_blocking(move || run.stop())
        .await
        .unwrap();
    assert_eq!(code, 0);
}

/// A mounted ConfigMap changes the way the kubelet changes it: a new
/// `..data_N` directory, then an atomic rename of the `..data` symlink, which
/// `tokengate.yaml` (a symlink into `..data`) follows. No signal is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_is_applied_without_a_signal() {
    use std::os::unix::fs::symlink;
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = config_yaml(&issuer.issuer, &format!("http://{}", echo.addr), "", "");
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    let publish = |version: u32, text: &str| {
        let data = mount.join(format!("..data_{version}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tokengate.yaml"), text).unwrap();
        let staged = mount.join("..data_tmp");
        symlink(format!("..data_{version}"), &staged).unwrap();
        std::fs::rename(&staged, mount.join("..data")).unwrap();
    };
    publish(1, &yaml);
    symlink("..data/tokengate.yaml", mount.join("tokengate.yaml")).unwrap();
    let config = mount.join("tokengate.yaml");
    let run = tokio::task::spawn_blocking(move || Running::start(&config))
        .await
        .unwrap();
    let url = format!("{}/items/1", run.base);
    let token = issuer.mint(json!({ "scope": "items:read" }));
    assert_eq!(once_serving(&url, Some(&token)).await, StatusCode::OK);

    // Valid change: /items now needs a scope the token lacks.
    let scoped = Yaml::parse(&yaml).set("inbound.rules[1].scopes", "[items:admin]");
    publish(2, &scoped.text());
    let (run, applied) = tokio::task::spawn_blocking(move || {
        let line = run.wait_for("config reloaded");
        (run, line)
    })
    .await
    .unwrap();
    assert!(
        applied.contains("tokengate.yaml"),
        "names the file: {applied}"
    );
    assert_eq!(get(&url, Some(&token)).await.0, StatusCode::FORBIDDEN);

    // Invalid change: refused, the running config keeps serving.
    let typo = Yaml::parse(&yaml).rename("inbound.issuers[0].audiences", "audience");
    publish(3, &typo.text());
    let (run, rejected) = tokio::task::spawn_blocking(move || {
        let line = run.wait_for("reload rejected");
        (run, line)
    })
    .await
    .unwrap();
    assert!(
        rejected.contains("inbound.issuers[0].audience"),
        "{rejected}"
    );
    assert_eq!(get(&url, Some(&token)).await.0, StatusCode::FORBIDDEN);
    let metrics = get(&format!("{}/metrics", run.admin), None).await.2;
    assert_eq!(
        metric_value(
            &metrics,
            "tokengate_config_reloads_total{result=\"applied\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "tokengate_config_reloads_total{result=\"rejected\"}"
        ),
        1.0
    );

    let code = tokio::task::spawn_blocking(move || run.stop())
        .await
        .unwrap();
    assert_eq!(code, 0);
}

/// One access-log line per request, in JSON with `--log-format json`: where it
/// went, what was asked (the path, never the query), what came of it and why;
/// never the token. `--access-log off` silences it; a bad `--log-level` is a
/// usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_access_log_line_without_its_token() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = config_yaml(&issuer.issuer, &format!("http://{}", echo.addr), "", "");
    let config = temp_file("access.yaml", &yaml);
    let start = |extra: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "json"])
            .args(extra)
            .args(["run", "--config", config.to_str().unwrap()])
            .env_remove("RUST_LOG");
        Running::spawn(command)
    };
    let running = start(&[]);
    // Ready first: a request before the keys load is answered 503 and logged
    // too, which would be a second line for its path.
    ready_at(&running.admin).await;
    let token = issuer.mint(json!({ "scope": "items:read" }));
    assert_eq!(
        once_serving(
            &format!("{}/items/1?access_token=hush", running.base),
            Some(&token)
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        get(&format!("{}/items/2", running.base), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Every request's line, up to the denied one.
    let (running, lines) = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        loop {
            let line = running.wait_for("tokengate::access");
            let last = line.contains("/items/2");
            lines.push(line);
            if last {
                return (running, lines);
            }
        }
    })
    .await
    .unwrap();
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    let of = |path: &str| {
        let found: Vec<_> = entries
            .iter()
            .filter(|e| e["fields"]["path"] == path)
            .collect();
        assert_eq!(found.len(), 1, "one line for {path}: {lines:?}");
        found[0]["fields"].clone()
    };
    let ok = of("/items/1");
    assert_eq!(ok["direction"], "inbound");
    assert_eq!(ok["route"], "/items");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/items/1");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["reason"], "valid_token");
    assert_eq!(ok["upstream_status"], 200);
    assert!(ok["duration_ms"].as_f64().is_some(), "{ok}");
    let denied = of("/items/2");
    assert_eq!(denied["status"], 401);
    assert_eq!(denied["reason"], "missing_token");
    assert!(
        denied.get("upstream_status").is_none_or(|v| v.is_null()),
        "{denied}"
    );
    for line in &lines {
        assert!(!line.contains(&token) && !line.contains("hush"), "{line}");
    }
    let code = tokio::task::spawn_blocking(move || running.stop())
        .await
        .unwrap();
    assert_eq!(code, 0);

    let quiet = start(&["--access-log", "off"]);
    assert_eq!(
        once_serving(&format!("{}/public/x", quiet.base), None).await,
        StatusCode::OK
    );
    let logged = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Ok(line) = quiet.lines.recv_timeout(Duration::from_millis(300)) {
            seen.push(line);
        }
        quiet.stop();
        seen
    })
    .await
    .unwrap();
    assert!(
        !logged.iter().any(|l| l.contains("tokengate::access")),
        "{logged:?}"
    );

    let (code, _, stderr) = run(&[
        "--log-level",
        "tokengate=loud",
        "check",
        "--config",
        "x.yaml",
    ]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("not a log level"), "{stderr}");
}

/// stderr that nobody reads (a log collector that stalled) never holds a
/// request up: the access log's bounded buffer fills, later lines are dropped
/// and counted in `tokengate_access_log_dropped_total`, and every line kept is
/// written once stderr drains, the last of them at exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stderr_drops_access_lines_and_never_blocks_a_request() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = config_yaml(&issuer.issuer, &format!("http://{}", echo.addr), "", "");
    let config = temp_file("stalled.yaml", &yaml);
    let mut child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Read up to the start-up line, then stop reading: the pipe (64 KiB) fills.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let started = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        while !line.contains("tokengate started") {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "exited early");
        }
        (stderr, line)
    });
    let (mut stderr, line) = tokio::time::timeout(Duration::from_secs(20), started)
        .await
        .expect("started")
        .unwrap();
    let (base, admin) = (
        format!("http://{}", field(&line, "inbound")),
        format!("http://{}", field(&line, "admin")),
    );
    ready_at(&admin).await;
    // About 3.4 MB of lines: more than the pipe, the buffer (1 MiB) and the
    // batch the writer is stuck writing (at most 1 MiB) hold together.
    let (tasks, each) = (8, 2000);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("{base}/public/x").parse().unwrap();
    let requests = (0..tasks).map(|_| {
        let (client, uri) = (client.clone(), uri.clone());
        tokio::spawn(async move {
            for _ in 0..each {
                let resp = client.get(uri.clone()).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .unwrap();
            }
        })
    });
    let all = join_all_tasks(requests);
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("every request answered while stderr was stalled");
    let dropped = metric_value(
        &get(&format!("{admin}/metrics"), None).await.2,
        "tokengate_access_log_dropped_total",
    );
    assert!(
        dropped > 0.0,
        "nothing dropped: the test did not fill the buffer"
    );
    // Drain stderr; stop; every line not dropped is there, each one whole.
    let reader = std::thread::spawn(move || {
        let mut access = 0u64;
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap_or(0) > 0 {
            if line.contains("tokengate::access") {
                assert!(
                    line.ends_with('\n') && line.contains(" duration_ms="),
                    "{line}"
                );
                access += 1;
            }
            line.clear();
        }
        access
    });
    terminate(&child);
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let written = reader.join().unwrap();
    assert_eq!(written as f64, f64::from(tasks * each) - dropped);
}

/// Every future of `futures`, to completion (a panic in one is re-raised).
async fn join_all_tasks(futures: impl Iterator<Item = tokio::task::JoinHandle<()>>) {
    for handle in futures.collect::<Vec<_>>() {
        handle.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prints_lifetime_and_claims_never_the_token() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let yaml = format!(
        "outbound:\n  listen: \"127.0.0.1:0\"\n  routes: [{{ host: \"*\", upstream: \"http://127.0.0.1:9\", token: default }}]\n  tokens:\n    default: {{ kind: client_credentials, token_url: \"{}\", client_id: demo-app, client_secret: demo-app-secret, scopes: [orders:read] }}\n    broken: {{ kind: client_credentials, token_url: \"{}\", client_id: demo-app, client_secret: wrong }}\n",
        issuer.token_url(),
        issuer.token_url()
    );
    let config = temp_file("token.yaml", &yaml);
    let path = config.to_str().unwrap().to_string();
    let p = path.clone();
    let (code, stdout, _) =
        tokio::task::spawn_blocking(move || run(&["token", "--config", &p, "--name", "default"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("token default (client_credentials): ok"),
        "{stdout}"
    );
    assert!(stdout.contains("lifetime 3600s"), "{stdout}");
    assert!(
        stdout.contains("\"client_id\": \"demo-app\"")
            && stdout.contains("\"scope\": \"orders:read\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("eyJ"),
        "the token itself is never printed: {stdout}"
    );
    let p = path.clone();
    let (code, stdout, _) =
        tokio::task::spawn_blocking(move || run(&["token", "--config", &p, "--name", "broken"]))
            .await
            .unwrap();
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FAILED: token endpoint refused (401): invalid_client"),
        "{stdout}"
    );
    let (code, _, stderr) =
        tokio::task::spawn_blocking(move || run(&["token", "--config", &path, "--name", "nope"]))
            .await
            .unwrap();
    assert_eq!(code, 64);
    assert!(stderr.contains("configured: broken, default"), "{stderr}");
}

/// The image's runtime contract (deploy/Dockerfile), without a container
/// engine: the release binary, copied to a directory of its own as the image
/// holds it, runs as uid/gid 65532 (when this test may switch users; otherwise
/// as the unprivileged user running it), from `/`, with no environment, its
/// config and secret read-only; it becomes ready and serves, and writes no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_binary_runs_unprivileged_with_a_read_only_config() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    const NONROOT: u32 = 65532;
    let echo = Echo::start().await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let bin = dir.join("tokengate");
    std::fs::copy(BIN, &bin).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    let config = dir.join("tokengate.yaml");
    std::fs::write(
        &config,
        format!(
            r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{}"
  issuers:
    - issuer: "https://idp"
      shared_secret_file: "{}"
      algorithms: [HS256]
      audiences: [api]
  rules:
    - {{ path: /public, allow: anonymous }}
"#,
            echo.addr,
            secret.display()
        ),
    )
    .unwrap();
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    mode(&bin, 0o555);
    mode(&secret, 0o444);
    mode(&config, 0o444);
    mode(dir, 0o555);
    let me = std::fs::metadata(&config).unwrap().uid();
    let mut command = Command::new(&bin);
    command
        .args(["run", "--config", config.to_str().unwrap()])
        .current_dir("/")
        .env_clear();
    if me == 0 {
        command.uid(NONROOT).gid(NONROOT);
    }
    let started = std::time::SystemTime::now();
    let run = tokio::task::spawn_blocking(move || Running::spawn(command))
        .await
        .unwrap();
    assert_eq!(
        once_serving(&format!("{}/readyz", run.admin), None).await,
        StatusCode::OK
    );
    assert_eq!(
        once_serving(&format!("{}/public/x", run.base), None).await,
        StatusCode::OK
    );
    assert_eq!(echo.hits(), 1, "the request reached the app");
    let code = tokio::task::spawn_blocking(move || run.stop())
        .await
        .unwrap();
    assert_eq!(code, 0);
    if me == 0 {
        // Nothing the unprivileged user could write to holds a new file of its.
        for place in ["/tmp", "/var/tmp", "/dev/shm"] {
            let Ok(entries) = std::fs::read_dir(place) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                let new = meta.modified().is_ok_and(|m| m >= started);
                assert!(
                    !(new && meta.uid() == NONROOT),
                    "tokengate wrote {}",
                    entry.path().display()
                );
            }
        }
    }
    mode(dir, 0o755);
}

/// `check --online` reaches what start-up will: a right config passes with
/// each check named; an issuer URL with a trailing slash the IdP does not use,
/// and a secret file that is not there, are named as failures (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_names_a_wrong_issuer_url_and_a_missing_file() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let secret = temp_file("secret", "0123456789abcdef0123456789abcdef");
    let config = |issuer_url: &str, secret_file: &str| {
        format!(
            r#"inbound:
  listen: "127.0.0.1:0"
  upstream: "http://127.0.0.1:1"
  issuers:
    - issuer: "{issuer_url}"
      discovery: true
      audiences: [{AUD}]
    - issuer: "shared"
      shared_secret_file: "{secret_file}"
      algorithms: [HS256]
      audiences: [{AUD}]
  rules:
    - {{ path: /, allow: anonymous }}
outbound:
  listen: "127.0.0.1:0"
  routes: [{{ host: "*", upstream: "http://127.0.0.1:9", token: t }}]
  tokens:
    t: {{ kind: client_credentials, token_url: "{}", client_id: demo-app, client_secret: demo-app-secret }}
"#,
            issuer.token_url()
        )
    };
    let online = |yaml: String| async move {
        let file = temp_file("online.yaml", &yaml);
        tokio::task::spawn_blocking(move || {
            run(&["check", "--online", "--config", file.to_str().unwrap()])
        })
        .await
        .unwrap()
    };
    let good = config(&issuer.issuer, secret.to_str().unwrap());
    let (code, stdout, stderr) = online(good).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    for line in [
        format!("ok    issuer {}: 1 usable keys", issuer.issuer),
        format!("ok    file {}", secret.display()),
        "ok    token t: a token for 3600s".to_string(),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in {stdout}");
    }
    let wrong = config(&format!("{}/", issuer.issuer), "/nonexistent/secret");
    // The missing secret file is a config error before anything online.
    let (code, _, stderr) = online(wrong.clone()).await;
    assert_eq!(code, 64, "{stderr}");
    let wrong = config(&format!("{}/", issuer.issuer), secret.to_str().unwrap());
    let (code, stdout, _) = online(wrong).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("FAIL  issuer {}/:", issuer.issuer)),
        "{stdout}"
    );
}

/// An IdP as the Kubernetes API server is one: discovery and JWKS over TLS
/// from a private CA, answering only requests that carry the expected bearer
/// token (401 otherwise). Records each request's `Authorization`.
struct PrivateIssuer {
    issuer: String,
    expected: std::sync::Arc<std::sync::Mutex<String>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl PrivateIssuer {
    async fn start(pki: &Pki, jwks: serde_json::Value, bearer: &str) -> PrivateIssuer {
        use std::sync::{Arc, Mutex};
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let discovery = json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/openid/v1/jwks") });
        let expected = Arc::new(Mutex::new(format!("Bearer {bearer}")));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (want, log) = (expected.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let (want, log) = (want.clone(), log.clone());
                let (discovery, jwks) = (discovery.clone(), jwks.clone());
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    log.lock().unwrap().push(auth.clone());
                    let (status, body) = if auth != *want.lock().unwrap() {
                        (
                            StatusCode::UNAUTHORIZED,
                            json!({ "reason": "Unauthorized" }),
                        )
                    } else if req.uri().path() == "/.well-known/openid-configuration" {
                        (StatusCode::OK, discovery.clone())
                    } else if req.uri().path() == "/openid/v1/jwks" {
                        (StatusCode::OK, jwks.clone())
                    } else {
                        (StatusCode::NOT_FOUND, json!({}))
                    };
                    let mut resp = hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from(body.to_string()),
                    ));
                    *resp.status_mut() = status;
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service),
                );
            }
        });
        PrivateIssuer {
            issuer,
            expected,
            seen,
        }
    }

    fn expect(&self, bearer: &str) {
        *self.expected.lock().unwrap() = format!("Bearer {bearer}");
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Item 6 of issue 13: an issuer served over TLS by a private CA, its JWKS
/// behind a bearer token read from a file (the Kubernetes API server's
/// discovery, with the pod's own token), is trusted with the issuer's
/// `tls.ca_file`; without it, `check --online` and the log name the
/// certificate problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_issuer_with_a_bearer_protected_jwks() {
    let pki = pki();
    let key = SigningKey::generate(KeyKind::Rs256, "sa-1");
    let idp = PrivateIssuer::start(&pki, json!({ "keys": [key.jwk()] }), "pod-token-1").await;
    let token_file = temp_file("sa-token", "pod-token-1\n");
    let echo = Echo::start().await.unwrap();
    let config = |tls: &str| {
        format!(
            r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{echo}"
  issuers:
    - issuer: "{issuer}"
      discovery: true
      audiences: [{AUD}]
      jwks_bearer_token_file: "{file}"
      jwks_cache: {{ fetch_timeout: 1s }}
{tls}  rules:
    - {{ path: /, allow: authenticated }}
"#,
            echo = echo.addr,
            issuer = idp.issuer,
            file = token_file.display(),
        )
    };
    let trusted = config(&format!(
        "      tls: {{ ca_file: \"{}\" }}\n",
        pki.ca.display()
    ));
    let untrusted = config("");
    let online = |yaml: String| async move {
        let file = temp_file("pki.yaml", &yaml);
        tokio::task::spawn_blocking(move || {
            run(&["check", "--online", "--config", file.to_str().unwrap()])
        })
        .await
        .unwrap()
    };

    let (code, stdout, stderr) = online(trusted.clone()).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("ok    issuer {}: 1 usable keys", idp.issuer)),
        "{stdout}"
    );

    // The proxy verifies the issuer's tokens with keys fetched the same way.
    let app = start_yaml(&trusted).await;
    let base = format!("http://{}", app.inbound_addr.unwrap());
    wait_ready(&app).await;
    let now = unix_now();
    let claims = json!({ "iss": idp.issuer, "aud": AUD, "sub": "system:serviceaccount:orders:checkout", "iat": now, "exp": now + 600 });
    let (status, _, body) = get(&format!("{base}/orders"), Some(&key.sign_jwt(&claims))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        idp.seen().iter().all(|a| a == "Bearer pod-token-1"),
        "discovery and JWKS carry the file's token: {:?}",
        idp.seen()
    );

    // The file is read at each fetch: a rotated token goes with the next one
    // (a token naming an unknown key brings a refetch).
    std::fs::write(&token_file, "pod-token-2\n").unwrap();
    idp.expect("pod-token-2");
    let other = SigningKey::generate(KeyKind::Rs256, "sa-2");
    let (status, _, _) = get(&format!("{base}/orders"), Some(&other.sign_jwt(&claims))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        idp.seen().last().map(String::as_str),
        Some("Bearer pod-token-2")
    );
    app.shutdown().await;

    // Without the private CA the certificate is named: by check --online ...
    let (code, stdout, _) = online(untrusted.clone()).await;
    assert_eq!(code, 1, "{stdout}");
    let fail = stdout
        .lines()
        .find(|l| l.contains(&format!("FAIL  issuer {}", idp.issuer)))
        .unwrap_or_else(|| panic!("no FAIL line: {stdout}"));
    assert!(
        fail.contains("invalid peer certificate: UnknownIssuer"),
        "{fail}"
    );

    // The system trust store counts too: a CA named by SSL_CERT_FILE (where a
    // cluster CA is often mounted) is trusted without the issuer's ca_file;
    // one that cannot be read is an error, not silently the bundled roots.
    let with_env = |yaml: String, cert_file: String| async move {
        let file = temp_file("pki-env.yaml", &yaml);
        let out = tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["check", "--online", "--config", file.to_str().unwrap()])
                .env("SSL_CERT_FILE", cert_file)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = with_env(untrusted.clone(), pki.ca.display().to_string()).await;
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout) = with_env(untrusted.clone(), "/nonexistent/ca.pem".into()).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  inbound client: system trust store:")
            && stdout.contains("/nonexistent/ca.pem"),
        "{stdout}"
    );

    // ... and by the log and /readyz of a proxy that has no keys for want of it.
    let file = temp_file("pki-run.yaml", &untrusted);
    let run = tokio::task::spawn_blocking(move || Running::start(&file))
        .await
        .unwrap();
    let (run, logged) = tokio::task::spawn_blocking(move || {
        let line = run.wait_for("JWKS fetch failed");
        (run, line)
    })
    .await
    .unwrap();
    assert!(
        logged.contains("invalid peer certificate: UnknownIssuer"),
        "{logged}"
    );
    let (status, _, why) = get(&format!("{}/readyz", run.admin), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        why.contains(&format!("issuer {}: keys not loaded yet", idp.issuer))
            && why.contains("invalid peer certificate: UnknownIssuer"),
        "{why}"
    );
    let code = tokio::task::spawn_blocking(move || run.stop())
        .await
        .unwrap();
    assert_eq!(code, 0);
}

/// `verify` decides as the authz listener (`--authz`, or when there is no
/// `inbound`), and `check` lists the authz section.
#[tokio::test]
async fn verify_and_check_know_the_authz_section() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    // The harness's inbound rules, once as inbound and once as authz (with /orders anonymous).
    let inbound = config_yaml(&issuer.issuer, "http://127.0.0.1:1", "", "");
    let authz = |doc: Yaml| {
        let section = serde_yaml::to_string(doc.get("inbound")).unwrap();
        doc.set("authz", &section)
            .remove("authz.upstream")
            .set("authz.grpc_listen", "127.0.0.1:0")
            .set(
                "authz.rules[2]",
                "{ path: /orders, methods: [GET], allow: anonymous }",
            )
    };
    let both = temp_file("both.yaml", &authz(Yaml::parse(&inbound)).text());
    let only = temp_file(
        "authz-only.yaml",
        &authz(Yaml::parse(&inbound)).remove("inbound").text(),
    );
    let (both, only) = (
        both.to_str().unwrap().to_string(),
        only.to_str().unwrap().to_string(),
    );
    let ask = move |config: String, extra: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["verify", "--config", &config, "--path", "/orders/1"];
            args.extend_from_slice(extra);
            run(&args)
        })
    };
    // Inbound by default: /orders needs a token.
    let (code, stdout, _) = ask(both.clone(), &[]).await.unwrap();
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.ends_with("decision: 401 invalid_request\n"),
        "{stdout}"
    );
    // --authz: the authz section's rules; its allow is an allow, not a forward.
    let (code, stdout, _) = ask(both.clone(), &["--authz"]).await.unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("decision: 200 allow\n"), "{stdout}");
    let (code, stdout, _) = ask(only.clone(), &[]).await.unwrap();
    assert_eq!(
        (code, stdout.ends_with("decision: 200 allow\n")),
        (0, true),
        "{stdout}"
    );
    // --authz without an authz section is a usage error.
    let inbound_only = temp_file("inbound.yaml", &inbound);
    let path = inbound_only.to_str().unwrap().to_string();
    let (code, _, stderr) = ask(path, &["--authz"]).await.unwrap();
    assert_eq!(code, 64);
    assert!(stderr.contains("no authz section"), "{stderr}");
    let (code, stdout, _) = tokio::task::spawn_blocking(move || run(&["check", "--config", &only]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("inbound  not configured"), "{stdout}");
    assert!(
        stdout.contains(
            "authz    127.0.0.1:0, gRPC ext_authz 127.0.0.1:0 (answers only)  mode strict"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("rules[2] /orders  anonymous"), "{stdout}");
}
