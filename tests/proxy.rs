//! Proxy core behaviour through the inbound guard: upstream failures, timeouts,
//! HTTP/2 cleartext, streaming bodies, protocol upgrades.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use support::*;
use tokengate::config::Config;
use tokengate::demo::{DevIssuer, KeyKind, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A guard in front of an arbitrary upstream URL.
async fn guard_for(upstream: &str, inbound_extra: &str) -> (DevIssuer, tokengate::App) {
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k")], AUD)
        .await
        .unwrap();
    let yaml = config_yaml(&issuer.issuer, upstream, "", inbound_extra);
    let app = start_yaml(&yaml).await;
    let guard = app.inbound().unwrap();
    assert!(
        eventually(Duration::from_millis(2000), || async {
            guard.guard().is_ready()
        })
        .await,
        "the guard never became ready (keys never loaded)"
    );
    (issuer, app)
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (_issuer, app) = guard_for(&format!("http://{addr}"), "").await;
    let (status, _, body) = get(
        &format!("http://{}/public/x", app.inbound_addr.unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(json(&body)["error"], "upstream_unavailable");
    assert!(
        !body.contains(&addr.to_string()),
        "upstream address not leaked: {body}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_is_504() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let (_issuer, app) = guard_for(
        &format!("http://{addr}"),
        "timeouts: { upstream_response: 300ms }",
    )
    .await;
    let (status, _, body) = get(
        &format!("http://{}/public/x", app.inbound_addr.unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json(&body)["error"], "upstream_timeout");
    holder.abort();
    app.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_and_forwarded_as_http1() {
    let s = Stack::rs256().await;
    s.ready().await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let token = s.issuer.mint(json!({ "scope": "orders:read" }));
    let req = Request::get(format!("{}/orders/7", s.base))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = s.echo.last_headers().unwrap();
    assert_eq!(
        seen["host"],
        s.base.trim_start_matches("http://"),
        "authority becomes Host upstream"
    );
    s.stop().await;
}

/// A request body of `left` 64 KiB frames with no length: sent chunked.
struct Chunks {
    left: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))))
    }
}

#[tokio::test]
async fn request_bodies_stream_through() {
    let s = Stack::rs256().await;
    s.ready().await;
    let client: Client<_, Chunks> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("{}/public/upload", s.base))
        .body(Chunks { left: 64 })
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        json(&String::from_utf8_lossy(&text))["echo"]["body_bytes"],
        4 * 1024 * 1024
    );
    s.stop().await;
}

/// An upstream that accepts `Upgrade: websocket`, answers 101 and echoes raw bytes.
async fn upgrade_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |mut req: Request<hyper::body::Incoming>| async move {
                        let upgraded = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            if let Ok(up) = upgraded.await {
                                let mut io = TokioIo::new(up);
                                let mut buf = [0u8; 64];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        });
                        let resp = hyper::Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "upgrade")
                            .header("upgrade", "websocket")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let upstream = upgrade_upstream().await;
    let (_issuer, app) = guard_for(&format!("http://{upstream}"), "").await;
    let mut conn = TcpStream::connect(app.inbound_addr.unwrap()).await.unwrap();
    conn.write_all(
        b"GET /public/ws HTTP/1.1\r\nHost: guard\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).await.unwrap(),
            1,
            "connection closed during the 101 head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    conn.write_all(b"ping over the tunnel").await.unwrap();
    let mut echoed = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping over the tunnel");
    app.shutdown().await;
}

#[tokio::test]
async fn tls_listener_serves_h2_and_http1_via_alpn() {
    use hyper::client::conn::{http1, http2};
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    let (s, cert) = tls_stack("").await;
    let addr = s.app.as_ref().unwrap().inbound_addr.unwrap();
    let token = s.issuer.mint(json!({ "scope": "orders:read" }));

    for alpn in ["h2", "http/1.1"] {
        let config = tls_client(&[cert.cert.der().clone()], Some(alpn));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
        let req = Request::get(format!("https://localhost/orders/{alpn}"))
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let status = if alpn == "h2" {
            let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap().status()
        } else {
            let (mut sender, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap().status()
        };
        assert_eq!(status, StatusCode::OK, "{alpn}");
        assert_eq!(s.echo.last_headers().unwrap()["x-forwarded-proto"], "https");
    }
    // A plaintext request on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "plaintext must not be served on the TLS port"
    );
    assert_eq!(s.echo.hits(), 2);
    s.stop().await;
}

/// A TLS connection that chose HTTP/1.1 by ALPN is served by hyper's http1
/// without protocol detection: the header-read timeout still closes a
/// stalled or a silent one, and at shutdown a request in flight on one
/// completes and the connection closes, well within the 20 s drain.
#[tokio::test]
async fn tls_http1_connections_keep_the_header_read_timeout_and_drain() {
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    let (s, cert) = tls_stack("timeouts: { header_read: 1s }").await;
    let addr = s.app.as_ref().unwrap().inbound_addr.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client(
        &[cert.cert.der().clone()],
        Some("http/1.1"),
    )));
    let connect = || async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls
    };

    // One request answered (past the first-request deadline's watch), then a
    // second whose headers never end: hyper's own header-read timeout.
    let mut stalled = connect().await;
    stalled
        .write_all(
            b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\nGET /public/y HTTP/1.1\r\nHost: x\r\n",
        )
        .await
        .unwrap();
    let mut silent = connect().await;
    for (what, conn, answered) in [
        ("stalled", &mut stalled, true),
        ("silent", &mut silent, false),
    ] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "{what}: the server closed the connection");
        let text = String::from_utf8_lossy(&buf);
        if answered {
            assert!(text.starts_with("HTTP/1.1 200"), "{what}: {text}");
            assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{what}: {text}");
        } else {
            assert!(
                buf.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{what}: {text}"
            );
        }
    }
    assert_eq!(s.echo.hits(), 1);

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(connect().await))
        .await
        .unwrap();
    let closed = tokio::spawn(conn);
    let req = Request::get("/public/slow?delay_ms=800")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let in_flight = tokio::spawn(sender.send_request(req));
    assert!(
        eventually(Duration::from_millis(5000), || async { s.echo.hits() == 2 }).await,
        "the slow request reached the app ({} hits)",
        s.echo.hits()
    );
    let stopped = tokio::spawn(s.stop());
    let resp = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the request in flight was answered")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap();
    let closing = tokio::time::timeout(Duration::from_secs(5), closed).await;
    assert!(
        closing.is_ok(),
        "the connection closed after its last request"
    );
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("shutdown waited only for the request in flight")
        .unwrap();
}

#[tokio::test]
async fn clients_that_stall_while_sending_headers_are_disconnected() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "k")],
        "",
        "timeouts: { header_read: 300ms }",
    )
    .await;
    s.ready().await;
    let mut conn = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // never finishes
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was closed by the server");
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(s.echo.hits(), 0);
    s.stop().await;
}

#[tokio::test]
async fn connections_that_never_send_a_request_are_closed() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "k")],
        "",
        "timeouts: { header_read: 300ms }",
    )
    .await;
    s.ready().await;
    let mut silent = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the silent connection");
    assert!(buf.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_connection_that_sent_a_request_outlives_the_first_request_deadline() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "k")],
        "",
        "timeouts: { header_read: 1s }",
    )
    .await;
    s.ready().await;
    let tcp = TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut conn, driver) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(driver);
    // Requests 100 ms apart for 1.5 s on the one connection: each wait is well
    // within `header_read`, the whole past the deadline for a first request.
    for round in 0..15 {
        let req = Request::get("/public/x")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = conn.send_request(req).await;
        let status = resp.as_ref().map(|r| r.status());
        assert_eq!(
            status.ok(),
            Some(StatusCode::OK),
            "request {round}: {resp:?}"
        );
        resp.unwrap().into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.echo.hits(), 15);
    s.stop().await;
}

#[tokio::test]
async fn max_connections_bounds_concurrent_connections() {
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "k")],
        "",
        "limits: { max_connections: 1 }",
    )
    .await;
    s.ready().await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let request = b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(&addr).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    // The first connection is kept alive, holding the only slot: the second waits in the backlog.
    let mut second = TcpStream::connect(&addr).await.unwrap();
    second.write_all(request).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), second.read_exact(&mut buf))
            .await
            .is_err()
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(10), second.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    s.stop().await;
}

/// A ready stack whose inbound listener serves TLS with a fresh self-signed
/// `localhost` certificate (returned, for clients to trust), plus `extra`
/// config.
async fn tls_stack(extra: &str) -> (Stack, rcgen::CertifiedKey<rcgen::KeyPair>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_file = temp_file("tls.crt", &cert.cert.pem());
    let key_file = temp_file("tls.key", &cert.signing_key.serialize_pem());
    let s = Stack::start(
        vec![SigningKey::generate(KeyKind::Rs256, "k")],
        "",
        &format!(
            "tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n{extra}",
            cert_file.display(),
            key_file.display()
        ),
    )
    .await;
    s.ready().await;
    (s, cert)
}

/// A TLS client trusting exactly `trust`, offering `alpn` if given.
fn tls_client(
    trust: &[rustls::pki_types::CertificateDer<'static>],
    alpn: Option<&str>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in trust {
        roots.add(c.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::aws_lc_rs::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn
        .map(|a| vec![a.as_bytes().to_vec()])
        .unwrap_or_default();
    config
}

/// The certificate a TLS handshake with `addr` presents.
async fn presented_cert(
    addr: std::net::SocketAddr,
    trust: &[rustls::pki_types::CertificateDer<'static>],
) -> Vec<u8> {
    let config = tls_client(trust, None);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn reload_rotates_tls_certificates_and_refuses_listener_changes() {
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let second = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_file = temp_file("rotate.crt", &first.cert.pem());
    let key_file = temp_file("rotate.key", &first.signing_key.serialize_pem());
    let issuer = DevIssuer::start(vec![SigningKey::generate(KeyKind::Rs256, "k")], AUD)
        .await
        .unwrap();
    let tls = format!(
        "tls: {{ cert_file: \"{}\", key_file: \"{}\" }}",
        cert_file.display(),
        key_file.display()
    );
    let yaml = config_yaml(&issuer.issuer, "http://127.0.0.1:9", "", &tls);
    let mut app = start_yaml(&yaml).await;
    let addr = app.inbound_addr.unwrap();
    let trust = [first.cert.der().clone(), second.cert.der().clone()];
    assert_eq!(
        presented_cert(addr, &trust).await,
        first.cert.der().to_vec()
    );

    // cert-manager style rotation: same paths, new files, then a reload.
    std::fs::write(&cert_file, second.cert.pem()).unwrap();
    std::fs::write(&key_file, second.signing_key.serialize_pem()).unwrap();
    app.reload(Config::from_yaml(&yaml, "test", &|_| None).unwrap())
        .await
        .unwrap();
    assert_eq!(
        presented_cert(addr, &trust).await,
        second.cert.der().to_vec()
    );

    // Listener settings cannot change in place.
    let changed = format!("{tls}\ntimeouts: {{ header_read: 1s }}");
    let yaml = config_yaml(&issuer.issuer, "http://127.0.0.1:9", "", &changed);
    let err = app
        .reload(Config::from_yaml(&yaml, "test", &|_| None).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("restart to apply"), "{err}");
    app.shutdown().await;
}

/// An HTTP/1.1 upstream that numbers its connections and answers each request
/// with its connection's number (`c1`, `c2`, …), in a content-length or a
/// chunked body; requests under `/public/slow` wait 200 ms first. It closes a
/// connection after `per_connection` requests, as servers with a keep-alive
/// request limit do. Returns its address and a count of accepted connections.
async fn numbering_upstream(
    per_connection: usize,
    chunked: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let number = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let name = format!("c{number}");
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for _ in 0..per_connection {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 1024];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    if buf.starts_with(b"GET /public/slow") {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    buf.drain(..end);
                    let answer = if chunked {
                        format!(
                            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{name}\r\n0\r\n\r\n",
                            name.len()
                        )
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        )
                    };
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_replaced_when_the_upstream_closes_them() {
    let (addr, accepted) = numbering_upstream(usize::MAX, false).await;
    let (_issuer, app) = guard_for(&format!("http://{addr}"), "").await;
    let url = format!("http://{}/public/x", app.inbound_addr.unwrap());
    for _ in 0..5 {
        assert_eq!(get(&url, None).await.0, StatusCode::OK);
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sequential requests share one pooled connection"
    );
    app.shutdown().await;

    let (addr, accepted) = numbering_upstream(2, false).await;
    let (_issuer, app) = guard_for(&format!("http://{addr}"), "").await;
    let url = format!("http://{}/public/x", app.inbound_addr.unwrap());
    for _ in 0..6 {
        assert_eq!(get(&url, None).await.0, StatusCode::OK);
        // Let the pool see the close (a request racing a close is retried only
        // when it was never written; otherwise it is a 502, as with any proxy).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    app.shutdown().await;
}

#[tokio::test]
async fn after_a_burst_light_traffic_reuses_the_most_recent_upstream_connection() {
    for chunked in [false, true] {
        let (addr, _) = numbering_upstream(usize::MAX, chunked).await;
        let (_issuer, app) = guard_for(&format!("http://{addr}"), "").await;
        let base = format!("http://{}", app.inbound_addr.unwrap());
        // Four requests at once: four upstream connections.
        let burst = (0..4).map(|_| get_body(format!("{base}/public/slow")));
        let mut served: Vec<String> = all_at_once(burst).await;
        served.sort();
        assert_eq!(served, ["c1", "c2", "c3", "c4"], "chunked: {chunked}");
        // Then one at a time: each goes on the connection the last one gave
        // back, so the other three stay idle and age out (handing out the least
        // recently used instead would cycle through all four and keep them open).
        let mut light = Vec::new();
        for _ in 0..6 {
            light.push(get_body(format!("{base}/public/fast")).await);
        }
        assert!(
            light.iter().all(|c| *c == light[0]),
            "chunked: {chunked}: {light:?}"
        );
        app.shutdown().await;
    }
}

async fn get_body(url: String) -> String {
    let (status, _, body) = get(&url, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Runs the futures concurrently and collects their outputs in order.
async fn all_at_once<F: std::future::Future<Output = String> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<String> {
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}
