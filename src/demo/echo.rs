//! DEVELOPMENT ONLY: an echo upstream on loopback.

use super::{json_response, spawn_dev_server};
use crate::body::Body;
use crate::server::Downstream;
use crate::server::Handler;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// An upstream that answers every request with a JSON echo of what it received,
/// and remembers the headers of the last request.
pub struct Echo {
    pub addr: SocketAddr,
    /// Read by the test fixtures only.
    #[cfg_attr(not(feature = "test-fixtures"), allow(dead_code))]
    pub(super) state: Arc<EchoState>,
    pub(super) shutdown: CancellationToken,
}

const RECENT_PEERS: usize = 16;

#[derive(Default)]
pub(super) struct EchoState {
    pub(super) hits: AtomicU64,
    pub(super) last: Mutex<Option<hyper::HeaderMap>>,
    /// The peers of the latest requests, oldest first (at most `RECENT_PEERS`:
    /// the demo's echo runs for as long as anyone likes).
    pub(super) peers: Mutex<VecDeque<SocketAddr>>,
    /// `Authorization` values answered with 401.
    pub(super) refused: Mutex<Vec<HeaderValue>>,
}

impl Echo {
    pub async fn start() -> std::io::Result<Echo> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(EchoState::default());
        let shutdown = spawn_dev_server(listener, state.clone());
        Ok(Echo {
            addr,
            state,
            shutdown,
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Handler for EchoState {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, from: Downstream) -> Response<Body> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut peers) = self.peers.lock() {
            if peers.len() == RECENT_PEERS {
                peers.pop_front();
            }
            peers.push_back(from.peer);
        }
        let refused = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .is_some_and(|a| self.refused.lock().is_ok_and(|r| r.contains(a)));
        if refused {
            if let Ok(mut last) = self.last.lock() {
                *last = Some(req.headers().clone());
            }
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "invalid_token" }).to_string(),
            );
        }
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .filter(|(n, _)| n.as_str() != "authorization")
            .map(|(n, v)| (n.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
            .collect();
        if let Ok(mut last) = self.last.lock() {
            *last = Some(req.headers().clone());
        }
        // `?delay_ms=N` (at most 10s) answers slowly, for timeout and drain tests.
        let delay = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms=")))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(Duration::ZERO, |ms| Duration::from_millis(ms.min(10_000)));
        let method = req.method().to_string();
        let path = req.uri().to_string();
        let body_bytes = match http_body_util::BodyExt::collect(req.into_body()).await {
            Ok(b) => b.to_bytes().len(),
            Err(_) => 0,
        };
        tokio::time::sleep(delay).await;
        let body = json!({ "echo": { "method": method, "path": path, "headers": headers, "body_bytes": body_bytes } });
        json_response(
            StatusCode::OK,
            serde_json::to_string_pretty(&body).unwrap_or_default() + "\n",
        )
    }
}
