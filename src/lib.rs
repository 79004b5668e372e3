//! tokengate: a sidecar authenticating reverse proxy.
//!
//! `start` builds everything from a validated [`config::Config`], binds the
//! listeners and returns a running [`App`]; the binary only calls
//! [`cli::main`], which parses arguments, sets up logging and maps failures
//! to exit codes.
//!
//! Layers, each importing only those below it:
//!
//! - faces: `cli`, `inbound` (the guard, then forward), `authz` (the guard's
//!   answer for a fronting proxy), `outbound` (token injection), `admin`;
//! - `guard`: the decision both inbound faces and `tokengate verify` share:
//!   shape, policy, bearer, the pure verifier, keys, JWKS, the token cache;
//! - `server`, `upstream`, `respond` (every failure's answer, in one place);
//! - leaves: `config`, `error` (with `guard::reject`, which imports only
//!   `config`), `metrics`, `headers`, `grpc`, `body`,
//!   `client`, `clock`, `unverified`, `access_log`, `watch`.

pub mod access_log;
mod admin;
mod authz;
mod body;
pub mod cli;
mod client;
mod clock;
pub mod config;
pub mod demo;
mod error;
mod grpc;
pub mod guard;
pub mod headers;
mod inbound;
mod metrics;
pub mod outbound;
mod respond;
mod server;
mod unverified;
mod upstream;
mod watch;

use admin::Admin;
use authz::Authz;
use config::Config;
use guard::Guard;
use inbound::Inbound;
use metrics::Metrics;
use outbound::Outbound;
use server::{serve, CertStore, ServeOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A failure to start, or a reload refused (the running config keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamUrlError),
    /// A reload changing what only a restart applies.
    #[error("{0} changed: restart to apply")]
    NeedsRestart(&'static str),
    #[error("the new config's issuer keys did not load; keeping the current one")]
    KeysNotLoaded,
    #[error("the new config's outbound tokens could not be fetched; keeping the current ones")]
    TokensNotFetched,
}

/// A running tokengate.
pub struct App {
    pub admin_addr: SocketAddr,
    pub inbound_addr: Option<SocketAddr>,
    pub authz_addr: Option<SocketAddr>,
    /// The authz listener's gRPC `ext_authz` port, when `authz.grpc_listen` is set.
    pub authz_grpc_addr: Option<SocketAddr>,
    pub outbound_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    outbound: Option<Arc<Swap<Outbound>>>,
    /// Cancels the current outbound generation's background work (token renewal).
    outbound_work: CancellationToken,
    inbound: Option<Arc<Swap<Inbound>>>,
    /// Cancels the current inbound generation's background work (JWKS refresh).
    inbound_work: CancellationToken,
    authz: Option<Arc<Swap<Authz>>>,
    /// Cancels the current authz generation's background work (JWKS refresh).
    authz_work: CancellationToken,
    /// The config the listeners were bound with.
    config: Config,
    /// The inbound listener's certificate, when it serves TLS.
    cert_store: Option<Arc<CertStore>>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl App {
    /// The outbound proxy currently serving.
    pub fn outbound(&self) -> Option<Arc<Outbound>> {
        self.outbound.as_ref().map(|s| s.current())
    }

    /// The inbound guard currently serving.
    pub fn inbound(&self) -> Option<Arc<Inbound>> {
        self.inbound.as_ref().map(|s| s.current())
    }

    /// The authz listener's handler currently serving.
    pub fn authz(&self) -> Option<Arc<Authz>> {
        self.authz.as_ref().map(|s| s.current())
    }

    /// Stops accepting and drains; returns when every listener has finished.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until `shutdown` (the token given to `start`) is cancelled and the drain is done.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Applies a new config without dropping a request: each direction is rebuilt
    /// from it, and swapped in only once ready (inbound keys loaded, outbound
    /// tokens fetched, so rotated secret files take effect); requests in flight
    /// finish on the old one. Listener changes need a restart. On any error
    /// nothing changes and the running config keeps serving.
    pub async fn reload(&mut self, config: Config) -> Result<(), StartError> {
        if self.config.admin.listen != config.admin.listen {
            return Err(StartError::NeedsRestart("admin.listen"));
        }
        let inbound = self.prepare_inbound(&config).await?;
        // Work started for a generation that will not serve.
        let mut started: Vec<CancellationToken> = Vec::new();
        started.extend(inbound.as_ref().map(|(_, work)| work.clone()));
        let abandon = |started: Vec<CancellationToken>, e| {
            started.iter().for_each(CancellationToken::cancel);
            Err(e)
        };
        let authz = match self.prepare_authz(&config).await {
            Ok(a) => a,
            Err(e) => return abandon(started, e),
        };
        started.extend(authz.as_ref().map(|(_, work)| work.clone()));
        let outbound = match self.prepare_outbound(&config).await {
            Ok(o) => o,
            Err(e) => return abandon(started, e),
        };
        if let (Some(swap), Some((guard, work))) = (&self.inbound, inbound) {
            swap.replace(guard);
            std::mem::replace(&mut self.inbound_work, work).cancel();
        }
        if let (Some(swap), Some((authz, work))) = (&self.authz, authz) {
            swap.replace(authz);
            std::mem::replace(&mut self.authz_work, work).cancel();
        }
        if let (Some(swap), Some((proxy, work))) = (&self.outbound, outbound) {
            swap.replace(proxy);
            std::mem::replace(&mut self.outbound_work, work).cancel();
        }
        self.config = config;
        Ok(())
    }

    async fn prepare_inbound(
        &self,
        config: &Config,
    ) -> Result<Option<(Arc<Inbound>, CancellationToken)>, StartError> {
        let Some((old, new)) = reloaded(
            &self.config.inbound,
            &config.inbound,
            "the inbound section (added or removed)",
        )?
        else {
            return Ok(None);
        };
        if old.listen != new.listen
            || old.tls.is_some() != new.tls.is_some()
            || inbound_serve_options(old) != inbound_serve_options(new)
        {
            return Err(StartError::NeedsRestart(
                "inbound listen, TLS on/off, header_read, drain, max_header_bytes or max_connections",
            ));
        }
        // Certificates are re-read even from unchanged paths (rotation in place).
        if let (Some(store), Some(files)) = (&self.cert_store, &new.tls) {
            store.reload(&files.cert_file, &files.key_file)?;
        }
        let client = client::http_client(new.timeouts.upstream_connect, None)?;
        let guard = Inbound::new(new, client, self.metrics.clone())?;
        let work = self.keys_loaded(guard.guard(), &new.guard).await?;
        Ok(Some((guard, work)))
    }

    async fn prepare_authz(
        &self,
        config: &Config,
    ) -> Result<Option<(Arc<Authz>, CancellationToken)>, StartError> {
        let Some((old, new)) = reloaded(
            &self.config.authz,
            &config.authz,
            "the authz section (added or removed)",
        )?
        else {
            return Ok(None);
        };
        if old.listen != new.listen
            || old.grpc_listen != new.grpc_listen
            || authz_serve_options(old) != authz_serve_options(new)
        {
            return Err(StartError::NeedsRestart(
                "authz listen, grpc_listen, header_read, drain, max_header_bytes or max_connections",
            ));
        }
        let client = client::http_client(new.timeouts.upstream_connect, None)?;
        let authz = Authz::new(new, client, self.metrics.clone());
        let work = self.keys_loaded(authz.guard(), &new.guard).await?;
        Ok(Some((authz, work)))
    }

    /// Starts a new guard's key refreshers and waits for its keys to load
    /// (three fetch timeouts at most); the token cancels its refreshers.
    async fn keys_loaded(
        &self,
        guard: &Guard,
        config: &config::GuardConfig,
    ) -> Result<CancellationToken, StartError> {
        let work = self.shutdown.child_token();
        guard.jwks().spawn_refreshers(work.clone());
        let deadline = config
            .issuers
            .iter()
            .map(|i| i.jwks_cache.fetch_timeout)
            .max()
            .unwrap_or_default()
            * 3;
        if !ready_within(deadline, || guard.is_ready()).await {
            work.cancel();
            return Err(StartError::KeysNotLoaded);
        }
        Ok(work)
    }

    async fn prepare_outbound(
        &self,
        config: &Config,
    ) -> Result<Option<(Arc<Outbound>, CancellationToken)>, StartError> {
        let Some((old, new)) = reloaded(
            &self.config.outbound,
            &config.outbound,
            "the outbound section (added or removed)",
        )?
        else {
            return Ok(None);
        };
        if old.listen != new.listen || outbound_serve_options(old) != outbound_serve_options(new) {
            return Err(StartError::NeedsRestart(
                "outbound listen, header_read, drain, max_header_bytes or max_connections",
            ));
        }
        let client = client::http_client(new.timeouts.upstream_connect, new.tls.as_deref())?;
        let work = self.shutdown.child_token();
        let proxy = Outbound::start(new, client, self.metrics.clone(), work.clone())?;
        let deadline = new
            .tokens
            .iter()
            .map(|t| t.fetch_timeout)
            .max()
            .unwrap_or_default()
            * 3;
        if !ready_within(deadline, || proxy.is_ready()).await {
            work.cancel();
            return Err(StartError::TokensNotFetched);
        }
        Ok(Some((proxy, work)))
    }
}

/// A section's running and new config, `None` when neither config has it;
/// adding or removing it (`restart`, what to say) takes a restart.
fn reloaded<'a, T>(
    old: &'a Option<T>,
    new: &'a Option<T>,
    restart: &'static str,
) -> Result<Option<(&'a T, &'a T)>, StartError> {
    match (old, new) {
        (None, None) => Ok(None),
        (Some(old), Some(new)) => Ok(Some((old, new))),
        _ => Err(StartError::NeedsRestart(restart)),
    }
}

/// Polls `ready` until it holds or `deadline` passes.
async fn ready_within(deadline: Duration, ready: impl Fn() -> bool) -> bool {
    let started = tokio::time::Instant::now();
    while !ready() {
        if started.elapsed() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

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

impl<H: server::Handler> server::Handler for Swap<H> {
    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
        from: server::Downstream,
    ) -> hyper::Response<body::Body> {
        self.current().handle(req, from).await
    }
}

/// Binds every listener and starts background work. Listening on port 0 is
/// fine: the bound addresses are in the returned `App`.
pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<App, StartError> {
    let metrics = Arc::new(Metrics::new());
    let mut tasks = JoinSet::new();
    let mut inbound_addr = None;
    let mut inbound = None;
    let inbound_work = shutdown.child_token();
    let mut cert_store = None;
    if let Some(cfg) = &config.inbound {
        let client = client::http_client(cfg.timeouts.upstream_connect, None)?;
        let guard = Inbound::new(cfg, client, metrics.clone())?;
        let tls = match &cfg.tls {
            Some(files) => {
                let store = CertStore::load(&files.cert_file, &files.key_file)?;
                let acceptor = store.acceptor()?;
                cert_store = Some(store);
                Some(acceptor)
            }
            None => None,
        };
        let (listener, addr) = bind(cfg.listen, "inbound").await?;
        inbound_addr = Some(addr);
        guard.guard().jwks().spawn_refreshers(inbound_work.clone());
        let opts = inbound_serve_options(cfg);
        let swap = Arc::new(Swap::new(guard));
        tasks.spawn(serve(listener, tls, opts, swap.clone(), shutdown.clone()));
        inbound = Some(swap);
    }
    let (mut authz_addr, mut authz_grpc_addr, mut authz) = (None, None, None);
    let authz_work = shutdown.child_token();
    if let Some(cfg) = &config.authz {
        let client = client::http_client(cfg.timeouts.upstream_connect, None)?;
        let handler = Authz::new(cfg, client, metrics.clone());
        let (listener, addr) = bind(cfg.listen, "authz").await?;
        authz_addr = Some(addr);
        let grpc = match cfg.grpc_listen {
            Some(grpc_listen) => Some(bind(grpc_listen, "authz gRPC").await?),
            None => None,
        };
        handler.guard().jwks().spawn_refreshers(authz_work.clone());
        let swap = Arc::new(Swap::new(handler));
        tasks.spawn(serve(
            listener,
            None,
            authz_serve_options(cfg),
            swap.clone(),
            shutdown.clone(),
        ));
        if let Some((listener, addr)) = grpc {
            authz_grpc_addr = Some(addr);
            let check = authz::grpc::GrpcCheck::new(swap.clone());
            let opts = authz_serve_options(cfg);
            tasks.spawn(serve(listener, None, opts, check, shutdown.clone()));
        }
        authz = Some(swap);
    }
    let mut outbound_addr = None;
    let mut outbound = None;
    let outbound_work = shutdown.child_token();
    if let Some(cfg) = &config.outbound {
        let client = client::http_client(cfg.timeouts.upstream_connect, cfg.tls.as_deref())?;
        let proxy = Outbound::start(cfg, client, metrics.clone(), outbound_work.clone())?;
        let (listener, addr) = bind(cfg.listen, "outbound").await?;
        outbound_addr = Some(addr);
        let swap = Arc::new(Swap::new(proxy));
        tasks.spawn(serve(
            listener,
            None,
            outbound_serve_options(cfg),
            swap.clone(),
            shutdown.clone(),
        ));
        outbound = Some(swap);
    }
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        inbound: inbound.clone(),
        authz: authz.clone(),
        outbound: outbound.clone(),
    });
    let (listener, admin_addr) = bind(config.admin.listen, "admin").await?;
    let opts = ServeOptions {
        header_read_timeout: Duration::from_secs(5),
        max_header_bytes: 16 * 1024,
        drain: Duration::from_secs(1),
        max_connections: 64,
    };
    tasks.spawn(serve(listener, None, opts, admin, shutdown.clone()));
    match inbound_addr {
        Some(addr) => tracing::info!(admin = %admin_addr, inbound = %addr, "tokengate started"),
        None => tracing::info!(admin = %admin_addr, "tokengate started"),
    }
    if let Some(addr) = authz_addr {
        match authz_grpc_addr {
            Some(grpc) => tracing::info!(authz = %addr, grpc = %grpc, "authz listening"),
            None => tracing::info!(authz = %addr, "authz listening"),
        }
    }
    if let Some(addr) = outbound_addr {
        tracing::info!(outbound = %addr, "outbound listening");
    }
    Ok(App {
        admin_addr,
        inbound_addr,
        authz_addr,
        authz_grpc_addr,
        outbound_addr,
        metrics,
        outbound,
        outbound_work,
        inbound,
        inbound_work,
        authz,
        authz_work,
        cert_store,
        config: config.clone(),
        shutdown,
        tasks,
    })
}

/// Listener settings of the outbound port (fixed for the process lifetime).
fn outbound_serve_options(cfg: &config::OutboundConfig) -> ServeOptions {
    ServeOptions {
        header_read_timeout: cfg.timeouts.header_read,
        max_header_bytes: cfg.max_header_bytes,
        drain: cfg.timeouts.drain,
        max_connections: cfg.max_connections,
    }
}

/// Listener settings of the inbound port (fixed for the process lifetime).
fn inbound_serve_options(cfg: &config::InboundConfig) -> ServeOptions {
    guard_serve_options(&cfg.timeouts, &cfg.guard.limits)
}

/// Listener settings of the authz port (fixed for the process lifetime).
fn authz_serve_options(cfg: &config::AuthzConfig) -> ServeOptions {
    guard_serve_options(&cfg.timeouts, &cfg.guard.limits)
}

fn guard_serve_options(timeouts: &config::Timeouts, limits: &config::Limits) -> ServeOptions {
    ServeOptions {
        header_read_timeout: timeouts.header_read,
        max_header_bytes: limits.max_header_bytes,
        drain: timeouts.drain,
        max_connections: limits.max_connections,
    }
}

/// A listener on `addr`, and the address it got (port 0 picks one).
async fn bind(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let listen = |source| StartError::Listen { addr, what, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    Ok((listener, bound))
}

/// Short, non-reversible fingerprint for logs: the first 8 bytes of SHA-256, hex.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
