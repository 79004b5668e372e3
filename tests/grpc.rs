//! gRPC through tokengate, against implementations nobody here wrote: tonic's
//! client and server speaking the standard `grpc.health.v1` service
//! (tonic-health). Inbound: a valid token reaches the app (unary `Check`,
//! server-streaming `Watch`, the app's trailing metadata back to the client);
//! every refusal is the tonic client's own status code, not a transport error.
//! Outbound: the app sees the injected token, and its UNAUTHENTICATED renews it.

mod support;

use hyper::body::Frame;
use hyper::header::HeaderValue;
use hyper::http;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use support::*;
use tokengate::demo::{DevIssuer, KeyKind, SigningKey};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The gRPC app: tonic-health's service, answering SERVING, with every
/// answer's trailers carrying `x-served-by: health`. It records each request's
/// `authorization` and `te`, and can be told to refuse the next call with a
/// trailers-only UNAUTHENTICATED.
struct App {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    refuse_next: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl App {
    /// Serves on 127.0.0.1:0: h2c, or TLS (ALPN h2) with `identity`.
    async fn start(identity: Option<Identity>) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        App::serve(listener, identity).await
    }

    async fn serve(listener: tokio::net::TcpListener, identity: Option<Identity>) -> App {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let refuse_next = Arc::new(AtomicBool::new(false));
        let service = Recorded {
            inner: health,
            seen: seen.clone(),
            refuse_next: refuse_next.clone(),
            _reporter: Arc::new(reporter),
        };
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut server = Server::builder();
        if let Some(identity) = identity {
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        tokio::spawn(server.serve_with_incoming_shutdown(
            service,
            tonic::transport::server::TcpIncoming::from(listener),
            async {
                let _ = stopped.await;
            },
        ));
        App {
            addr,
            seen,
            refuse_next,
            stop: Some(stop),
        }
    }

    fn last_seen(&self) -> Option<(String, String)> {
        self.seen.lock().unwrap().last().cloned()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone)]
struct Recorded<S> {
    inner: S,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    refuse_next: Arc<AtomicBool>,
    /// Keeps the health status published while the app runs.
    _reporter: Arc<tonic_health::server::HealthReporter>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for Recorded<S>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (authorization, te) = (header("authorization"), header("te"));
        self.seen.lock().unwrap().push((authorization, te));
        if self.refuse_next.swap(false, Ordering::SeqCst) {
            let refused = tonic::Status::unauthenticated("token refused").into_http();
            return Box::pin(async move { Ok(refused) });
        }
        let answer = self.inner.call(req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|body| tonic::body::Body::new(Tagged(body))))
        })
    }
}

/// A response body whose trailers gain `x-served-by: health`.
struct Tagged(tonic::body::Body);

impl hyper::body::Body for Tagged {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, tonic::Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.0).poll_frame(cx));
        Poll::Ready(frame.map(|f| {
            f.map(|mut frame| {
                if let Some(trailers) = frame.trailers_mut() {
                    trailers.insert("x-served-by", HeaderValue::from_static("health"));
                }
                frame
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

/// tokengate inbound in front of `upstream` (h2c), the health service
/// needing scope `health:read`; `tls`: the listener's certificate and key.
async fn guard(issuer: &DevIssuer, upstream: &str, tls: Option<(&str, &str)>) -> tokengate::App {
    let tls = tls
        .map(|(cert, key)| format!("  tls: {{ cert_file: \"{cert}\", key_file: \"{key}\" }}\n"))
        .unwrap_or_default();
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
inbound:
  listen: "127.0.0.1:0"
{tls}  upstream: "{upstream}"
  protocol: h2
  issuers:
    - {{ issuer: "{iss}", jwks_uri: "{iss}/jwks.json", audiences: [{AUD}] }}
  rules:
    - {{ path: /grpc.health.v1.Health, scopes: ["health:read"] }}
"#,
        iss = issuer.issuer,
    );
    let app = start_yaml(&yaml).await;
    wait_ready(&app).await;
    app
}

fn check_request(token: Option<&str>) -> tonic::Request<HealthCheckRequest> {
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req
}

/// Every kind of call and refusal, through a guard at `endpoint`.
async fn calls_and_refusals(endpoint: Endpoint, issuer: &DevIssuer, app: &App) {
    let channel = endpoint.connect().await.expect("the guard speaks h2");
    let mut client = HealthClient::new(channel);
    let token = issuer.mint(serde_json::json!({ "scope": "health:read" }));

    // Unary, with the app's trailing metadata and its OK status.
    let answer = client.check(check_request(Some(&token))).await.unwrap();
    assert_eq!(answer.get_ref().status(), ServingStatus::Serving);
    assert_eq!(answer.metadata().get("x-served-by").unwrap(), "health");
    let (authorization, te) = app.last_seen().unwrap();
    assert_eq!(authorization, format!("Bearer {token}"));
    assert_eq!(te, "trailers", "te: trailers reaches an h2 upstream");

    // Server streaming.
    let mut updates = client
        .watch(check_request(Some(&token)))
        .await
        .unwrap()
        .into_inner();
    let first = updates.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    drop(updates);

    // Refusals, each as the client's own status code.
    let calls = app.seen.lock().unwrap().len();
    let no_scope = issuer.mint(serde_json::json!({ "scope": "other" }));
    for (token, want, label) in [
        (None, Code::Unauthenticated, "invalid_request"),
        (Some("not.a.token"), Code::Unauthenticated, "invalid_token"),
        (
            Some(no_scope.as_str()),
            Code::PermissionDenied,
            "insufficient_scope",
        ),
    ] {
        let status = client.check(check_request(token)).await.unwrap_err();
        assert_eq!(status.code(), want, "{token:?}: {status:?}");
        // tokengate's own grpc-status and grpc-message, not a status the
        // client inferred from an HTTP error.
        assert!(status.message().starts_with(label), "{status:?}");
        let challenge = status.metadata().get("www-authenticate");
        assert!(
            challenge.is_some_and(|c| c.to_str().unwrap().starts_with("Bearer realm=")),
            "{status:?}"
        );
    }
    assert_eq!(
        app.seen.lock().unwrap().len(),
        calls,
        "refused calls never reach the app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_pass_a_guard_over_h2c_and_refusals_are_grpc_statuses() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let app = App::start(None).await;
    let proxy = guard(&issuer, &format!("http://{}", app.addr), None).await;
    let endpoint =
        Endpoint::from_shared(format!("http://{}", proxy.inbound_addr.unwrap())).unwrap();
    calls_and_refusals(endpoint, &issuer, &app).await;
    proxy.shutdown().await;

    // The app down: UNAVAILABLE, not a transport error.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = guard(&issuer, &down, None).await;
    let endpoint =
        Endpoint::from_shared(format!("http://{}", proxy.inbound_addr.unwrap())).unwrap();
    let mut client = HealthClient::new(endpoint.connect().await.unwrap());
    let token = issuer.mint(serde_json::json!({ "scope": "health:read" }));
    let status = client.check(check_request(Some(&token))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().starts_with("upstream_unavailable"),
        "{status:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_pass_a_guard_over_tls_with_alpn() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let app = App::start(None).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let cert_file = temp_file("grpc-cert.pem", &cert_pem);
    let key_file = temp_file("grpc-key.pem", &cert.signing_key.serialize_pem());
    let proxy = guard(
        &issuer,
        &format!("http://{}", app.addr),
        Some((cert_file.to_str().unwrap(), key_file.to_str().unwrap())),
    )
    .await;
    let endpoint = Endpoint::from_shared(format!(
        "https://localhost:{}",
        proxy.inbound_addr.unwrap().port()
    ))
    .unwrap()
    .tls_config(
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&cert_pem))
            .domain_name("localhost"),
    )
    .unwrap();
    calls_and_refusals(endpoint, &issuer, &app).await;
    proxy.shutdown().await;
}

/// tokengate's outbound listener with one route (`route`, YAML) whose token
/// `app` comes from `issuer`; `extra` is YAML under `outbound:`. Ready, with
/// a health client connected to it.
async fn outbound_to(
    issuer: &DevIssuer,
    route: &str,
    extra: &str,
) -> (tokengate::App, HealthClient<tonic::transport::Channel>) {
    let yaml = format!(
        r#"admin: {{ listen: "127.0.0.1:0" }}
outbound:
  listen: "127.0.0.1:0"
  routes:
    - {route}
  tokens:
    app:
      kind: client_credentials
      token_url: "{token_url}"
      client_id: demo-app
      client_secret: demo-app-secret
      scopes: ["health:read"]
{extra}"#,
        token_url = issuer.token_url(),
        extra = indent(extra, 2),
    );
    let proxy = start_yaml(&yaml).await;
    wait_ready(&proxy).await;
    let endpoint =
        Endpoint::from_shared(format!("http://{}", proxy.outbound_addr.unwrap())).unwrap();
    let client = HealthClient::new(endpoint.connect().await.unwrap());
    (proxy, client)
}

/// Outbound: a tonic client calls through tokengate, which injects its token
/// and reaches the app over TLS, h2 chosen by ALPN (`auto`); the app's
/// UNAUTHENTICATED renews the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_go_out_with_the_token_and_unauthenticated_renews_it() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let ca_file = temp_file("grpc-app-ca.pem", &cert_pem);
    let identity = Identity::from_pem(&cert_pem, cert.signing_key.serialize_pem());
    let app = App::start(Some(identity)).await;
    let route = format!(
        r#"{{ host: "*", upstream: "https://localhost:{}", token: app }}"#,
        app.addr.port()
    );
    let tls = format!(r#"tls: {{ ca_file: "{}" }}"#, ca_file.display());
    let (proxy, mut client) = outbound_to(&issuer, &route, &tls).await;

    let answer = client.check(check_request(None)).await.unwrap();
    assert_eq!(answer.get_ref().status(), ServingStatus::Serving);
    assert_eq!(answer.metadata().get("x-served-by").unwrap(), "health");
    let (authorization, te) = app.last_seen().unwrap();
    assert!(authorization.starts_with("Bearer ey"), "{authorization}");
    assert_eq!(te, "trailers");
    assert_eq!(issuer.token_calls().len(), 1);

    // The app refuses the token: the client sees UNAUTHENTICATED (a streamed
    // gRPC body is not kept for a replay), and tokengate fetches a new token.
    app.refuse_next.store(true, Ordering::SeqCst);
    let status = client.check(check_request(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    eventually(Duration::from_millis(5000), || async {
        issuer.token_calls().len() >= 2
    })
    .await;
    assert_eq!(
        issuer.token_calls().len(),
        2,
        "UNAUTHENTICATED renews the token"
    );
    let answer = client.check(check_request(None)).await.unwrap();
    assert_eq!(answer.get_ref().status(), ServingStatus::Serving);
    proxy.shutdown().await;
}

/// The gRPC C-core server of `tests/grpcio/server.py` (Debian's
/// python3-grpcio, installed when missing), read line by line.
struct CCoreApp {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    port: u16,
}

impl CCoreApp {
    fn start() -> CCoreApp {
        let python = support::process::debian_package(
            "python3-grpcio",
            || {
                std::process::Command::new("/usr/bin/python3")
                    .args(["-c", "import grpc"])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
                    .then(|| "/usr/bin/python3".into())
            },
            "the gRPC C-core test",
        );
        let mut child = std::process::Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/grpcio/server.py"
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut app = CCoreApp {
            child,
            stdin,
            lines,
            port: 0,
        };
        app.port = app.next().strip_prefix("port ").unwrap().parse().unwrap();
        app
    }

    /// The server's next line (bounded wait).
    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from the grpcio server")
    }

    /// Revokes the last call's token; its refusals are sent as `form`.
    fn revoke(&mut self, form: &str) {
        use std::io::Write;
        writeln!(self.stdin, "revoke {form}").unwrap();
        assert_eq!(self.next(), format!("revoked {form}"));
    }
}

impl Drop for CCoreApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Outbound over h2c (`protocol: h2`) to a gRPC C-core server: its
/// UNAUTHENTICATED drops the token and renews it like a 401, whether it comes
/// trailers-only or as response headers followed by trailers
/// (`grpc-status: 16`); the next call carries a new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_c_core_unauthenticated_renews_the_token_in_either_form() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let mut app = tokio::task::spawn_blocking(CCoreApp::start).await.unwrap();
    let route = format!(
        r#"{{ host: "*", upstream: "http://127.0.0.1:{}", protocol: h2, token: app }}"#,
        app.port
    );
    let (proxy, mut client) = outbound_to(&issuer, &route, "").await;
    let call_seen = |line: String, outcome: &str| {
        let (token, got) = line
            .strip_prefix("call ")
            .and_then(|rest| rest.rsplit_once(' '))
            .unwrap_or_else(|| panic!("not a call line: {line}"));
        assert_eq!(got, outcome, "{line}");
        assert!(token.starts_with("Bearer ey"), "{line}");
        token.to_string()
    };

    for form in ["trailers-only", "after-headers"] {
        let answer = client.check(check_request(None)).await.unwrap();
        assert_eq!(answer.get_ref().status(), ServingStatus::Serving);
        let token = call_seen(app.next(), "served");
        let fetched = issuer.token_calls().len();

        app.revoke(form);
        let status = client.check(check_request(None)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{form}: {status:?}");
        // The form C-core sent: only the second had a head of its own.
        let head = status.metadata().get("x-refusal").is_some();
        assert_eq!(head, form == "after-headers", "{form}: {status:?}");
        assert_eq!(call_seen(app.next(), form), token);

        // The very next call: a new token, fetched once.
        let answer = client.check(check_request(None)).await.unwrap();
        assert_eq!(answer.get_ref().status(), ServingStatus::Serving, "{form}");
        let next = call_seen(app.next(), "served");
        assert_ne!(next, token, "{form}: the refused token was sent again");
        assert_eq!(issuer.token_calls().len(), fetched + 1, "{form}");
    }
    proxy.shutdown().await;
}

/// `grpc-timeout` bounds the wait for the upstream's answer and never extends
/// `timeouts.upstream_response`; its expiry is DEADLINE_EXCEEDED.
#[tokio::test]
async fn grpc_timeout_bounds_the_upstream_wait() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "k1")],
        "",
        "timeouts: { upstream_response: 1s }",
    )
    .await;
    s.ready().await;
    let grpc = |timeout: Option<&str>| {
        let mut headers = vec![("content-type", "application/grpc".to_string())];
        if let Some(t) = timeout {
            headers.push(("grpc-timeout", t.to_string()));
        }
        headers
    };
    let call = |delay_ms: u64, headers: Vec<(&'static str, String)>| {
        let url = format!("{}/public/x?delay_ms={delay_ms}", s.base);
        async move { send_body(hyper::Method::POST, &url, &headers, bytes::Bytes::new()).await }
    };
    // (app delay, grpc-timeout, the answer's grpc-status: none when the app's own)
    let cases = [
        (0, Some("5S"), None),
        (300, Some("100m"), Some("4")),
        (100, None, None),
        (2000, Some("10S"), Some("4")),
        (2000, Some("bogus"), Some("4")),
    ];
    for (delay, timeout, want) in cases {
        let (status, headers, _) = call(delay, grpc(timeout)).await;
        assert_eq!(status, hyper::StatusCode::OK, "{delay} {timeout:?}");
        let got = headers.get("grpc-status").map(|v| v.to_str().unwrap());
        assert_eq!(got, want, "{delay} {timeout:?}");
    }
    s.stop().await;
}

/// The h2 limits a hostile caller meets are advertised: at most 200 streams at
/// once on a connection (more wait for the caller's own h2 stack, or are
/// refused).
#[tokio::test]
async fn an_h2_caller_is_told_the_stream_limit() {
    let s = Stack::rs256().await;
    s.ready().await;
    let tcp = tokio::net::TcpStream::connect(s.app.as_ref().unwrap().inbound_addr.unwrap())
        .await
        .unwrap();
    let (mut sender, mut connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let req = hyper::Request::get(format!("{}/public/x", s.base))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = tokio::select! {
        answer = sender.send_request(req) => answer.unwrap(),
        _ = &mut connection => panic!("connection ended first"),
    };
    assert_eq!(answer.status(), hyper::StatusCode::OK);
    assert_eq!(connection.current_max_send_streams(), 200);
    s.stop().await;
}

/// A TCP relay on 127.0.0.1:0 to `to` whose connections can be cut, as a
/// crashed app or a network failure cuts them. Counts the connections it took.
struct Relay {
    addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (count, tasks) = (accepted.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(task);
            }
        });
        Relay {
            addr,
            accepted,
            open,
        }
    }

    /// Cuts every connection it carries.
    fn cut(&self) {
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// A dead h2 upstream connection is replaced: once the connection to the app
/// is cut, the next call goes through on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_h2_upstream_connection_is_replaced() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let app = App::start(None).await;
    let relay = Relay::start(app.addr).await;
    let proxy = guard(&issuer, &format!("http://{}", relay.addr), None).await;
    let endpoint =
        Endpoint::from_shared(format!("http://{}", proxy.inbound_addr.unwrap())).unwrap();
    let mut client = HealthClient::new(endpoint.connect().await.unwrap());
    let token = issuer.mint(serde_json::json!({ "scope": "health:read" }));
    for _ in 0..3 {
        assert!(client.check(check_request(Some(&token))).await.is_ok());
    }
    assert_eq!(
        relay.accepted.load(Ordering::SeqCst),
        1,
        "one connection carries every call"
    );

    relay.cut();
    // A call sent before tokengate read the connection's end fails as
    // UNAVAILABLE (it may have reached the app: it is not sent twice); once
    // the end is seen, calls go out on one new connection.
    let mut unavailable = 0;
    let mut served = 0;
    for _ in 0..20 {
        match client.check(check_request(Some(&token))).await {
            Ok(answer) => {
                assert_eq!(answer.get_ref().status(), ServingStatus::Serving);
                served += 1;
                if served == 3 {
                    break;
                }
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                unavailable += 1;
            }
        }
    }
    assert_eq!(
        served, 3,
        "calls go through again ({unavailable} unavailable)"
    );
    assert!(unavailable <= 1, "{unavailable} calls failed after the cut");
    assert_eq!(
        relay.accepted.load(Ordering::SeqCst),
        2,
        "one new connection"
    );
    proxy.shutdown().await;
}

/// Trailers cross tokengate both ways over h2: the caller's request trailers
/// reach the app, and the app's response trailers reach the caller. The app
/// here is hyper's own h2 server, answering with the trailer it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_trailers_stream_through() {
    use http_body_util::BodyExt;
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await?;
                    let sent = body
                        .trailers()
                        .and_then(|t| t.get("x-checksum"))
                        .cloned()
                        .unwrap_or(HeaderValue::from_static("none"));
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("x-seen-checksum", sent);
                    Ok::<_, hyper::Error>(http::Response::new(frames(body.to_bytes(), trailers)))
                },
            );
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    let proxy = guard(&issuer, &format!("http://{app}"), None).await;
    let tcp = tokio::net::TcpStream::connect(proxy.inbound_addr.unwrap())
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("c0ffee"));
    let token = issuer.mint(serde_json::json!({ "scope": "health:read" }));
    let req = http::Request::post(format!(
        "http://{}/grpc.health.v1.Health/Echo",
        proxy.inbound_addr.unwrap()
    ))
    .header("authorization", format!("Bearer {token}"))
    .header("te", "trailers")
    .body(frames(bytes::Bytes::from_static(b"payload"), trailers))
    .unwrap();
    let answer = sender.send_request(req).await.unwrap();
    assert_eq!(answer.status(), http::StatusCode::OK);
    let body = answer.into_body().collect().await.unwrap();
    assert_eq!(
        body.trailers().and_then(|t| t.get("x-seen-checksum")),
        Some(&HeaderValue::from_static("c0ffee")),
        "the request trailer reached the app and its response trailer came back"
    );
    assert_eq!(&body.to_bytes()[..], b"payload");
    proxy.shutdown().await;
}

/// A body of the given frames, sent as they are (data, then trailers).
struct Frames(std::collections::VecDeque<Frame<bytes::Bytes>>);

impl hyper::body::Body for Frames {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

fn frames(data: bytes::Bytes, trailers: http::HeaderMap) -> Frames {
    Frames([Frame::data(data), Frame::trailers(trailers)].into())
}

/// gRPC-Web callers get tokengate's refusals in their own framing: HTTP 200,
/// the status in headers (the trailers-only form gRPC-Web clients read), and
/// nothing reaches the app.
#[tokio::test]
async fn grpc_web_refusals_are_grpc_statuses_in_headers() {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k1")], AUD)
        .await
        .unwrap();
    let app = App::start(None).await;
    let proxy = guard(&issuer, &format!("http://{}", app.addr), None).await;
    let url = format!(
        "http://{}/grpc.health.v1.Health/Check",
        proxy.inbound_addr.unwrap()
    );
    for (content_type, token, grpc_status) in [
        ("application/grpc-web+proto", None, "16"),
        ("application/grpc-web-text", Some("not.a.token"), "16"),
    ] {
        let mut headers = vec![("content-type", content_type.to_string())];
        if let Some(t) = token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let (status, answer, body) =
            send_body(hyper::Method::POST, &url, &headers, bytes::Bytes::new()).await;
        assert_eq!(status, hyper::StatusCode::OK, "{content_type}");
        assert_eq!(answer["grpc-status"], grpc_status, "{content_type}");
        assert!(answer["content-type"]
            .to_str()
            .unwrap()
            .starts_with(content_type.split('+').next().unwrap()));
        assert!(body.is_empty(), "{content_type}: {body}");
    }
    assert!(
        app.seen.lock().unwrap().is_empty(),
        "refused calls never reach the app"
    );
    proxy.shutdown().await;
}
