//! The body of every request and response tokengate produces: streamed
//! through from a peer, or a small local answer.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::HeaderMap;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pub type Body = Either<Streamed, Full<Bytes>>;

/// A body streamed through from a peer. An upstream response's body also holds
/// a lease on the connection it came on, and gives it back to its pool once read
/// to the end (a body dropped part-way leaves the connection to close).
pub struct Streamed {
    body: Incoming,
    /// Boxed: every request and response moves its body several times, and this
    /// keeps it two words larger than hyper's `Incoming` instead of five.
    lease: Option<Box<dyn GiveBack>>,
}

/// A body streamed through, with no connection to give back.
pub fn streamed(body: Incoming) -> Body {
    Either::Left(Streamed { body, lease: None })
}

/// An upstream response's body, giving `lease` (the connection it came on,
/// when pooled) back once read to the end. One that fails part-way is logged:
/// the caller's response is cut short after its head has gone out.
pub fn from_upstream(body: Incoming, lease: Option<Box<dyn GiveBack>>) -> Body {
    Either::Left(Streamed {
        body,
        lease: Some(lease.unwrap_or_else(|| Box::new(NotPooled))),
    })
}

/// The lease of an upstream response whose connection no pool takes back (a
/// zero-sized box: no allocation).
struct NotPooled;

impl GiveBack for NotPooled {
    fn give_back(self: Box<Self>) {}
}

/// What a streamed body hands back when it has been read to the end: the
/// connection it came on, to its pool.
pub trait GiveBack: Send + Sync {
    fn give_back(self: Box<Self>);

    /// The body's trailers, as they pass through (gRPC's status is there).
    fn trailers(&mut self, _trailers: &HeaderMap) {}
}

/// Calls `seen` with the trailers of an upstream response's body as they
/// pass through to the caller. A body not from an upstream has none to watch.
pub fn watch_trailers(body: &mut Body, seen: impl FnOnce(&HeaderMap) + Send + Sync + 'static) {
    if let Either::Left(Streamed {
        lease: Some(lease), ..
    }) = body
    {
        let inner = std::mem::replace(lease, Box::new(NotPooled));
        *lease = Box::new(Watched {
            inner,
            seen: Some(seen),
        });
    }
}

/// A lease whose body's trailers someone watches.
struct Watched<F> {
    inner: Box<dyn GiveBack>,
    seen: Option<F>,
}

impl<F: FnOnce(&HeaderMap) + Send + Sync> GiveBack for Watched<F> {
    fn give_back(self: Box<Self>) {
        self.inner.give_back();
    }

    fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(seen) = self.seen.take() {
            seen(trailers);
        }
        self.inner.trailers(trailers);
    }
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match (&frame, &mut self.lease) {
            (Some(Err(e)), Some(_)) => {
                tracing::warn!(error = %e, "upstream response body failed; the caller's response is cut short");
            }
            (Some(Ok(frame)), Some(lease)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    lease.trailers(trailers);
                }
            }
            _ => {}
        }
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

/// A small local body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}
