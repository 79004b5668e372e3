//! Listeners: TCP (optionally TLS) → hyper-util `auto` (HTTP/1.1 + h2c,
//! told apart by the first bytes), or, when TLS's ALPN has chosen, hyper's
//! `http1` or `auto` for h2, → a handler, with graceful shutdown and a bounded
//! drain.

mod tls;

pub use tls::{CertStore, TlsError};

use crate::body::Body;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Something that answers requests, with bodies of type `B` (tokengate's
/// own, unless a library's service answers: tonic's for gRPC `ext_authz`).
pub trait Handler<B = Body>: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        from: Downstream,
    ) -> impl Future<Output = Response<B>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Time to the first request on a connection, and to read each request's headers.
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub drain: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

/// Accepts connections until `shutdown`, then drains in-flight requests for at most `opts.drain`.
pub async fn serve<H, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    opts: ServeOptions,
    handler: Arc<H>,
    shutdown: CancellationToken,
) where
    H: Handler<B>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builders = Arc::new(Builders::new(&opts));
    // The connections being served; each is told to finish at `shutdown`.
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    loop {
        let (stream, peer, slot) = tokio::select! {
            accepted = accept(&listener, &slots) => match accepted {
                Some(conn) => conn,
                None => continue,
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        // The slot goes with the connection's facts: the service holds it for
        // as long as the connection is served, and a tunnel the connection
        // becomes holds it until the tunnel closes.
        let from = Downstream::holding(peer, tls.is_some(), Some(slot));
        // Set by the first request; a connection that sends none within the
        // header-read timeout (idle TCP, idle TLS, silent h2) is closed.
        let active = Arc::new(AtomicBool::new(false));
        let handler = handler.clone();
        let seen = active.clone();
        // The service for the connection's facts, once the handshake (if
        // any) has told its client certificate.
        let service = move |from: Downstream| {
            hyper::service::service_fn(move |req| {
                seen.store(true, Ordering::Relaxed);
                let handler = handler.clone();
                let from = from.clone();
                async move { Ok::<_, std::convert::Infallible>(handler.handle(req, from).await) }
            })
        };
        let builders = builders.clone();
        let closing = shutdown.clone();
        let tls = tls.clone();
        let first_request = opts.header_read_timeout;
        connections.spawn(async move {
            let deadline = tokio::time::Instant::now() + first_request;
            let result = match tls {
                None => {
                    let conn = builders
                        .auto
                        .serve_connection_with_upgrades(TokioIo::new(stream), service(from));
                    let conn = until_closing(conn, &closing, |c| c.graceful_shutdown());
                    until_first_request(conn, deadline, &active).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                        // ALPN chose HTTP/1.1: no protocol detection, no
                        // rewinding reader under every read.
                        Ok(Ok(tls_stream))
                            if tls_stream.get_ref().1.alpn_protocol() == Some(b"http/1.1") =>
                        {
                            let from = from.presenting(tls_stream.get_ref().1.peer_certificates());
                            let conn = builders
                                .http1
                                .serve_connection(TokioIo::new(tls_stream), service(from))
                                .with_upgrades();
                            let conn = until_closing(conn, &closing, |c| c.graceful_shutdown());
                            until_first_request(conn, deadline, &active)
                                .await
                                .map_err(Into::into)
                        }
                        Ok(Ok(tls_stream)) => {
                            let from = from.presenting(tls_stream.get_ref().1.peer_certificates());
                            let conn = builders.auto.serve_connection_with_upgrades(
                                TokioIo::new(tls_stream),
                                service(from),
                            );
                            let conn = until_closing(conn, &closing, |c| c.graceful_shutdown());
                            until_first_request(conn, deadline, &active).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(opts.drain) => tracing::warn!("drain timed out; closing remaining connections"),
    }
}

/// Runs `conn` until it ends; once `closing` fires, `finish` asks it to
/// complete the requests in flight and close (hyper's graceful shutdown),
/// and it runs until it has.
async fn until_closing<C: Future>(
    conn: C,
    closing: &CancellationToken,
    finish: impl FnOnce(Pin<&mut C>),
) -> C::Output {
    let mut conn = pin!(conn);
    tokio::select! {
        biased;
        done = conn.as_mut() => return done,
        () = closing.cancelled() => finish(conn.as_mut()),
    }
    conn.await
}

/// How each connection is served: HTTP/1.1 with the header-read timeout and
/// the header size limit, HTTP/2 with keep-alive pings and the same limit;
/// `auto` when the first bytes tell which, `http1` when ALPN has.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: http1::Builder,
}

impl Builders {
    fn new(opts: &ServeOptions) -> Builders {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        // The same HTTP/1.1 settings on both builders.
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(opts.header_read_timeout)
            .max_buf_size(http1_buf_size(opts));
        // Hostile h2 callers stay bounded (hyper's and h2's settings, set here so
        // they are visible): streams open at once per connection; the header list
        // (which also bounds a CONTINUATION flood: h2 stops reading a header block
        // past it); streams a caller opens and resets before they are served (the
        // rapid-reset attack, CVE-2023-44487: past the bound the connection is
        // closed with GOAWAY); and resets the server itself sends for a caller's
        // errors.
        auto.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS);
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(opts.header_read_timeout)
            .max_buf_size(http1_buf_size(opts));
        Builders { auto, http1 }
    }
}

/// hyper answers 431 itself when the header block outgrows its read buffer.
fn http1_buf_size(opts: &ServeOptions) -> usize {
    opts.max_header_bytes.max(8192) + 1024
}

/// Streams an h2 caller may have open at once on one connection.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 200;
/// Streams opened and reset by the caller before tokengate served them, at
/// once; more closes the connection (CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;
/// Resets tokengate sends for a caller's protocol errors on one connection;
/// more closes it.
const H2_MAX_LOCAL_RESETS: usize = 1024;

/// Waits for a free connection slot, then accepts.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let slot = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, slot)),
        Err(e) => {
            // Out of file descriptors and the like: back off instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Runs a connection, dropping it at `deadline` if it has not sent a request by
/// then. The deadline is dropped at the first request: a connection's task wakes
/// several times per request, and polling a timer beside it each time cost about
/// 1% of a proxied request.
async fn until_first_request<F, E>(
    conn: F,
    deadline: tokio::time::Instant,
    active: &AtomicBool,
) -> Result<(), E>
where
    F: Future<Output = Result<(), E>>,
{
    let mut conn = pin!(conn);
    let mut first = pin!(Some(tokio::time::sleep_until(deadline)));
    poll_fn(|cx| {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if let Some(sleep) = first.as_mut().as_pin_mut() {
            if active.load(Ordering::Relaxed) {
                first.set(None);
            } else if sleep.poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Pending
    })
    .await
}

/// Facts about the downstream connection a request arrived on, worked out once
/// per connection. Small on purpose: every request's future holds a copy, and
/// hyper moves those futures several times.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The base64url SHA-256 of the client certificate's DER (RFC 8705's
    /// `x5t#S256`), when the caller presented one in the TLS handshake.
    pub certificate: Option<Arc<str>>,
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
    #[cfg(test)]
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
            certificate: None,
            facts: Arc::new(ConnectionFacts {
                peer_ip: valid(peer.ip().to_string()),
                forwarded: valid(forwarded),
                _slot: slot,
            }),
        }
    }
}

impl Downstream {
    /// The connection, with the client certificate its handshake presented
    /// (the first of `chain`, the client's own).
    fn presenting(self, chain: Option<&[CertificateDer<'_>]>) -> Downstream {
        let certificate = chain
            .and_then(<[_]>::first)
            .map(|der| Arc::from(crate::sha256_base64url(der)));
        Downstream {
            certificate,
            ..self
        }
    }

    /// The peer's IP, ready for `X-Forwarded-For`.
    pub fn peer_ip(&self) -> &HeaderValue {
        &self.facts.peer_ip
    }

    /// `for=…;proto=…`, ready for `Forwarded` (RFC 7239).
    pub fn forwarded(&self) -> &HeaderValue {
        &self.facts.forwarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
