//! The guard cannot be walked around: each test sends raw bytes on a socket (a
//! client library would normalise the attack away) and judges by what a logging
//! upstream actually received. The upstream speaks h2c and WebSocket whenever
//! asked, as a real app (hypercorn, a WebSocket server) would.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokengate::demo::{DevIssuer, KeyKind, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the app received: one entry per request head (its raw text, lower-cased),
/// `h2c tunnel` when it switched a connection to HTTP/2, one `h2 <path> <headers>`
/// per request spoken over it, and `raw <bytes>` for bytes read on a tunnel it
/// opened without naming a protocol.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn heads(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| !e.starts_with("h2") && !e.starts_with("raw"))
            .collect()
    }
    fn last_head(&self) -> String {
        self.heads().pop().expect("the app received a request")
    }
    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// The value of header `name` in a lower-cased head, if present.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim())
}

/// The logging app. `Upgrade: h2c` gets a 101 and HTTP/2 on the connection;
/// `Upgrade: websocket` a 101 and an echo; a path containing `bare101` a 101
/// with no `Upgrade` header (then it logs what arrives); anything else `200 ok`.
async fn logging_app() -> (std::net::SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let app_log = log.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve_app_connection(conn, app_log.clone()));
        }
    });
    (addr, log)
}

/// One line through its CRLF (bounded); `None` when the peer closed first.
async fn read_line(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > 1024 || conn.read_exact(&mut byte).await.is_err() {
            return None;
        }
        line.push(byte[0]);
    }
    Some(line)
}

/// Reads a chunked body to its end (sizes, data, trailers) as a strict app
/// would; false when its framing is broken or the peer closed.
async fn read_chunked(conn: &mut TcpStream) -> bool {
    loop {
        let Some(line) = read_line(conn).await else {
            return false;
        };
        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let size = text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return false;
        };
        if size == 0 {
            // Trailer lines, up to the empty one.
            loop {
                match read_line(conn).await {
                    Some(l) if l == b"\r\n" => return true,
                    Some(_) => continue,
                    None => return false,
                }
            }
        }
        let mut data = vec![0u8; size + 2];
        if conn.read_exact(&mut data).await.is_err() {
            return false;
        }
    }
}

async fn serve_app_connection(mut conn: TcpStream, log: Log) {
    while let Some(raw) = read_head(&mut conn).await {
        let head = raw.to_lowercase();
        log.push(head.clone());
        if header(&head, "transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            if !read_chunked(&mut conn).await {
                return;
            }
        } else {
            let length: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if conn.read_exact(&mut body).await.is_err() {
                return;
            }
        }
        let upgrade = header(&head, "upgrade").unwrap_or("");
        if upgrade.contains("h2c") {
            let _ = conn
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
                .await;
            log.push("h2c tunnel".into());
            let h2_log = log.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                h2_log.push(format!("h2 {} {:?}", req.uri(), req.headers()));
                async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                        "admin data",
                    ))))
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(conn), service)
                .await;
            return;
        }
        if head.contains("bare101") {
            let _ = conn
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
                .await;
            let mut buf = [0u8; 256];
            while let Ok(n) = conn.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                log.push(format!("raw {}", String::from_utf8_lossy(&buf[..n])));
            }
            return;
        }
        if upgrade == "websocket" {
            let _ = conn
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .await;
            let mut buf = [0u8; 256];
            while let Ok(n) = conn.read(&mut buf).await {
                if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            return;
        }
        if conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A guard in front of the logging app, with host-, path- and method-scoped rules.
struct Guard {
    issuer: DevIssuer,
    app: Option<tokengate::App>,
    log: Log,
}

impl Guard {
    async fn start(inbound_extra: &str) -> Guard {
        Self::start_with("", inbound_extra).await
    }

    /// `forward_extra` goes under `forward:`, `inbound_extra` under `inbound:`.
    async fn start_with(forward_extra: &str, inbound_extra: &str) -> Guard {
        let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k")], AUD)
            .await
            .unwrap();
        let (upstream, log) = logging_app().await;
        let yaml = format!(
            r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "http://{upstream}"
  issuers:
    - issuer: "{iss}"
      jwks_uri: "{iss}/jwks.json"
      audiences: [{AUD}]
  rules:
    - {{ path: /public, allow: anonymous }}
    - {{ path: /, host: admin.internal, scopes: [admin] }}
    - {{ path: /admin, scopes: [admin] }}
    - {{ path: /orders, methods: [POST, DELETE], scopes: ["orders:write"] }}
    - {{ path: /reports, methods: [GET], scopes: [admin] }}
    - {{ path: /cache, methods: [PURGE], scopes: [admin] }}
    - {{ path: "/v1/reports:export", scopes: [admin] }}
    - {{ path: /, scopes: [read] }}
  forward:
    claims_to_headers: {{ sub: x-auth-subject }}
{forward}{extra}"#,
            iss = issuer.issuer,
            forward = indent(forward_extra, 4),
            extra = indent(inbound_extra, 2),
        );
        let app = start_yaml(&yaml).await;
        let guard = app.inbound().unwrap();
        assert!(
            eventually(Duration::from_millis(4000), || async {
                guard.guard().is_ready()
            })
            .await,
            "the guard never became ready (keys never loaded)"
        );
        Guard {
            issuer,
            app: Some(app),
            log,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.app.as_ref().unwrap().inbound_addr.unwrap()
    }

    /// A token with scope `read` only.
    fn read_token(&self) -> String {
        self.issuer
            .mint(json!({ "sub": "reader", "scope": "read" }))
    }

    /// Sends `raw` on a new connection and returns the response (the head, and
    /// the body up to the connection's end).
    async fn exchange(&self, raw: &str) -> String {
        let mut conn = TcpStream::connect(self.addr()).await.unwrap();
        conn.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The status code `raw` gets.
    async fn status(&self, raw: &str) -> u16 {
        status_of(&self.exchange(raw).await)
    }

    async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// An HTTP/2 connection preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// The logging app's watchers are live: spoken to directly, it records an
/// h2c switch, each HTTP/2 request over it, and bytes read on a half-switched
/// connection. The tests below that assert none of these happened through
/// the guard would otherwise prove nothing.
#[tokio::test]
async fn the_logging_app_records_what_the_absence_checks_look_for() {
    let (addr, log) = logging_app().await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /x HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut conn).await.unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (mut sender, driver) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(conn))
            .await
            .unwrap();
    tokio::spawn(driver);
    let req = Request::get("http://app/admin/users")
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender.send_request(req).await.unwrap();
    let entries = log.0.lock().unwrap().clone();
    assert!(entries.iter().any(|e| e == "h2c tunnel"), "{entries:?}");
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("h2 ") && e.contains("/admin/users")),
        "{entries:?}"
    );

    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /public/bare101 HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut conn).await.unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write_all(b"hello").await.unwrap();
    let raw = eventually(Duration::from_secs(5), || async {
        log.0.lock().unwrap().iter().any(|e| e == "raw hello")
    })
    .await;
    assert!(raw, "{:?}", log.0.lock().unwrap());
}

#[tokio::test]
async fn h2c_upgrades_never_reach_the_app() {
    let g = Guard::start("").await;
    let token = g.read_token();
    let upgrades = [
        ("/public/x", "", "Upgrade: h2c\r\n"),
        ("/public/x", "", "Upgrade: H2C\r\n"),
        ("/public/x", "", "Upgrade: websocket, h2c\r\n"),
        ("/public/x", "", "Upgrade: h2c\r\nUpgrade: websocket\r\n"),
        ("/items/1", "auth", "Upgrade: h2c\r\n"),
    ];
    for (pipelined, (path, auth, upgrade)) in [false, true]
        .into_iter()
        .flat_map(|p| upgrades.iter().map(move |u| (p, u)))
    {
        let auth = if auth.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {token}\r\n")
        };
        let mut conn = TcpStream::connect(g.addr()).await.unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: app\r\n{auth}Connection: Upgrade, HTTP2-Settings\r\n{upgrade}HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        )
        .into_bytes();
        if pipelined {
            request.extend_from_slice(H2_PREFACE);
        }
        conn.write_all(&request).await.unwrap();
        let head = read_head(&mut conn).await.unwrap_or_default();
        if head.starts_with("HTTP/1.1 101") && !pipelined {
            // The tunnel is open: speak HTTP/2 through it, as the attacker would.
            if let Ok((mut sender, driver)) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(conn))
                    .await
            {
                tokio::spawn(driver);
                let req = Request::get("http://app/admin/users")
                    .header("x-auth-subject", "root")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await;
            }
        } else {
            drop(conn);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let entries = g.log.entries();
        assert!(
            !entries.iter().any(|e| e.starts_with("h2")),
            "{upgrade:?} pipelined={pipelined}: the app switched to h2c: {entries:?}"
        );
        // (Not in the token: its base64 may spell h2c by chance.)
        let offers_h2c = |head: &String| {
            head.lines()
                .any(|l| !l.starts_with("authorization:") && l.contains("h2c"))
        };
        assert!(
            !entries.iter().any(offers_h2c),
            "{upgrade:?}: the app was offered h2c: {entries:?}"
        );
        // `websocket, h2c` may become a WebSocket tunnel; nothing else may…
        let websocket = upgrade.contains("websocket, h2c");
        let expected = if websocket {
            "HTTP/1.1 101"
        } else {
            "HTTP/1.1 200"
        };
        assert!(head.starts_with(expected), "{upgrade:?}: {head}");
        // …and the request itself still reached the app, as plain HTTP.
        let heads = g.log.heads();
        assert_eq!(heads.len(), 1, "{upgrade:?}: {heads:?}");
        assert!(heads[0].starts_with(&format!("get {path} ")), "{heads:?}");
        let offered = header(&heads[0], "upgrade");
        assert_eq!(offered, websocket.then_some("websocket"), "{heads:?}");
        g.log.clear();
    }
    g.stop().await;
}

#[tokio::test]
async fn a_trailing_dot_or_other_host_spelling_does_not_escape_a_host_rule() {
    let g = Guard::start("").await;
    let token = g.read_token();
    let auth = format!("Authorization: Bearer {token}\r\n");
    // With a read-only token, the admin host is out of reach however it is spelled.
    for (target, host) in [
        ("/x", "admin.internal"),
        ("/x", "admin.internal."),
        ("/x", "ADMIN.Internal."),
        ("/x", "admin.internal.:443"),
        ("http://admin.internal./x", "admin.internal."),
        ("http://admin.internal./x", "other"),
        ("/x", "admin.internal, other"),
        ("/x", "admin.internal:443:443"),
        ("/x", "admin.internal.."),
        ("/x", "admin%2einternal"),
    ] {
        let status = g
            .status(&format!(
                "GET {target} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
            ))
            .await;
        assert!(
            status == 400 || status == 403,
            "{target} Host: {host} got {status}"
        );
    }
    // HTTP/2's :authority, with and without the dot.
    for authority in ["admin.internal", "admin.internal.", "Admin.Internal.:80"] {
        let tcp = TcpStream::connect(g.addr()).await.unwrap();
        let (mut sender, driver) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(driver);
        let req = Request::get(format!("http://{authority}/x"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let status = sender.send_request(req).await.unwrap().status().as_u16();
        assert!(
            status == 400 || status == 403,
            "h2 {authority} got {status}"
        );
    }
    assert_eq!(g.log.heads(), Vec::<String>::new());

    // An allowed host reaches the app in its one canonical spelling.
    let status = g
        .status(&format!(
            "GET /x HTTP/1.1\r\nHost: Orders.Example.:8080\r\n{auth}Connection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(status, 200);
    let head = g.log.last_head();
    assert_eq!(header(&head, "host"), Some("orders.example:8080"), "{head}");
    assert_eq!(
        header(&head, "x-forwarded-host"),
        Some("orders.example:8080"),
        "{head}"
    );
    g.stop().await;
}

#[tokio::test]
async fn forwarding_headers_are_the_guards_own() {
    let g = Guard::start("").await;
    let spoofs = "X-Forwarded-Host: admin.internal\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nX_Forwarded_Host: admin.internal\r\nForwarded: for=203.0.113.9;host=admin.internal;proto=https\r\nX-Real-IP: 203.0.113.9\r\nTrue-Client-IP: 203.0.113.9\r\nX-Client-IP: 203.0.113.9\r\nClient-IP: 203.0.113.9\r\nCF-Connecting-IP: 203.0.113.9\r\nFastly-Client-IP: 203.0.113.9\r\nX-Cluster-Client-IP: 203.0.113.9\r\nX-Forwarded: for=203.0.113.9\r\nForwarded-For: 203.0.113.9\r\nX-Original-Host: admin.internal\r\nX-Host: admin.internal\r\n";
    for (label, request) in [
        (
            "HTTP/1.0 without Host",
            format!("GET /public/x HTTP/1.0\r\n{spoofs}\r\n"),
        ),
        (
            "Connection: host",
            format!("GET /public/x HTTP/1.1\r\nHost: app.example\r\nConnection: close, host\r\n{spoofs}\r\n"),
        ),
        (
            "Host named",
            format!("GET /public/x HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n{spoofs}\r\n"),
        ),
    ] {
        g.log.clear();
        assert_eq!(g.status(&request).await, 200, "{label}");
        let head = g.log.last_head();
        assert!(!head.contains("admin.internal"), "{label}: {head}");
        assert!(!head.contains("203.0.113.9"), "{label}: {head}");
        assert!(!head.contains("x_forwarded"), "{label}: {head}");
        assert!(!head.contains("x-forwarded-port"), "{label}: {head}");
        assert!(!head.contains("x-real-ip"), "{label}: {head}");
        assert_eq!(header(&head, "x-forwarded-for"), Some("127.0.0.1"), "{label}");
        assert_eq!(header(&head, "x-forwarded-proto"), Some("http"), "{label}");
        assert_eq!(
            header(&head, "forwarded"),
            Some("for=127.0.0.1;proto=http"),
            "{label}"
        );
        let host = header(&head, "host");
        if label == "HTTP/1.0 without Host" {
            assert_eq!(header(&head, "x-forwarded-host"), None, "{label}: {head}");
            assert_ne!(host, Some("admin.internal"));
        } else {
            assert_eq!(host, Some("app.example"), "{label}: {head}");
            assert_eq!(header(&head, "x-forwarded-host"), Some("app.example"), "{label}");
        }
    }
    // HTTP/2 without :authority: no forwarded host, and not the caller's.
    g.log.clear();
    let tcp = TcpStream::connect(g.addr()).await.unwrap();
    let (mut sender, driver) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(driver);
    let req = Request::get("/public/x")
        .header("x-forwarded-host", "admin.internal")
        .header("forwarded", "host=admin.internal")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let status = sender.send_request(req).await.unwrap().status();
    assert_eq!(status, 200);
    let head = g.log.last_head();
    assert!(
        !head.contains("admin.internal"),
        "h2 without :authority: {head}"
    );
    assert_eq!(header(&head, "x-forwarded-host"), None, "{head}");

    // HTTP/1.1 requires a Host (RFC 9112 §3.2): without one there is nothing to match a host rule on.
    g.log.clear();
    let status = g
        .status("GET /public/x HTTP/1.1\r\nX-Forwarded-Host: admin.internal\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, 400);
    assert!(g.log.heads().is_empty());
    g.stop().await;
}

#[tokio::test]
async fn path_spellings_an_app_folds_do_not_escape_a_rule() {
    let g = Guard::start("").await;
    let auth = format!("Authorization: Bearer {}\r\n", g.read_token());
    for path in [
        "/ADMIN/x",
        "/Admin",
        "/admin./x",
        "/admin.",
        "/admin%20/x",
        "/admin%09",
        "/admin%3fx",
        "/admin%3Fx",
        "/admin%23x",
        "/public/%252e%252e/admin",
        "/%2561dmin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%e0%80%ae%e0%80%ae/admin",
        "/public/%ef%bc%8e%ef%bc%8e/admin",
        "/public/\u{ff0e}\u{ff0e}/admin",
        "/%ef%bd%81dmin",
        "/public/..%ef%bc%8fadmin",
        // A format suffix (Rails' `(.:format)`, Spring's suffix match): /admin.json is /admin.
        "/admin.json",
        "/Admin.json",
        "/reports.csv",
        // Encoded characters an app decodes before routing.
        "/v1/reports%3Aexport",
        "/v1/reports%3aexport",
        "/admin%3b/x",
        "/admin%3Bx",
    ] {
        let status = g
            .status(&format!(
                "GET {path} HTTP/1.1\r\nHost: app\r\n{auth}Connection: close\r\n\r\n"
            ))
            .await;
        assert!(status == 400 || status == 403, "{path} got {status}");
    }
    assert_eq!(g.log.heads(), Vec::<String>::new());
    // Ordinary paths, upper case where no other rule claims them, still pass.
    for path in ["/items/ABC-42", "/a%20b", "/caf%C3%A9", "/v1.2/x"] {
        let status = g
            .status(&format!(
                "GET {path} HTTP/1.1\r\nHost: app\r\n{auth}Connection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 200, "{path}");
    }
    g.stop().await;
}

#[tokio::test]
async fn method_spellings_and_overrides_do_not_escape_a_rule() {
    let g = Guard::start("").await;
    let auth = format!("Authorization: Bearer {}\r\n", g.read_token());
    for (method, path) in [
        ("post", "/orders/1"),
        ("Post", "/orders/1"),
        ("delete", "/orders/1"),
        ("DeLeTe", "/orders/1"),
        ("purge", "/cache/x"),
        ("Purge", "/cache/x"),
    ] {
        let status = g
            .status(&format!(
                "{method} {path} HTTP/1.1\r\nHost: app\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert!(
            status == 400 || status == 403,
            "{method} {path} got {status}"
        );
    }
    assert!(g.log.heads().is_empty(), "{:?}", g.log.heads());
    for name in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        "X_HTTP_Method_Override",
        "X-Original-URL",
        "X-Rewrite-URL",
        "X_Original_URL",
    ] {
        g.log.clear();
        let value = if name.contains("URL") {
            "/admin"
        } else {
            "DELETE"
        };
        let status = g
            .status(&format!(
                "POST /public/x HTTP/1.1\r\nHost: app\r\n{name}: {value}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 200, "{name}");
        let head = g.log.last_head();
        assert!(
            !head.contains(&name.to_lowercase()),
            "{name} reached the app: {head}"
        );
        assert!(!head.contains(value.to_lowercase().as_str()), "{head}");
    }
    g.stop().await;
}

#[tokio::test]
async fn kept_overrides_reach_the_app_only_when_the_rules_agree_on_them() {
    let g = Guard::start_with("override_headers: keep", "").await;
    let auth = format!("Authorization: Bearer {}\r\n", g.read_token());
    // The overridden request falls under a rule asking the same: it goes on, header and all.
    for (target, name, value) in [
        ("/public/x", "X-HTTP-Method-Override", "DELETE"),
        ("/items/1", "X-HTTP-Method-Override", "DELETE"),
        ("/items/1", "X-Original-URL", "/other/2"),
    ] {
        g.log.clear();
        let status = g
            .status(&format!(
                "POST {target} HTTP/1.1\r\nHost: app\r\n{auth}{name}: {value}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 200, "{target} {name}: {value}");
        let head = g.log.last_head();
        assert_eq!(
            header(&head, &name.to_lowercase()),
            Some(value.to_lowercase().as_str())
        );
    }
    // Under another rule, or in another spelling: refused, the app sees nothing.
    g.log.clear();
    for (target, name, value) in [
        ("/items/1", "X-HTTP-Method-Override", "delete"),
        ("/orders/1", "X-HTTP-Method-Override", "DELETE"),
        ("/orders/1", "X-Method-Override", "POST"),
        ("/public/x", "X-Original-URL", "/admin"),
        ("/public/x", "X-Rewrite-URL", "/items"),
        ("/items/1", "X-Original-URL", "/ADMIN"),
        ("/items/1", "X-Original-URL", "/admin#"),
        ("/items/1", "X-Original-URL", "/admin#x"),
        ("/items/1", "X-Rewrite-URL", "/admin.json"),
    ] {
        let status = g
            .status(&format!(
                "PUT {target} HTTP/1.1\r\nHost: app\r\n{auth}{name}: {value}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 400, "{target} {name}: {value}");
    }
    assert!(g.log.heads().is_empty(), "{:?}", g.log.heads());
    // An underscore spelling is not kept: the app could read it, the rules never did.
    let status = g
        .status(
            "GET /public/x HTTP/1.1\r\nHost: app\r\nX_Original_URL: /admin\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(status, 200);
    let head = g.log.last_head();
    assert!(!head.contains("/admin"), "{head}");
    g.stop().await;
}

#[tokio::test]
async fn a_head_request_takes_the_rule_its_get_would() {
    let g = Guard::start("").await;
    // Apps answer HEAD with their GET handler: GET /reports needs `admin`, so a
    // HEAD for it cannot fall to the weaker catch-all rule; it is judged by
    // the GET rule (issue 25: it was a 400 before, breaking health checks).
    let head = |token: String| {
        format!(
            "HEAD /reports/x HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
    };
    assert_eq!(g.status(&head(g.read_token())).await, 403);
    assert!(g.log.heads().is_empty());
    let admin = g.issuer.mint(json!({ "sub": "root", "scope": "admin" }));
    assert_eq!(g.status(&head(admin)).await, 200);
    assert!(
        g.log.last_head().starts_with("head /reports/x "),
        "{}",
        g.log.last_head()
    );
    // Where GET and every other method share a rule, HEAD passes as GET does.
    let status = g
        .status(&format!(
            "HEAD /items HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            g.read_token()
        ))
        .await;
    assert_eq!(status, 200);
    g.stop().await;
}

#[tokio::test]
async fn an_app_switching_protocols_unasked_or_to_another_protocol_gets_no_tunnel() {
    let g = Guard::start("").await;
    for request in [
        // Asked for WebSocket, answered with a bare 101.
        "GET /public/bare101 HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        // Not asked at all.
        "GET /public/bare101 HTTP/1.1\r\nHost: app\r\n\r\n",
    ] {
        g.log.clear();
        let mut conn = TcpStream::connect(g.addr()).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut conn).await.unwrap_or_default();
        assert!(!head.starts_with("HTTP/1.1 101"), "{request:?}: {head}");
        assert!(head.starts_with("HTTP/1.1 502"), "{request:?}: {head}");
        // The next request, on this connection or a new one, reaches the app as
        // a request: never as bytes into the connection it half switched.
        let _ = conn
            .write_all(b"GET /public/next HTTP/1.1\r\nHost: app\r\n\r\n")
            .await;
        let next = g
            .status("GET /public/next HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
            .await;
        assert_eq!(next, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let entries = g.log.entries();
        assert!(
            !entries.iter().any(|e| e.starts_with("raw")),
            "{request:?}: bytes went through a tunnel: {entries:?}"
        );
        assert!(
            entries.iter().any(|e| e.starts_with("get /public/next")),
            "{entries:?}"
        );
    }
    g.stop().await;
}

#[tokio::test]
async fn permissive_mode_verifies_every_bearer_spelling() {
    let g = Guard::start("mode: permissive").await;
    let forged = {
        let rogue = SigningKey::generate(KeyKind::Rs256, "k");
        rogue.sign_jwt(&json!({
            "iss": g.issuer.issuer, "aud": AUD, "sub": "root", "scope": "admin read",
            "exp": tokengate::demo::unix_now() + 600,
        }))
    };
    for scheme in [
        "Bearer ",
        "Bearer\t",
        "Bearer:",
        "Bearer:  ",
        "Bearer=",
        "bearer,",
        "BEARER\t ",
        "Bearer",
    ] {
        let status = g
            .status(&format!(
                "GET /items/1 HTTP/1.1\r\nHost: app\r\nAuthorization: {scheme}{forged}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 401, "{scheme:?}");
    }
    assert!(g.log.heads().is_empty(), "{:?}", g.log.heads());
    // Without a token at all, permissive mode still lets the request through.
    assert_eq!(
        g.status("GET /items/1 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
            .await,
        200
    );
    g.stop().await;
}

/// Opens a WebSocket tunnel through the guard; returns the connection after the 101.
async fn websocket(addr: std::net::SocketAddr, path: &str, auth: &str) -> (TcpStream, String) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: app\r\n{auth}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut conn).await.unwrap_or_default();
    (conn, head)
}

#[tokio::test]
async fn websocket_passes_on_a_checked_request_and_only_websocket() {
    let g = Guard::start("").await;
    let (_, head) = websocket(g.addr(), "/items/ws", "").await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(g.log.heads().is_empty());

    let auth = format!("Authorization: Bearer {}\r\n", g.read_token());
    let (mut conn, head) = websocket(g.addr(), "/items/ws", &auth).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(header(&head.to_lowercase(), "upgrade"), Some("websocket"));
    let sent = g.log.last_head();
    assert_eq!(header(&sent, "upgrade"), Some("websocket"), "{sent}");
    assert_eq!(header(&sent, "x-auth-subject"), Some("reader"), "{sent}");
    conn.write_all(b"frame").await.unwrap();
    let mut echoed = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"frame");
    g.stop().await;
}

#[tokio::test]
async fn tunnels_hold_a_connection_slot_and_close_when_idle() {
    let g = Guard::start("limits: { max_connections: 2 }\ntimeouts: { tunnel_idle: 2s }").await;
    let (mut busy, head) = websocket(g.addr(), "/public/ws", "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (mut idle, head) = websocket(g.addr(), "/public/ws", "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Both slots are held by tunnels: a third connection waits in the backlog.
    let mut third = TcpStream::connect(g.addr()).await.unwrap();
    third
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), third.read_exact(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two tunnels held both slots"
    );
    // Traffic keeps one tunnel open past the idle timeout (3 s of pings
    // 250 ms apart), while the other idles out…
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        busy.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), busy.read_exact(&mut echoed))
            .await
            .expect("the busy tunnel stays open")
            .unwrap();
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle tunnel was closed");
    // …which freed its slot for the waiting connection.
    tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut buf))
        .await
        .expect("the waiting connection is served once a slot is free")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    g.stop().await;
}

/// Without an idle timeout in play, tunnels still count against `max_connections`.
#[tokio::test]
async fn tunnels_count_against_max_connections() {
    let g = Guard::start("limits: { max_connections: 1 }").await;
    let (tunnel, head) = websocket(g.addr(), "/public/ws", "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut next = TcpStream::connect(g.addr()).await.unwrap();
    next.write_all(b"GET /public/x HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next.read_exact(&mut buf))
            .await
            .is_err(),
        "a second connection was served while a tunnel held the only slot"
    );
    drop(tunnel);
    tokio::time::timeout(Duration::from_secs(5), next.read_exact(&mut buf))
        .await
        .expect("served once the tunnel closed")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    g.stop().await;
}

/// Sends `request` on a new connection and returns all it is answered, read
/// until the connection closes or, once answered, stays silent for 500 ms
/// (the first answer may take up to 10 s on a loaded machine).
async fn exchange_until_silent(addr: std::net::SocketAddr, request: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answers = Vec::new();
    let mut buf = [0u8; 4096];
    let silence = |answered: bool| Duration::from_millis(if answered { 500 } else { 10_000 });
    while let Ok(Ok(n)) =
        tokio::time::timeout(silence(!answers.is_empty()), conn.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        answers.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answers).into_owned()
}

/// Request smuggling: requests whose framing two parsers could read two ways
/// (Content-Length against Transfer-Encoding, framing headers obfuscated,
/// duplicated or folded, bare LF), each hiding a second request, for /admin,
/// where one reading puts a body. The guard refuses each or frames it one
/// way, and whatever follows on the connection is a request it checks: the
/// app, which reads chunked and Content-Length bodies strictly, must never
/// receive the hidden request, nor a framing header spelled with `_` (which
/// an app reading `_` as `-` would frame the body by).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_cannot_smuggle_a_request_past_the_guard() {
    let g = Guard::start("").await;
    let hidden = "GET /admin/users HTTP/1.1\r\nHost: app.example\r\n\r\n";
    let chunked = format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len());
    let head = "POST /public/x HTTP/1.1\r\nHost: app.example\r\n";
    // Content-Length covering the empty chunk and the hidden request.
    let covering = 5 + hidden.len();
    let te_variants = [
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding:\tchunked",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: identity, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "Transfer-Encoding: CHUNKED",
        "Transfer-Encoding: \"chunked\"",
        "X-Padding: a\r\n Transfer-Encoding: chunked",
        "Transfer_Encoding: chunked",
        "Content_Length: 0",
    ];
    let mut attacks = vec![
        (
            "CL.TE".to_string(),
            format!("{head}Content-Length: {covering}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        ),
        (
            "TE.CL".to_string(),
            format!("{head}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{chunked}"),
        ),
        (
            "two Content-Lengths".to_string(),
            format!("{head}Content-Length: 0\r\nContent-Length: {}\r\n\r\n{hidden}", hidden.len()),
        ),
        (
            "a Content-Length list".to_string(),
            format!("{head}Content-Length: 0, {}\r\n\r\n{hidden}", hidden.len()),
        ),
        (
            "a signed Content-Length".to_string(),
            format!("{head}Content-Length: +{}\r\n\r\n{hidden}", hidden.len()),
        ),
        (
            "bare LF line ends".to_string(),
            format!("POST /public/x HTTP/1.1\nHost: app.example\nContent-Length: {}\n\n{hidden}", hidden.len()),
        ),
        (
            "a chunk size that overflows".to_string(),
            format!("{head}Transfer-Encoding: chunked\r\n\r\n10000000000000000{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len()),
        ),
    ];
    for te in te_variants {
        attacks.push((
            format!("{te:?} against Content-Length"),
            format!("{head}{te}\r\nContent-Length: {covering}\r\n\r\n0\r\n\r\n{hidden}"),
        ));
        attacks.push((
            format!("{te:?} alone"),
            format!("{head}{te}\r\n\r\n{chunked}"),
        ));
    }
    // The control: a second request honestly pipelined after the first is seen
    // by the app once the answers fall silent, so the absence below means something.
    g.log.clear();
    let answers = exchange_until_silent(
        g.addr(),
        &format!(
            "{head}Content-Length: 0\r\n\r\nGET /public/next HTTP/1.1\r\nHost: app.example\r\n\r\n"
        ),
    )
    .await;
    let heads = g.log.heads();
    assert!(
        heads.len() == 2 && heads[1].starts_with("get /public/next"),
        "the app did not see an honest pipelined request: {heads:?}\nthe client got: {answers}"
    );
    for (label, request) in attacks {
        g.log.clear();
        let answers = exchange_until_silent(g.addr(), &request).await;
        let heads = g.log.heads();
        assert!(
            heads.iter().all(|h| !h.contains("/admin")),
            "{label}: the app received the hidden request: {heads:?}\nthe client got: {answers}"
        );
        assert!(
            heads.len() <= 1,
            "{label}: the app received {} requests: {heads:?}",
            heads.len()
        );
        // An app reading `_` as `-` would frame the body by these.
        assert!(
            heads
                .iter()
                .all(|h| !h.contains("transfer_encoding") && !h.contains("content_length")),
            "{label}: the app received a framing header in another spelling: {heads:?}"
        );
        // Framed one way (200) or refused as the caller's fault (400): never
        // a 5xx counted against the app.
        assert!(
            answers.starts_with("HTTP/1.1 200 ") || answers.starts_with("HTTP/1.1 400 "),
            "{label}: the client got {answers}"
        );
    }
    g.stop().await;
}
