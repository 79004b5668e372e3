//! HTTP clients and the forwarding step shared by both directions: a pooled
//! client for token and JWKS fetches, a connection pool per upstream, URI
//! rewrite, hop-by-hop removal, `X-Forwarded-*` and `Forwarded`, timeouts,
//! WebSocket upgrades and their tunnels.

use crate::error::ProxyError;
use crate::headers::{
    strip_hop_by_hop, FORWARDED, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::uri::{PathAndQuery, Scheme};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tower_service::Service;

/// Body of every request and response tokengate produces: streamed through, or a small local answer.
pub type Body = Either<Streamed, Full<Bytes>>;

/// A body streamed through from a peer. An upstream response's body also holds
/// the connection it came on, and gives it back to its pool once read to the end
/// (a body dropped part-way leaves the connection to close).
pub struct Streamed {
    body: Incoming,
    /// Boxed: every request and response moves its body several times, and this
    /// keeps it one word larger than hyper's `Incoming` instead of five.
    lease: Option<Box<Lease>>,
}

/// A body streamed through, with no connection to give back.
pub fn streamed(body: Incoming) -> Body {
    Either::Left(Streamed { body, lease: None })
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        // A chunked body's end shows only here, as the last (empty) poll.
        if frame.is_none() {
            if let Some(lease) = self.lease.take() {
                lease.give_back();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            if self.body.is_end_stream() {
                lease.give_back();
            }
        }
    }
}

/// Plain TCP or TLS (per the URI's scheme) to an upstream or a token server.
pub type Connector = HttpsConnector<HttpConnector>;

/// HTTP/1.1 + HTTPS client with connection pooling for token and JWKS fetches
/// (hyper-util's pool, keyed by host); also carries the connector each
/// [`Upstream`] builds its own single-host pool from.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Body>,
    connector: Connector,
}

impl HttpClient {
    pub fn request(&self, req: Request<Body>) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(req)
    }
}

/// A small local body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}

/// Builds the pooled client. TLS uses `tls` when given (extra CAs, client
/// certificate), else the bundled web PKI roots.
pub fn http_client(
    connect_timeout: Duration,
    tls: Option<&rustls::ClientConfig>,
) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let tls = match tls {
        Some(config) => config.clone(),
        None => client_tls(&[], None)?,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HttpClient {
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(https.clone()),
        connector: https,
    })
}

/// Pooled connections unused this long are closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A TLS client configuration: the bundled web PKI roots plus `extra_roots`,
/// presenting `identity` (certificate chain and key) when a server asks (mTLS).
pub fn client_tls(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    identity: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::aws_lc_rs::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS client setup: {e}"))?
    .with_root_certificates(roots);
    // ALPN is left to hyper-rustls, which sets it for the protocols it enables.
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// PURE: whether a request offering `upgrade` (the `Upgrade` value
/// [`strip_hop_by_hop`] returned) may switch to WebSocket (RFC 6455: an HTTP/1.1
/// GET), the one protocol tokengate splices. Every other offer is dropped and
/// the request goes on as plain HTTP, as RFC 9110 §7.8 lets a server ignore
/// `Upgrade`: an h2c tunnel would carry HTTP/2 requests no rule ever saw, and an
/// unknown protocol is a tunnel nobody checked. A list naming WebSocket among
/// others (`websocket, h2c`) is offered as WebSocket alone.
pub fn offers_websocket(method: &Method, version: Version, upgrade: Option<&HeaderValue>) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && upgrade.and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// PURE: a 101 switches to WebSocket: exactly one `Upgrade`, naming it. A 101
/// naming another protocol or none would open a tunnel that was never asked for.
fn switched_to_websocket(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let first = upgrades.next();
    upgrades.next().is_none()
        && first
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

static WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");

/// Where requests are forwarded.
pub struct Upstream {
    pool: Pool,
    direction: Direction,
    /// The upstream's `host[:port]` as a Host header value.
    host: HeaderValue,
    /// Path prefix of the upstream URL without a trailing slash ("" for none).
    base_path: String,
    response_timeout: Duration,
    /// An upgraded connection with no traffic either way this long is closed.
    tunnel_idle: Duration,
}

/// Which side of the app a forward serves; decides Host and `X-Forwarded-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To the app on loopback: keep the Host the guard settled on, and set
    /// `X-Forwarded-For/Proto/Host` and `Forwarded`, which tokengate owns (the
    /// caller's were removed before the rules ran).
    Inbound,
    /// From the app to an API: Host becomes the upstream's, and nothing about the
    /// app's network is added.
    Outbound,
}

/// Facts about the downstream connection a request arrived on, worked out once
/// per connection. Small on purpose: every request's future holds a copy, and
/// hyper moves those futures several times.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub peer: SocketAddr,
    pub tls: bool,
    facts: Arc<ConnectionFacts>,
}

/// What every request on a connection shares: the forwarding header values,
/// and the connection's place under `limits.max_connections`, held for as long
/// as the connection, or a tunnel it became, is open.
#[derive(Debug)]
struct ConnectionFacts {
    /// The peer's IP, ready for `X-Forwarded-For`.
    peer_ip: HeaderValue,
    /// `for=…;proto=…`, ready for `Forwarded` (RFC 7239).
    forwarded: HeaderValue,
    /// Held, never read: released when the last request or tunnel lets go.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Downstream {
    pub fn new(peer: SocketAddr, tls: bool) -> Downstream {
        Self::holding(peer, tls, None)
    }

    /// A connection that holds `slot` (and so does any tunnel it becomes).
    pub fn holding(peer: SocketAddr, tls: bool, slot: Option<OwnedSemaphorePermit>) -> Downstream {
        let proto = if tls { "https" } else { "http" };
        // RFC 7239 §6: an IPv6 address is bracketed and quoted.
        let forwarded = match peer.ip() {
            std::net::IpAddr::V4(ip) => format!("for={ip};proto={proto}"),
            std::net::IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto={proto}"),
        };
        // An IP address always formats to a valid header value.
        let valid = |text: String| {
            HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("unknown"))
        };
        Downstream {
            peer,
            tls,
            facts: Arc::new(ConnectionFacts {
                peer_ip: valid(peer.ip().to_string()),
                forwarded: valid(forwarded),
                _slot: slot,
            }),
        }
    }
}

impl Upstream {
    pub fn new(
        client: HttpClient,
        url: &Uri,
        response_timeout: Duration,
        tunnel_idle: Duration,
        direction: Direction,
    ) -> Result<Self, String> {
        let authority = url
            .authority()
            .cloned()
            .ok_or("upstream URL needs host:port")?;
        let origin = Uri::builder()
            .scheme(url.scheme().cloned().unwrap_or(Scheme::HTTP))
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("upstream URL: {e}"))?;
        Ok(Upstream {
            pool: Pool {
                connector: client.connector,
                origin,
                idle: Arc::default(),
            },
            direction,
            host: HeaderValue::from_str(authority.as_str())
                .map_err(|e| format!("upstream URL: {e}"))?,
            base_path: url.path().trim_end_matches('/').to_string(),
            response_timeout,
            tunnel_idle,
        })
    }

    /// Sends `req` upstream and returns the answer (streamed). The caller has
    /// already removed hop-by-hop headers with [`strip_hop_by_hop`] (before adding
    /// any header of its own, so `Connection` cannot name those away) and passes
    /// the `Upgrade` it returned: a WebSocket upgrade ([`offers_websocket`]) is
    /// asked of the upstream, and spliced through if it switches to WebSocket.
    /// Any other 101 is a 502. Inbound, `host` is the Host the app receives (the
    /// guard's canonical host; `None`: the upstream's own); outbound ignores it.
    pub async fn forward(
        &self,
        req: Request<Body>,
        from: &Downstream,
        upgrade: Option<HeaderValue>,
        host: Option<HeaderValue>,
    ) -> Result<Response<Body>, ProxyError> {
        let websocket = offers_websocket(req.method(), req.version(), upgrade.as_ref());
        // The rewrite is synchronous and kept out of this future: every request's
        // future is moved (copied) by hyper, and state held here would add to it.
        let mut req = self.upstream_request(req, from, websocket, host)?;
        let downstream_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let (mut resp, lease) =
            match tokio::time::timeout(self.response_timeout, self.pool.send(req)).await {
                Err(_) => return Err(ProxyError::UpstreamTimeout),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(answer)) => answer,
            };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(downstream) =
                downstream_upgrade.filter(|_| switched_to_websocket(resp.headers()))
            else {
                return Err(ProxyError::UpstreamFailed(
                    "switched protocols without the WebSocket upgrade asked for".into(),
                ));
            };
            let upstream = hyper::upgrade::on(&mut resp);
            // The tunnel keeps the connection's facts, and so its slot.
            let (facts, idle) = (from.facts.clone(), self.tunnel_idle);
            tokio::spawn(async move {
                if let (Ok(down), Ok(up)) = tokio::join!(downstream, upstream) {
                    tunnel(TokioIo::new(down), TokioIo::new(up), idle).await;
                }
                drop(facts);
            });
            // The connection now carries the upgraded protocol.
            return Ok(resp.map(streamed));
        }
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp.map(|body| {
            Either::Left(Streamed {
                body,
                lease: Some(Box::new(lease)),
            })
        }))
    }

    /// `req` as this upstream gets it: Host, `X-Forwarded-*` and `Forwarded` for
    /// the direction, the WebSocket upgrade if it is one, and an origin-form
    /// target under the base path.
    fn upstream_request(
        &self,
        req: Request<Body>,
        from: &Downstream,
        websocket: bool,
        host: Option<HeaderValue>,
    ) -> Result<Request<Body>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        if websocket {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, WEBSOCKET.clone());
        }
        let host = match self.direction {
            Direction::Inbound => {
                let headers = &mut parts.headers;
                let facts = &from.facts;
                headers.insert(X_FORWARDED_FOR.clone(), facts.peer_ip.clone());
                headers.insert(
                    X_FORWARDED_PROTO.clone(),
                    HeaderValue::from_static(if from.tls { "https" } else { "http" }),
                );
                headers.insert(FORWARDED.clone(), facts.forwarded.clone());
                match host {
                    Some(host) => {
                        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
                        host
                    }
                    None => {
                        headers.remove(&X_FORWARDED_HOST);
                        self.host.clone()
                    }
                }
            }
            Direction::Outbound => self.host.clone(),
        };
        parts.headers.insert(header::HOST, host);
        parts.uri = self.rewrite(&parts.uri)?;
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }

    fn rewrite(&self, uri: &Uri) -> Result<Uri, ProxyError> {
        let path_and_query = match uri.path_and_query() {
            // The common case shares the request's bytes instead of re-validating them.
            Some(pq) if self.base_path.is_empty() => pq.clone(),
            pq => PathAndQuery::try_from(format!(
                "{}{}",
                self.base_path,
                pq.map_or("/", PathAndQuery::as_str)
            ))
            .map_err(|_| ProxyError::BadRequest("invalid request target"))?,
        };
        // Origin-form: the connection already goes to this upstream.
        Ok(Uri::from(path_and_query))
    }
}

/// Copies both ways until either side closes or nothing has moved either way
/// for `idle`.
async fn tunnel<D, U>(down: D, up: U, idle: Duration)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut down = Noted::new(down, start, last.clone());
    let mut up = Noted::new(up, start, last.clone());
    let idle_out = async {
        loop {
            let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if deadline <= tokio::time::Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
        () = idle_out => tracing::debug!(idle = ?idle, "tunnel idle; closed"),
    }
}

/// A tunnel's end that notes when it last read anything, in milliseconds since
/// the tunnel opened (shared by both ends: traffic either way counts).
struct Noted<T> {
    io: T,
    start: tokio::time::Instant,
    last: Arc<AtomicU64>,
}

impl<T> Noted<T> {
    fn new(io: T, start: tokio::time::Instant, last: Arc<AtomicU64>) -> Self {
        Noted { io, start, last }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Noted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.io).poll_read(cx, buf));
        if buf.filled().len() > before {
            let ms = self.start.elapsed().as_millis();
            self.last
                .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        Poll::Ready(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Noted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Connections to one upstream. HTTP/1.1 has one request in flight per
/// connection: a connection is lent out with each request, its response body
/// gives it back once read to the end, and the pool holds only idle ones. The
/// most recently returned is lent first, so after a burst the surplus sits
/// unused and is closed after `IDLE_TIMEOUT`. One host, so no keyed map, no
/// per-request task and no boxed checkout future (hyper-util's legacy pool cost
/// about a fifth of a pass-through request's instructions).
struct Pool {
    connector: Connector,
    /// `scheme://authority/` of the upstream, what the connector dials.
    origin: Uri,
    idle: Arc<Idle>,
}

/// Idle connections, oldest first.
#[derive(Default)]
struct Idle(Mutex<VecDeque<Pooled>>);

struct Pooled {
    sender: http1::SendRequest<Body>,
    /// When it was given back: the queue is in this order.
    since: Instant,
}

/// A connection lent out with a request.
struct Lease {
    sender: http1::SendRequest<Body>,
    idle: Arc<Idle>,
}

impl Lease {
    /// Back into the pool, closing what has been idle too long.
    fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock();
        while idle
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.since) > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        idle.push_back(Pooled {
            sender: self.sender,
            since: now,
        });
    }
}

impl Idle {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pooled>> {
        // A poisoned lock only means a panic elsewhere between two queue operations.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently returned connection that is ready for a request. Drops
    /// closed ones, and the first one idle past `IDLE_TIMEOUT` with all below it
    /// (older still). One not yet ready (its response was read, but hyper has
    /// still to finish with it) stays where it is for a later checkout.
    fn checkout(&self, now: Instant) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.lock();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &idle[i];
            if now.saturating_duration_since(c.since) > IDLE_TIMEOUT {
                idle.drain(..=i);
                return None;
            }
            if c.sender.is_ready() {
                return idle.remove(i).map(|c| c.sender);
            }
            if c.sender.is_closed() {
                idle.remove(i);
            }
        }
        None
    }
}

impl Pool {
    /// Sends `req` on an idle pooled connection or a new one. A request a pooled
    /// connection could not take (it closed meanwhile) goes once more, on a new
    /// connection.
    async fn send(&self, req: Request<Body>) -> Result<(Response<Incoming>, Lease), ProxyError> {
        let mut req = req;
        let mut pooled = self.idle.checkout(Instant::now());
        loop {
            let fresh = pooled.is_none();
            let mut sender = match pooled.take() {
                Some(sender) => sender,
                // Boxed: dialling is rare, and inline its state would add
                // to every request's future.
                None => Box::pin(self.connect()).await?,
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        sender,
                        idle: self.idle.clone(),
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(ProxyError::UpstreamFailed(e.into_error().to_string())),
                },
            }
        }
    }

    async fn connect(&self) -> Result<http1::SendRequest<Body>, ProxyError> {
        let mut connector = self.connector.clone();
        let unreachable = |e: Box<dyn std::error::Error + Send + Sync>| {
            ProxyError::UpstreamUnreachable(e.to_string())
        };
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(unreachable)?;
        let io = connector
            .call(self.origin.clone())
            .await
            .map_err(unreachable)?;
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| ProxyError::UpstreamUnreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each request's future is copied whole into its connection's task, so state
    /// it carries costs every request. The header rewrite is synchronous and
    /// dialling is boxed; with both inline this future was 2.3 KiB (1.4 KiB now).
    #[test]
    fn forward_future_stays_small() {
        let client = http_client(Duration::from_secs(1), None).unwrap();
        let url = Uri::from_static("http://127.0.0.1:1/base");
        let second = Duration::from_secs(1);
        let up = Upstream::new(client, &url, second, second, Direction::Inbound).unwrap();
        let from = Downstream::new(([127, 0, 0, 1], 1).into(), false);
        let forward = up.forward(Request::new(full("")), &from, None, None);
        let size = std::mem::size_of_val(&forward);
        assert!(size <= 2048, "forward's future is {size} bytes");
    }

    #[test]
    fn forwarding_values_are_worked_out_per_connection() {
        for (peer, tls, ip, forwarded) in [
            (
                "10.1.2.3:5000",
                false,
                "10.1.2.3",
                "for=10.1.2.3;proto=http",
            ),
            (
                "127.0.0.1:1",
                true,
                "127.0.0.1",
                "for=127.0.0.1;proto=https",
            ),
            (
                "[2001:db8::1]:443",
                false,
                "2001:db8::1",
                "for=\"[2001:db8::1]\";proto=http",
            ),
        ] {
            let from = Downstream::new(peer.parse().unwrap(), tls);
            assert_eq!(from.facts.peer_ip, ip);
            assert_eq!(from.facts.forwarded, forwarded);
        }
    }

    #[test]
    fn only_websocket_upgrades_on_an_http11_get() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        let cases = [
            (Method::GET, HTTP_11, v("websocket"), true),
            (Method::GET, HTTP_11, v("WebSocket"), true),
            (Method::GET, HTTP_11, v("h2c, websocket"), true),
            (Method::GET, HTTP_11, v("h2c"), false),
            (Method::GET, HTTP_11, v("H2C"), false),
            (Method::GET, HTTP_11, v("echo"), false),
            (Method::GET, HTTP_11, v("websocketx"), false),
            (Method::GET, HTTP_11, v("TLS/1.2"), false),
            (Method::GET, HTTP_11, None, false),
            (Method::POST, HTTP_11, v("websocket"), false),
            (Method::GET, HTTP_10, v("websocket"), false),
            (Method::GET, HTTP_2, v("websocket"), false),
        ];
        for (method, version, upgrade, want) in cases {
            assert_eq!(
                offers_websocket(&method, version, upgrade.as_ref()),
                want,
                "{method} {version:?} {upgrade:?}"
            );
        }
    }

    #[test]
    fn a_101_must_name_websocket_alone() {
        let cases: [(&[&str], bool); 6] = [
            (&["websocket"], true),
            (&["WebSocket"], true),
            (&[], false),
            (&["h2c"], false),
            (&["websocket, h2c"], false),
            (&["websocket", "h2c"], false),
        ];
        for (upgrades, want) in cases {
            let mut h = HeaderMap::new();
            for u in upgrades {
                h.append(header::UPGRADE, HeaderValue::from_static(u));
            }
            assert_eq!(switched_to_websocket(&h), want, "{upgrades:?}");
        }
    }

    /// A tunnel closes once nothing has moved for its idle time, and not before:
    /// traffic either way keeps it open (paused clock: no real waiting).
    #[tokio::test(start_paused = true)]
    async fn tunnels_close_when_idle() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, down) = tokio::io::duplex(64);
        let (up, mut app) = tokio::io::duplex(64);
        let idle = Duration::from_secs(10);
        let started = tokio::time::Instant::now();
        let task = tokio::spawn(tunnel(down, up, idle));
        let mut buf = [0u8; 4];
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"ping").await.unwrap();
            app.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            app.write_all(b"pong").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
        }
        assert!(
            !task.is_finished(),
            "traffic every 6 s keeps a 10 s tunnel open"
        );
        task.await.unwrap();
        let lived = started.elapsed();
        assert!(
            lived >= Duration::from_secs(46) && lived < Duration::from_secs(47),
            "closed {lived:?} after opening: 10 s after the last traffic at 36 s"
        );
        assert_eq!(
            client.read(&mut buf).await.unwrap(),
            0,
            "the caller's end is closed"
        );
    }

    #[test]
    fn rewrite_gives_the_origin_form_under_the_base_path() {
        let client = http_client(Duration::from_secs(1), None).unwrap();
        let up = Upstream::new(
            client.clone(),
            &"http://127.0.0.1:8080".parse().unwrap(),
            Duration::from_secs(1),
            Duration::from_secs(1),
            Direction::Inbound,
        )
        .unwrap();
        assert_eq!(
            up.rewrite(&"/a/b?x=1".parse().unwrap()).unwrap(),
            "/a/b?x=1"
        );
        let up = Upstream::new(
            client,
            &"https://app.local/base/".parse().unwrap(),
            Duration::from_secs(1),
            Duration::from_secs(1),
            Direction::Outbound,
        )
        .unwrap();
        assert_eq!(
            up.rewrite(&"http://front/a?q".parse().unwrap()).unwrap(),
            "/base/a?q"
        );
    }
}
