//! A handler replaced while serving, as a reload swaps it.

use crate::server::{Downstream, Handler};
use std::sync::Arc;

/// A handler that can be replaced while serving: each request runs on the one
/// current when it arrived.
pub struct Swap<H> {
    current: tokio::sync::watch::Sender<Arc<H>>,
}

impl<H> Swap<H> {
    pub fn new(handler: Arc<H>) -> Self {
        Swap {
            current: tokio::sync::watch::Sender::new(handler),
        }
    }

    pub fn current(&self) -> Arc<H> {
        self.current.borrow().clone()
    }

    pub fn replace(&self, handler: Arc<H>) {
        self.current.send_replace(handler);
    }
}

impl<H: Handler> Handler for Swap<H> {
    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
        from: Downstream,
    ) -> hyper::Response<crate::body::Body> {
        self.current().handle(req, from).await
    }
}
