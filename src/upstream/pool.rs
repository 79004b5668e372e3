//! The connections of one upstream: HTTP/1.1 connections lent out one request
//! at a time, or one HTTP/2 connection every request shares.

use crate::body::{Body, GiveBack};
use crate::client::{Connector, IDLE_TIMEOUT};
use crate::config::UpstreamProtocol;
use crate::error::ProxyError;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::header::{self, HeaderValue};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tower_service::Service;

/// Connections to one upstream. HTTP/1.1 has one request in flight per
/// connection: a connection is lent out with each request, its response body
/// gives it back once read to the end, and the pool holds only idle ones. The
/// most recently returned is lent first, so after a burst the surplus sits
/// unused and is closed after `IDLE_TIMEOUT`. One host, so no keyed map, no
/// per-request task and no boxed checkout future (hyper-util's legacy pool cost
/// about a fifth of a pass-through request's instructions).
///
/// HTTP/2 (`h2`, or `auto` when the upstream picks h2 by ALPN) multiplexes
/// every request on one connection; the upstream's `SETTINGS_MAX_CONCURRENT_STREAMS`
/// bounds the streams in flight (hyper queues the rest) and hyper's flow
/// control paces the bodies. A connection that closes is replaced by the next
/// request, one dial at a time.
pub struct Pool {
    connector: Connector,
    /// `scheme://authority/` of the upstream, what the connector dials.
    origin: Uri,
    protocol: UpstreamProtocol,
    idle: Arc<Idle>,
    /// The shared HTTP/2 connection, once dialled.
    shared: Mutex<Option<http2::SendRequest<Body>>>,
    /// Held while an HTTP/2 connection is dialled, so a burst dials one.
    dialing: tokio::sync::Mutex<()>,
    /// `auto`: whether the upstream chose h2 (known after the first dial).
    negotiated_h2: OnceLock<bool>,
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
pub struct Lease {
    sender: http1::SendRequest<Body>,
    idle: Arc<Idle>,
}

/// A dialled connection, in the protocol the upstream speaks on it.
enum Dialled {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// An idle HTTP/2 connection is pinged this often, and closed when a ping
/// goes unanswered for `PING_TIMEOUT`: a dead one is noticed before a
/// request waits on it.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

impl GiveBack for Lease {
    /// Back into the pool, closing what has been idle too long.
    fn give_back(self: Box<Self>) {
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
    /// An empty pool dialling `origin` (`scheme://authority/`) with
    /// `connector`, speaking `protocol`.
    pub fn new(connector: Connector, origin: Uri, protocol: UpstreamProtocol) -> Pool {
        Pool {
            connector,
            origin,
            protocol,
            idle: Arc::default(),
            shared: Mutex::new(None),
            dialing: tokio::sync::Mutex::new(()),
            negotiated_h2: OnceLock::new(),
        }
    }

    /// Sends `req` (origin-form, with its Host header, as for HTTP/1.1) and
    /// returns the answer, with the HTTP/1.1 connection it came on to give
    /// back (`None` on HTTP/2). `te_trailers`: the caller takes trailers, said
    /// again to an HTTP/2 upstream. A request a pooled connection could not
    /// take (it closed meanwhile) goes once more, on a new connection.
    pub async fn send(
        &self,
        req: Request<Body>,
        te_trailers: bool,
    ) -> Result<(Response<Incoming>, Option<Lease>), ProxyError> {
        if self.may_be_h2() {
            return Box::pin(self.send_h2(req, te_trailers)).await;
        }
        let mut req = req;
        let mut pooled = self.idle.checkout(Instant::now());
        loop {
            let fresh = pooled.is_none();
            let mut sender = match pooled.take() {
                Some(sender) => sender,
                // Boxed: dialling is rare, and inline its state would add
                // to every request's future.
                None => match Box::pin(self.connect()).await? {
                    Dialled::H1(sender) => sender,
                    // `auto` on its first dial: the upstream chose h2.
                    Dialled::H2(sender) => {
                        self.keep(sender);
                        return Box::pin(self.send_h2(req, te_trailers)).await;
                    }
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        sender,
                        idle: self.idle.clone(),
                    };
                    return Ok((resp, Some(lease)));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(send_failed(e.into_error())),
                },
            }
        }
    }

    /// HTTP/2 may carry this upstream's requests: `h2`, or `auto` until the
    /// upstream chose HTTP/1.1.
    fn may_be_h2(&self) -> bool {
        match self.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2 => true,
            UpstreamProtocol::Auto => self.negotiated_h2.get().copied().unwrap_or(true),
        }
    }

    /// Sends `req` on the shared HTTP/2 connection, dialling one if there is
    /// none (or `auto` finds the upstream speaks HTTP/1.1, and the request goes
    /// that way instead).
    async fn send_h2(
        &self,
        req: Request<Body>,
        te_trailers: bool,
    ) -> Result<(Response<Incoming>, Option<Lease>), ProxyError> {
        let mut req = into_h2(req, self.origin.scheme(), te_trailers)?;
        let mut cached = self.shared();
        loop {
            let fresh = cached.is_none();
            let mut sender = match cached.take() {
                Some(sender) => sender,
                None => match self.dial_h2().await? {
                    Some(sender) => sender,
                    None => return Box::pin(self.send(from_h2(req), te_trailers)).await,
                },
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, None)),
                Err(mut e) => match e.take_message() {
                    // The shared connection closed meanwhile: `shared()` no
                    // longer returns it, so the next turn dials a new one.
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(send_failed(e.into_error())),
                },
            }
        }
    }

    /// The shared HTTP/2 connection if it is still open.
    fn shared(&self) -> Option<http2::SendRequest<Body>> {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    fn keep(&self, sender: http2::SendRequest<Body>) {
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
    }

    /// A new shared HTTP/2 connection, dialled by one request while the others
    /// wait for it; `None` when `auto` finds the upstream speaks HTTP/1.1 (its
    /// connection then goes to the idle pool).
    async fn dial_h2(&self) -> Result<Option<http2::SendRequest<Body>>, ProxyError> {
        let _one_at_a_time = self.dialing.lock().await;
        if let Some(sender) = self.shared() {
            return Ok(Some(sender));
        }
        match self.connect().await? {
            Dialled::H2(sender) => {
                self.keep(sender.clone());
                Ok(Some(sender))
            }
            Dialled::H1(sender) => {
                Box::new(Lease {
                    sender,
                    idle: self.idle.clone(),
                })
                .give_back();
                Ok(None)
            }
        }
    }

    async fn connect(&self) -> Result<Dialled, ProxyError> {
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
        let h2 = match self.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2 => true,
            UpstreamProtocol::Auto => {
                let h2 = io.connected().is_negotiated_h2();
                let _ = self.negotiated_h2.set(h2);
                h2
            }
        };
        let failed = |e: hyper::Error| ProxyError::UpstreamUnreachable(e.to_string());
        if h2 {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(PING_INTERVAL)
                .keep_alive_timeout(PING_TIMEOUT)
                .handshake(io)
                .await
                .map_err(failed)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "upstream h2 connection ended");
                }
            });
            return Ok(Dialled::H2(sender));
        }
        let (sender, connection) = http1::handshake(io).await.map_err(failed)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Dialled::H1(sender))
    }
}

/// PURE: an HTTP/1.1-shaped request (origin-form, Host header) as HTTP/2
/// sends it: the Host becomes `:authority`, the target absolute (`:scheme`),
/// and `te: trailers` — the one `te` HTTP/2 allows — is said again when the
/// caller sent it (hop-by-hop, it was removed).
/// Why a send failed. The request's body is the caller's, streamed through: a
/// body that is malformed (a chunk size that overflows) or ends early fails
/// the send from our side, and that is the caller's 400, not the upstream's
/// 502 (which would count against the app and page its owners).
fn send_failed(e: hyper::Error) -> ProxyError {
    let callers_body =
        e.is_user() && std::error::Error::source(&e).is_some_and(|s| s.is::<hyper::Error>());
    match callers_body {
        true => ProxyError::BadRequest("the request body is malformed or ended early".into()),
        false => ProxyError::UpstreamFailed(e.to_string()),
    }
}

fn into_h2(
    req: Request<Body>,
    scheme: Option<&Scheme>,
    te_trailers: bool,
) -> Result<Request<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let authority = match parts.headers.remove(header::HOST) {
        Some(host) => Authority::try_from(host.as_bytes())
            .map_err(|_| ProxyError::BadRequest("invalid Host".into()))?,
        None => return Err(ProxyError::BadRequest("no Host".into())),
    };
    let mut uri = parts.uri.into_parts();
    uri.scheme = Some(scheme.cloned().unwrap_or(Scheme::HTTP));
    uri.authority = Some(authority);
    parts.uri = Uri::from_parts(uri)
        .map_err(|_| ProxyError::BadRequest("invalid request target".into()))?;
    parts.version = Version::HTTP_2;
    // A WebSocket upgrade has no HTTP/2 form here: the request goes as it is.
    parts.headers.remove(header::CONNECTION);
    parts.headers.remove(header::UPGRADE);
    if te_trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    Ok(Request::from_parts(parts, body))
}

/// PURE: [`into_h2`] undone, for an `auto` upstream that chose HTTP/1.1.
fn from_h2(req: Request<Body>) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    if let Some(authority) = parts.uri.authority() {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
    }
    parts.headers.remove(header::TE);
    if let Some(target) = parts.uri.path_and_query() {
        parts.uri = Uri::from(target.clone());
    }
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;

    #[test]
    fn an_h1_request_becomes_its_h2_form_and_back() {
        let req = Request::builder()
            .uri("/orders/1?x=1")
            .header(header::HOST, "orders.internal:8080")
            .header("grpc-timeout", "1S")
            .body(full(""))
            .unwrap();
        let h2 = into_h2(req, Some(&Scheme::HTTPS), true).unwrap();
        assert_eq!(h2.uri(), "https://orders.internal:8080/orders/1?x=1");
        assert_eq!(h2.version(), Version::HTTP_2);
        assert!(h2.headers().get(header::HOST).is_none());
        assert_eq!(h2.headers()[header::TE], "trailers");
        assert_eq!(h2.headers()["grpc-timeout"], "1S");

        let h1 = from_h2(h2);
        assert_eq!(h1.uri(), "/orders/1?x=1");
        assert_eq!(h1.headers()[header::HOST], "orders.internal:8080");
        assert!(h1.headers().get(header::TE).is_none());
        assert_eq!(h1.version(), Version::HTTP_11);

        let no_te = Request::builder()
            .uri("/")
            .header(header::HOST, "a")
            .body(full(""))
            .unwrap();
        let h2 = into_h2(no_te, None, false).unwrap();
        assert_eq!(h2.uri(), "http://a/");
        assert!(h2.headers().get(header::TE).is_none());
    }
}
