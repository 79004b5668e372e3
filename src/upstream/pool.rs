//! The connection pool of one upstream.

use crate::body::{Body, GiveBack};
use crate::client::{Connector, IDLE_TIMEOUT};
use crate::error::ProxyError;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response, Uri};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tower_service::Service;

/// Connections to one upstream. HTTP/1.1 has one request in flight per
/// connection: a connection is lent out with each request, its response body
/// gives it back once read to the end, and the pool holds only idle ones. The
/// most recently returned is lent first, so after a burst the surplus sits
/// unused and is closed after `IDLE_TIMEOUT`. One host, so no keyed map, no
/// per-request task and no boxed checkout future (hyper-util's legacy pool cost
/// about a fifth of a pass-through request's instructions).
pub struct Pool {
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
pub struct Lease {
    sender: http1::SendRequest<Body>,
    idle: Arc<Idle>,
}

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
    /// An empty pool dialling `origin` (`scheme://authority/`) with `connector`.
    pub fn new(connector: Connector, origin: Uri) -> Pool {
        Pool {
            connector,
            origin,
            idle: Arc::default(),
        }
    }

    /// Sends `req` on an idle pooled connection or a new one. A request a pooled
    /// connection could not take (it closed meanwhile) goes once more, on a new
    /// connection.
    pub async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), ProxyError> {
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
