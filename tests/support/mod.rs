//! Shared test harness: start a guard against a dev issuer and an echo upstream,
//! all on 127.0.0.1:0, and send requests to it.
#![allow(dead_code)]

pub mod dpop;
pub mod mtls;
pub mod process;
mod yaml;

pub use yaml::Yaml;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokengate::config::Config;
use tokengate::demo::{DevIssuer, Echo, KeyKind, SigningKey};
use tokio_util::sync::CancellationToken;

pub const AUD: &str = "orders-api";

/// A running guard with its issuer and upstream.
pub struct Stack {
    pub issuer: DevIssuer,
    pub echo: Echo,
    pub app: Option<tokengate::App>,
    pub base: String,
    pub admin: String,
}

impl Stack {
    /// `inbound_extra` is YAML appended under `inbound:` (mode, forward, limits …);
    /// `issuer_extra` under the issuer entry.
    pub async fn start(keys: Vec<SigningKey>, issuer_extra: &str, inbound_extra: &str) -> Stack {
        let issuer = DevIssuer::start(keys, AUD).await.expect("issuer");
        let echo = Echo::start().await.expect("echo");
        Self::start_with(issuer, echo, issuer_extra, inbound_extra).await
    }

    pub async fn rs256() -> Stack {
        Self::start(vec![SigningKey::generate(KeyKind::Rs256, "rs-1")], "", "").await
    }

    pub async fn start_with(
        issuer: DevIssuer,
        echo: Echo,
        issuer_extra: &str,
        inbound_extra: &str,
    ) -> Stack {
        let yaml = config_yaml(
            &issuer.issuer,
            &format!("http://{}", echo.addr),
            issuer_extra,
            inbound_extra,
        );
        let app = start_yaml(&yaml).await;
        let base = format!("http://{}", app.inbound_addr.unwrap());
        let admin = format!("http://{}", app.admin_addr);
        Stack {
            issuer,
            echo,
            app: Some(app),
            base,
            admin,
        }
    }

    /// Waits (bounded) until /readyz answers 200.
    pub async fn ready(&self) {
        ready_at(&self.admin).await;
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, HeaderMap, String) {
        get(&format!("{}{path}", self.base), token).await
    }

    pub async fn metrics(&self) -> String {
        get(&format!("{}/metrics", self.admin), None).await.2
    }

    /// Value of a metric line that starts with `prefix` (exact series), or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The one way a test waits for something to happen: polls `check` every
/// 10 ms until it holds or `within` passes, and says whether it held. Assert
/// on the answer (or on what the check read), never after a fixed sleep.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually`] for a test without a runtime (the check blocks).
pub fn eventually_blocking(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded, 10 s) until the admin listener at `admin` (`http://…`)
/// answers /readyz with 200; panics if it never does.
pub async fn ready_at(admin: &str) {
    let url = format!("{admin}/readyz");
    let ready = eventually(Duration::from_secs(10), || async {
        get(&url, None).await.0 == StatusCode::OK
    })
    .await;
    assert!(ready, "{admin} never became ready");
}

/// [`ready_at`] for a running `app`.
pub async fn wait_ready(app: &tokengate::App) {
    ready_at(&format!("http://{}", app.admin_addr)).await;
}

/// The /readyz body at `admin`, polled (bounded, 5 s) until it contains
/// `needle`; the last body when it never does (the caller asserts on it).
pub async fn readyz_saying(admin: &str, needle: &str) -> String {
    let url = format!("{admin}/readyz");
    eventually(Duration::from_secs(5), || async {
        get(&url, None).await.2.contains(needle)
    })
    .await;
    get(&url, None).await.2
}

/// Validates `yaml` and starts tokengate on it; a config error panics showing the YAML.
pub async fn start_yaml(yaml: &str) -> tokengate::App {
    let config =
        Config::from_yaml(yaml, "test", &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    tokengate::start(&config, CancellationToken::new())
        .await
        .expect("start")
}

/// Every line of `text` indented by `n` spaces (YAML snippets inside YAML).
pub fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

/// A file holding `contents`, removed when the returned path is dropped (even
/// when the test fails).
pub fn temp_file(name: &str, contents: &str) -> tempfile::TempPath {
    let mut file = tempfile::Builder::new()
        .prefix("tokengate-")
        .suffix(&format!("-{name}"))
        .tempfile()
        .expect("temp file");
    std::io::Write::write_all(&mut file, contents.as_bytes()).expect("write temp file");
    file.into_temp_path()
}

/// A fresh RSA-2048 key pair and its private key as PKCS#8 PEM.
pub fn rsa_pkcs8() -> (aws_lc_rs::rsa::KeyPair, String) {
    use aws_lc_rs::encoding::AsDer;
    let pair =
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let der = pair.as_der().expect("PKCS#8");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    (pair, pem)
}

pub fn config_yaml(
    issuer: &str,
    upstream: &str,
    issuer_extra: &str,
    inbound_extra: &str,
) -> String {
    format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
  upstream: "{upstream}"
  issuers:
    - issuer: "{issuer}"
      jwks_uri: "{issuer}/jwks.json"
      audiences: [{AUD}]
      algorithms: [RS256, ES256, EdDSA]
      leeway: 5s
{issuer_extra}  rules:
    - {{ path: /public, allow: anonymous }}
    - {{ path: /items, scopes: ["items:read"] }}
    - {{ path: /orders, methods: [GET], scopes: ["orders:read"] }}
    - {{ path: /orders, methods: [POST], scopes: ["orders:write"] }}
{inbound_extra}"#,
        issuer_extra = indent(issuer_extra, 6),
        inbound_extra = indent(inbound_extra, 2),
    )
}

/// An `authz` section (and its gRPC port) with the inbound harness's issuer
/// and rules, an `/admin` rule, and the subject as identity; `extra` is YAML
/// under `authz:`.
pub fn authz_yaml(issuer: &str, extra: &str) -> String {
    format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
authz:
  listen: "127.0.0.1:0"
  grpc_listen: "127.0.0.1:0"
  issuers:
    - issuer: "{issuer}"
      jwks_uri: "{issuer}/jwks.json"
      audiences: [{AUD}]
  rules:
    - {{ path: /public, allow: anonymous }}
    - {{ path: /admin, scopes: [admin] }}
    - {{ path: /orders, methods: [GET], scopes: ["orders:read"] }}
    - {{ path: /orders, methods: [POST], scopes: ["orders:write"] }}
  forward:
    claims_to_headers: {{ sub: x-auth-subject }}
{extra}"#,
        extra = indent(extra, 2),
    )
}

/// [`authz_yaml`] with a host rule first: every path on `admin.internal`
/// needs `admin`; elsewhere `/public` stays anonymous.
pub fn authz_yaml_with_host_rule(issuer: &str) -> String {
    Yaml::parse(&authz_yaml(issuer, ""))
        .insert(
            "authz.rules",
            0,
            "{ host: admin.internal, path: /, scopes: [admin] }",
        )
        .text()
}

/// Outbound config: route `api.test` → `upstream` with token `default` from the
/// issuer; `extra_token` is YAML under that token, `extra` under `outbound:`.
pub fn outbound_yaml(token_url: &str, upstream: &str, extra_token: &str, extra: &str) -> String {
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

/// Reads one request or response head (through the blank line), byte by byte so
/// that nothing after it is consumed. `None` when the peer closed first.
pub async fn read_head(conn: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(conn, &mut byte),
        )
        .await
        {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// An answer read off the socket.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// The status line and headers, lower-cased.
    pub head: String,
    pub body: String,
}

impl RawAnswer {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }
}

/// One HTTP/1.1 request written as raw bytes (`request_line`, `Host: host`,
/// `headers` as given, `Connection: close`) and read to the connection's
/// end; bounded, 10 s.
pub async fn raw_request(
    addr: std::net::SocketAddr,
    request_line: &str,
    host: &str,
    headers: &[(&str, String)],
) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = format!("{request_line} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("Connection: close\r\n\r\n");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    RawAnswer {
        status: head[9..12].parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn get(url: &str, token: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut headers = Vec::new();
    if let Some(t) = token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    send(Method::GET, url, &headers).await
}

/// One request with a bounded wait; returns status, headers and body text.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
) -> (StatusCode, HeaderMap, String) {
    send_body(method, url, headers, Bytes::new()).await
}

/// `send` with a request body.
pub async fn send_body(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(body)).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A test CA, a `localhost` server certificate and a client certificate, as PEM files.
pub struct Pki {
    pub ca: tempfile::TempPath,
    pub server: (
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    pub client_cert: tempfile::TempPath,
    pub client_key: tempfile::TempPath,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["orders.client".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    Pki {
        ca: temp_file("ca.pem", &ca_cert.pem()),
        ca_der: ca_cert.der().clone(),
        server: (
            server_cert.der().clone(),
            rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
        ),
        client_cert: temp_file("client.pem", &client_cert.pem()),
        client_key: temp_file("client.key", &client_key.serialize_pem()),
    }
}
