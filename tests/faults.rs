//! Everything tokengate depends on, failing, end to end against the real
//! binary: the app (resetting mid-body, answering garbage or an oversized
//! head, never answering), the JWKS endpoint and the token server (huge,
//! malformed, dripping, silent, garbage, a name that does not resolve), the
//! config file vanishing before a reload, and the wall clock jumping either
//! way (under libfaketime; `guard::cache` has the table test).
//!
//! Each fault is repeated, and each ends in a bounded outcome the test names:
//! the status the caller gets, the log line, the metric. Then the process is
//! read from its own `/metrics` (`tokengate_tasks`, `process_open_fds`,
//! `process_resident_memory_bytes`): what the faults left behind must be back
//! to what a healthy proxy holds.

mod support;

use hyper::StatusCode;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::process::*;
use support::*;
use tokengate::demo::{DevIssuer, Echo, KeyKind, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a peer (an app, a JWKS endpoint, a token server) misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `200 OK` promising 1 MiB, 64 KiB of it, then a TCP reset.
    ResetMidBody,
    /// Bytes that are not HTTP.
    Garbage,
    /// A status line and then a 1 MiB header.
    OversizedHead,
    /// Reads the request and never answers (until the connection is closed).
    Silent,
    /// `200 OK` with a 4 MiB JSON-looking body.
    Huge,
    /// `200 OK` with a body that is not the JSON asked for.
    Malformed,
    /// `200 OK` and then one byte every 200 ms.
    Dripping,
    /// No peer at all: a host name that does not resolve (`.invalid`, RFC 6761).
    Unresolvable,
}

const BIG: usize = 1024 * 1024;

/// A peer answering every request with `fault`; its URL and how many
/// connections it has accepted. Each connection ends when its answer is
/// written or the proxy closes it (bounded, 60 s).
async fn faulty_peer(fault: Fault) -> (String, Arc<AtomicUsize>) {
    if fault == Fault::Unresolvable {
        return ("http://no-such-peer.invalid".into(), Arc::default());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(60), answer(conn, fault)).await;
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

async fn answer(mut conn: TcpStream, fault: Fault) -> std::io::Result<()> {
    if read_head(&mut conn).await.is_none() {
        return Ok(());
    }
    let ok = |length: usize, kind: &str| {
        format!("HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {length}\r\n\r\n")
    };
    match fault {
        Fault::ResetMidBody => {
            conn.write_all(ok(BIG, "text/plain").as_bytes()).await?;
            conn.write_all(&vec![b'x'; 64 * 1024]).await?;
            conn.flush().await?;
            // Linger 0 resets at once; the thread blocking the deprecation
            // warns of is a non-zero linger's.
            #[allow(deprecated)]
            conn.set_linger(Some(Duration::ZERO))?;
            drop(conn); // RST, not FIN
        }
        Fault::Garbage => {
            conn.write_all(b"SPLAT/9 \x00\x01\x02 nothing like HTTP\r\n\r\n")
                .await?;
        }
        Fault::OversizedHead => {
            let head = format!("HTTP/1.1 200 OK\r\nx-filler: {}\r\n\r\n", "a".repeat(BIG));
            conn.write_all(head.as_bytes()).await?;
        }
        Fault::Silent => {
            let mut sink = [0u8; 1024];
            while conn.read(&mut sink).await? > 0 {}
        }
        Fault::Huge => {
            let body = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "a".repeat(4 * BIG));
            conn.write_all(ok(body.len(), "application/json").as_bytes())
                .await?;
            conn.write_all(body.as_bytes()).await?;
        }
        Fault::Malformed => {
            let body = "<html>{\"keys\": [ oops";
            conn.write_all(ok(body.len(), "application/json").as_bytes())
                .await?;
            conn.write_all(body.as_bytes()).await?;
        }
        Fault::Unresolvable => unreachable!("no peer is started"),
        Fault::Dripping => {
            conn.write_all(ok(1000, "application/json").as_bytes())
                .await?;
            for _ in 0..1000 {
                conn.write_all(b" ").await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}

/// What the proxy process holds, by its own `/metrics`.
#[derive(Debug, Clone, Copy)]
struct Held {
    tasks: f64,
    fds: f64,
    rss: f64,
}

async fn held(admin: &str) -> Held {
    let text = get(&format!("{admin}/metrics"), None).await.2;
    let held = Held {
        tasks: metric_value(&text, "tokengate_tasks"),
        fds: metric_value(&text, "process_open_fds"),
        rss: metric_value(&text, "process_resident_memory_bytes"),
    };
    assert!(
        held.tasks > 0.0 && held.fds > 0.0 && held.rss > 0.0,
        "{held:?}"
    );
    held
}

/// Tasks and descriptors a healthy proxy may hold beyond a baseline taken a
/// moment earlier: a pooled connection, a fetch in flight, the scrape itself.
const SLACK: f64 = 2.0;
/// Memory the repeated faults may add (allocator arenas, caches warming).
const RSS_SLACK: f64 = 8.0 * BIG as f64;

/// Waits (bounded, 10 s) until the process holds no more tasks and
/// descriptors than `before` plus [`SLACK`], and checks its memory grew by
/// less than [`RSS_SLACK`]; `after` names the faults it followed.
async fn nothing_left_behind(admin: &str, before: Held, after: &str) {
    // The reading the last poll judged (not a fresh scrape after it, which
    // could catch a fetch in flight that the wait had already outlasted).
    let last = std::sync::Mutex::new(None);
    eventually(Duration::from_millis(10_000), || async {
        let now = held(admin).await;
        *last.lock().unwrap() = Some(now);
        now.tasks <= before.tasks + SLACK && now.fds <= before.fds + SLACK
    })
    .await;
    let now = last.into_inner().unwrap().expect("polled at least once");
    assert!(
        now.tasks <= before.tasks + SLACK,
        "tasks left behind after {after}: {before:?} -> {now:?}"
    );
    assert!(
        now.fds <= before.fds + SLACK,
        "descriptors left behind after {after}: {before:?} -> {now:?}"
    );
    assert!(
        now.rss - before.rss < RSS_SLACK,
        "memory grew after {after}: {before:?} -> {now:?}"
    );
}

/// Runs `tokengate run` on `yaml` (blocking work on a blocking thread).
async fn run(yaml: &str) -> (Running, tempfile::TempPath) {
    let file = temp_file("faults.yaml", yaml);
    let path = file.to_path_buf();
    let running = tokio::task::spawn_blocking(move || Running::start(&path))
        .await
        .unwrap();
    (running, file)
}

/// The next log line containing `needle` (bounded), off the async threads.
async fn logged(running: &Running, needle: &str) -> String {
    tokio::task::block_in_place(|| running.wait_for(needle))
}

async fn stop(running: Running) {
    let code = tokio::task::spawn_blocking(move || running.stop())
        .await
        .unwrap();
    assert_eq!(code, 0, "tokengate exits 0 on SIGTERM");
}

/// One raw HTTP/1.1 request; everything the proxy sent back until it closed
/// the connection (with a FIN or a reset). Bounded: 15 s.
async fn raw_exchange(addr: &str, request: &str) -> Vec<u8> {
    let addr: SocketAddr = addr.trim_start_matches("http://").parse().unwrap();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(n @ 1..) = conn.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the proxy ends the exchange within 15 s");
    got
}

fn status_line(response: &[u8]) -> String {
    String::from_utf8_lossy(response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------- the app

fn guard_yaml(issuer: &str, jwks_uri: &str, upstream: &str) -> String {
    format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "{upstream}"
  timeouts: {{ upstream_response: 1s }}
  issuers:
    - issuer: "{issuer}"
      jwks_uri: "{jwks_uri}"
      audiences: [{AUD}]
      algorithms: [RS256]
      jwks_cache: {{ refresh_interval: 1s, min_refresh: 1s, fetch_timeout: 1s }}
  rules:
    - {{ path: /public, allow: anonymous }}
    - {{ path: /, scopes: ["items:read"] }}
"#
    )
}

const REPEATS: usize = 20;

/// The app misbehaving on each of [`REPEATS`] requests: each caller gets
/// `status`, the log has `log`, the status is counted, and nothing is left
/// behind.
async fn app_fault(fault: Fault, status: &str, log: &str) {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let (app, accepted) = faulty_peer(fault).await;
    let jwks = format!("{}/jwks.json", issuer.issuer);
    let (proxy, _config) = run(&guard_yaml(&issuer.issuer, &jwks, &app)).await;
    ready_at(&proxy.admin).await;
    let before = held(&proxy.admin).await;
    let request = "GET /public/report HTTP/1.1\r\nHost: guard.test\r\nConnection: close\r\n\r\n";
    for _ in 0..REPEATS {
        let response = raw_exchange(&proxy.base, request).await;
        let line = status_line(&response);
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{fault:?}: {line}"
        );
        if fault == Fault::ResetMidBody {
            let text = String::from_utf8_lossy(&response);
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains("content-length: 1048576"), "{head}");
            assert!(
                body.len() < BIG,
                "the caller must see the body cut short, not a whole one"
            );
        }
    }
    let line = logged(&proxy, log).await;
    if fault != Fault::ResetMidBody {
        assert!(line.contains("route=/public"), "{line}");
    }
    let metrics = get(&format!("{}/metrics", proxy.admin), None).await.2;
    let counted = metric_value(
        &metrics,
        &format!(
            "tokengate_requests_total{{direction=\"inbound\",route=\"/public\",status=\"{status}\"}}"
        ),
    );
    assert_eq!(counted as usize, REPEATS, "{metrics}");
    assert!(accepted.load(Ordering::SeqCst) >= 1);
    nothing_left_behind(&proxy.admin, before, &format!("{REPEATS} × {fault:?}")).await;
    stop(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_resetting_mid_body_cuts_the_callers_body_short() {
    app_fault(Fault::ResetMidBody, "200", "upstream response body failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_answering_garbage_is_a_502() {
    app_fault(Fault::Garbage, "502", "request failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_answering_an_oversized_head_is_a_502() {
    app_fault(Fault::OversizedHead, "502", "request failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_never_answers_is_a_504() {
    app_fault(Fault::Silent, "504", "request failed").await;
}

// ------------------------------------------------- the JWKS endpoint

/// The sum of a counter's series whose `result` is a success (`ok`,
/// `applied`) or, with `succeeded` false, anything else (`error` for JWKS
/// fetches, the failure's kind for token fetches, `rejected` for reloads).
fn counted(metrics: &str, name: &str, succeeded: bool) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            (l.contains(r#"result="ok""#) || l.contains(r#"result="applied""#)) == succeeded
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn failures_so_far(admin: &str, name: &str) -> f64 {
    counted(&get(&format!("{admin}/metrics"), None).await.2, name, false)
}

/// Waits (bounded, 30 s) until `name` has counted `at_least` failures.
async fn failures_reach(admin: &str, name: &str, at_least: f64) {
    let reached = eventually(Duration::from_millis(30_000), || async {
        failures_so_far(admin, name).await >= at_least
    })
    .await;
    if !reached {
        let last = failures_so_far(admin, name).await;
        panic!("{name} counted {last} failures, not {at_least}");
    }
}

/// The JWKS endpoint failing with `fault` from the start: the guard is not
/// ready and says why, a token is a 503 and reaches nobody, each fetch is
/// logged and counted, and the retries (one a second) leave nothing behind.
async fn jwks_fault(fault: Fault, why: &str) {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let (jwks, _) = faulty_peer(fault).await;
    let yaml = guard_yaml(
        &issuer.issuer,
        &format!("{jwks}/jwks.json"),
        &format!("http://{}", echo.addr),
    );
    let (proxy, _config) = run(&yaml).await;
    let line = logged(&proxy, "JWKS fetch failed; no keys loaded yet").await;
    assert!(line.contains(why), "{fault:?}: {line}");
    let readyz = readyz_saying(&proxy.admin, why).await;
    assert!(readyz.contains("keys not loaded yet"), "{readyz}");
    let token = issuer.mint(json!({ "scope": "items:read" }));
    let (status, _, body) = get(&format!("{}/items", proxy.base), Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(echo.hits(), 0, "nothing reaches the app");

    let counter = "tokengate_jwks_refresh_total";
    failures_reach(&proxy.admin, counter, 1.0).await;
    let before = held(&proxy.admin).await;
    let so_far = failures_so_far(&proxy.admin, counter).await;
    failures_reach(&proxy.admin, counter, so_far + 5.0).await;
    nothing_left_behind(
        &proxy.admin,
        before,
        &format!("5 more {fault:?} JWKS fetches"),
    )
    .await;
    stop(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_jwks_is_refused_at_its_bound() {
    jwks_fault(Fault::Huge, "length limit exceeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_jwks_is_refused() {
    jwks_fault(Fault::Malformed, "JWKS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_jwks_times_out() {
    jwks_fault(Fault::Dripping, "timed out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_jwks_endpoint_times_out() {
    jwks_fault(Fault::Silent, "timed out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_endpoint_answering_garbage_is_a_failed_fetch() {
    jwks_fault(Fault::Garbage, "request failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_whose_name_does_not_resolve_is_a_failed_fetch() {
    jwks_fault(Fault::Unresolvable, "dns error").await;
}

// ------------------------------------------------- the token server

/// The token server failing with `fault` from the start: outbound is not
/// ready and says why, a request waits at most `fetch_timeout` and gets a
/// 503 that reaches nobody, each fetch is logged and counted, and the
/// retries (backing off from 1 s) leave nothing behind.
async fn token_server_fault(fault: Fault, why: &str) {
    let echo = Echo::start().await.unwrap();
    let (server, _) = faulty_peer(fault).await;
    let yaml = outbound_yaml(
        &format!("{server}/token"),
        &format!("http://{}", echo.addr),
        "fetch_timeout: 1s",
        "",
    );
    let (proxy, _config) = run(&yaml).await;
    let listening = logged(&proxy, "outbound listening").await;
    let outbound = format!("http://{}", field(&listening, "outbound"));
    let line = logged(
        &proxy,
        "token fetch failed; requests wait for a token, then get 503",
    )
    .await;
    assert!(line.contains(why), "{fault:?}: {line}");
    readyz_saying(&proxy.admin, "token default: not fetched yet").await;
    let started = std::time::Instant::now();
    let (status, _, body) = send(
        hyper::Method::GET,
        &format!("{outbound}/orders"),
        &[("host", "api.test".into())],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(echo.hits(), 0, "nothing reaches the upstream");

    let counter = "tokengate_token_refresh_total";
    failures_reach(&proxy.admin, counter, 1.0).await;
    let before = held(&proxy.admin).await;
    let so_far = failures_so_far(&proxy.admin, counter).await;
    failures_reach(&proxy.admin, counter, so_far + 3.0).await;
    nothing_left_behind(
        &proxy.admin,
        before,
        &format!("3 more {fault:?} token fetches"),
    )
    .await;
    stop(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_token_answer_is_refused_at_its_bound() {
    token_server_fault(Fault::Huge, "length limit exceeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_token_answer_is_refused() {
    token_server_fault(Fault::Malformed, "bad token endpoint answer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_token_server_times_out() {
    token_server_fault(Fault::Dripping, "did not answer in time").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_token_server_times_out() {
    token_server_fault(Fault::Silent, "did not answer in time").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_answering_garbage_is_a_failed_fetch() {
    token_server_fault(Fault::Garbage, "token endpoint unreachable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_whose_name_does_not_resolve_is_a_failed_fetch() {
    token_server_fault(Fault::Unresolvable, "dns error").await;
}

// ------------------------------------------------- the config file

/// The config file removed, then a reload asked for: refused and logged,
/// counted as rejected, the running config keeps serving; put back (changed),
/// it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_that_disappears_before_a_reload_keeps_the_running_config() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let jwks = format!("{}/jwks.json", issuer.issuer);
    let yaml = guard_yaml(&issuer.issuer, &jwks, &format!("http://{}", echo.addr));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tokengate.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let path = config.clone();
    let proxy = tokio::task::spawn_blocking(move || Running::start(&path))
        .await
        .unwrap();
    ready_at(&proxy.admin).await;
    let token = issuer.mint(json!({ "scope": "items:read" }));
    let url = format!("{}/items", proxy.base);
    assert_eq!(get(&url, Some(&token)).await.0, StatusCode::OK);

    std::fs::remove_file(&config).unwrap();
    hangup(&proxy.child);
    let line = logged(&proxy, "reload rejected").await;
    assert!(line.contains("cannot read"), "{line}");
    failures_reach(&proxy.admin, "tokengate_config_reloads_total", 1.0).await;
    assert_eq!(
        get(&url, Some(&token)).await.0,
        StatusCode::OK,
        "still serving"
    );

    let scoped = Yaml::parse(&yaml).set("inbound.rules[1].scopes", "[items:admin]");
    std::fs::write(&config, scoped.text()).unwrap();
    hangup(&proxy.child);
    logged(&proxy, "config reloaded").await;
    assert_eq!(
        get(&url, Some(&token)).await.0,
        StatusCode::FORBIDDEN,
        "the new rules"
    );
    stop(proxy).await;
}

// ------------------------------------------------- the clock

/// libfaketime (Debian's `faketime`), installed when missing, as the interop
/// test installs its npm packages. Preloaded into tokengate, it moves the
/// process's wall clock by the offset in a file it rereads, and (with
/// FAKETIME_DONT_FAKE_MONOTONIC) leaves the monotonic clock alone: what a VM
/// resumed after hours, or an NTP step, looks like to the process.
fn libfaketime() -> std::path::PathBuf {
    let find = || {
        ["x86_64-linux-gnu", "aarch64-linux-gnu", ""]
            .iter()
            .map(|arch| {
                std::path::Path::new("/usr/lib")
                    .join(arch)
                    .join("faketime/libfaketimeMT.so.1")
            })
            .find(|p| p.exists())
    };
    support::process::debian_package("faketime", find, "the clock-jump test")
}

/// The wall clock jumping under a running guard, its monotonic clock not: 3 h
/// forward puts the keys' stale bound (1 h refresh + 1 h `stale_if_error`)
/// behind the wall clock while the refresher still sleeps on the monotonic
/// one, and a valid token must still pass (the keys are refetched at once,
/// not an hour later); 1 h back puts a cached token before its `nbf`, and
/// the cache must not serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_jumps_neither_stall_healthy_keys_nor_revive_a_cached_token() {
    let faketime = libfaketime();
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let echo = Echo::start().await.unwrap();
    let yaml = guard_yaml(
        &issuer.issuer,
        &format!("{}/jwks.json", issuer.issuer),
        &format!("http://{}", echo.addr),
    );
    let yaml = Yaml::parse(&yaml)
        .set(
            "inbound.issuers[0].jwks_cache",
            "{ refresh_interval: 1h, max_refresh: 1h, stale_if_error: 1h }",
        )
        .text();
    let config = temp_file("clock.yaml", &yaml);
    let clock = temp_file("clock-offset", "+0\n");
    let (config_path, clock_path) = (config.to_path_buf(), clock.to_path_buf());
    let proxy = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(BIN);
        command
            .args(["run", "--config", config_path.to_str().unwrap()])
            .env("LD_PRELOAD", &faketime)
            .env("FAKETIME_TIMESTAMP_FILE", &clock_path)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        Running::spawn(command)
    })
    .await
    .unwrap();
    ready_at(&proxy.admin).await;
    let now = tokengate::demo::unix_now();
    let token = issuer.mint(json!({ "scope": "items:read", "nbf": now, "exp": now + 4 * 3600 }));
    let url = format!("{}/items", proxy.base);
    assert_eq!(
        get(&url, Some(&token)).await.0,
        StatusCode::OK,
        "verified and cached"
    );
    let fetches = || async {
        let metrics = get(&format!("{}/metrics", proxy.admin), None).await.2;
        counted(&metrics, "tokengate_jwks_refresh_total", true)
    };
    let before = fetches().await;

    std::fs::write(&clock, "+3h\n").unwrap();
    let (status, _, body) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "3 h forward: {body}");
    assert_eq!(
        fetches().await,
        before + 1.0,
        "one refetch brought the keys back"
    );

    std::fs::write(&clock, "-1h\n").unwrap();
    let (status, headers, _) = get(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "1 h back, before its nbf");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");

    std::fs::write(&clock, "+0\n").unwrap();
    assert_eq!(
        get(&url, Some(&token)).await.0,
        StatusCode::OK,
        "the clock back"
    );
    stop(proxy).await;
}
