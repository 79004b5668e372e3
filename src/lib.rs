//! tokengate: a sidecar authenticating reverse proxy.
//!
//! `start` builds everything from a validated [`config::Config`], binds the
//! listeners and returns a running [`App`]; the binary (`main.rs`) only parses
//! arguments, sets up logging and maps failures to exit codes.
//!
//! Inbound requests flow `server` → `inbound` (pure `verify` and `policy` at its
//! core, keys from `inbound::jwks`) → `upstream`; `error` turns every failure
//! into a response in one place.

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod inbound;
pub mod metrics;
pub mod server;
pub mod upstream;

use admin::Admin;
use config::Config;
use inbound::Inbound;
use metrics::Metrics;
use server::{serve, ServeOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A failure to start: bad TLS files, a port in use, …
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// A running tokengate.
pub struct App {
    pub admin_addr: SocketAddr,
    pub inbound_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub inbound: Option<Arc<Inbound>>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl App {
    /// Stops accepting and drains; returns when every listener has finished.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until `shutdown` (the token given to `start`) is cancelled and the drain is done.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds every listener and starts background work. Listening on port 0 is
/// fine: the bound addresses are in the returned `App`.
pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<App, StartError> {
    let metrics = Arc::new(Metrics::new());
    let mut tasks = JoinSet::new();
    let mut inbound_addr = None;
    let mut inbound = None;
    if let Some(cfg) = &config.inbound {
        let client = upstream::http_client(cfg.timeouts.upstream_connect).map_err(StartError)?;
        let guard = Inbound::new(cfg, client, metrics.clone()).map_err(StartError)?;
        let tls = match &cfg.tls {
            Some(files) => {
                Some(server::tls_acceptor(&files.cert_file, &files.key_file).map_err(StartError)?)
            }
            None => None,
        };
        let listener = bind(cfg.listen, "inbound").await?;
        inbound_addr = Some(
            listener
                .local_addr()
                .map_err(|e| StartError(e.to_string()))?,
        );
        guard.jwks().spawn_refreshers(shutdown.clone());
        let opts = ServeOptions {
            header_read_timeout: cfg.timeouts.header_read,
            max_header_bytes: cfg.limits.max_header_bytes,
            drain: cfg.timeouts.drain,
        };
        tasks.spawn(serve(listener, tls, opts, guard.clone(), shutdown.clone()));
        inbound = Some(guard);
    }
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        inbound: inbound.clone(),
    });
    let listener = bind(config.admin.listen, "admin").await?;
    let admin_addr = listener
        .local_addr()
        .map_err(|e| StartError(e.to_string()))?;
    let opts = ServeOptions {
        header_read_timeout: Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        drain: Duration::from_secs(1),
    };
    tasks.spawn(serve(listener, None, opts, admin, shutdown.clone()));
    match inbound_addr {
        Some(addr) => tracing::info!(admin = %admin_addr, inbound = %addr, "tokengate started"),
        None => tracing::info!(admin = %admin_addr, "tokengate started"),
    }
    Ok(App {
        admin_addr,
        inbound_addr,
        metrics,
        inbound,
        shutdown,
        tasks,
    })
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError(format!("cannot listen on {addr} ({what}): {e}")))
}

/// Short, non-reversible fingerprint for logs: the first 8 bytes of SHA-256, hex.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
