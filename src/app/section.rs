//! What each serving section of the config (inbound, authz, outbound) does
//! differently in the app's lifecycle ([`super`]): how its handler is built,
//! what only a restart changes, the listeners it binds, and when a new build
//! may serve.

use crate::authz::{grpc::GrpcCheck, Authz};
use crate::config::{self, Config};
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::server::{self, serve, CertStore, Handler, ServeOptions};
use crate::swap::Swap;
use crate::{client, upstream};
use std::future::Future;
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
    /// A new build did not become ready in time (the section's own words:
    /// its keys did not load, its tokens could not be fetched).
    #[error("{0}")]
    NotReady(&'static str),
}

/// One section of the config that serves: its handler, built from its part
/// of the config, is swapped whole on reload.
pub(crate) trait Section: Handler + Sized + Send + Sync + 'static {
    type Config: Send + Sync + 'static;
    /// What only a restart applies (listeners, TLS on or off, serve options):
    /// a reload that changes it is refused.
    type Fixed: PartialEq + Send + Sync;
    /// What its listeners keep for reloads (the inbound certificate).
    type Kept: Send + Sync;
    /// The section, as a refused reload names it.
    const NAME: &'static str;
    /// The fields [`Section::Fixed`] holds, as a refused reload names them.
    const FIXED: &'static str;
    /// What a build that never became ready lacked.
    const NOT_READY: &'static str;

    fn of(config: &Config) -> Option<&Self::Config>;
    fn fixed(cfg: &Self::Config) -> Self::Fixed;
    /// Builds the handler, its background work (key refresh, token renewal)
    /// started under `work`.
    fn build(
        cfg: &Self::Config,
        metrics: &Arc<Metrics>,
        work: &CancellationToken,
    ) -> Result<Arc<Self>, StartError>;
    /// Resolves once the handler may serve (keys loaded, tokens fetched).
    fn ready(&self) -> impl Future<Output = ()> + Send;
    /// How long a reload waits for [`Section::ready`].
    fn ready_within(cfg: &Self::Config) -> Duration;
    /// Binds the section's listeners and serves `handler` on them; the
    /// addresses bound, its own listener first.
    fn listen(
        cfg: &Self::Config,
        handler: Arc<Swap<Self>>,
        serving: &mut Serving,
    ) -> impl Future<Output = Result<(Vec<SocketAddr>, Self::Kept), StartError>> + Send;
    /// Before a reload's build: what the listeners re-read (certificates).
    fn refresh(_kept: &Self::Kept, _cfg: &Self::Config) -> Result<(), StartError> {
        Ok(())
    }
}

/// Where listeners are spawned, and what stops them.
pub(crate) struct Serving {
    pub tasks: JoinSet<()>,
    pub shutdown: CancellationToken,
}

impl Serving {
    pub fn spawn<H, B>(
        &mut self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        opts: ServeOptions,
        handler: Arc<H>,
    ) where
        H: Handler<B>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let shutdown = self.shutdown.clone();
        self.tasks
            .spawn(serve(listener, tls, opts, handler, shutdown));
    }
}

/// A listener on `addr`, and the address it got (port 0 picks one).
pub(super) async fn bind(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let listen = |source| StartError::Listen { addr, what, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    Ok((listener, bound))
}

/// The longest fetch timeout among `timeouts`, three times: how long a
/// reload waits for a new build's first fetches.
fn three_fetches(timeouts: impl Iterator<Item = Duration>) -> Duration {
    timeouts.max().unwrap_or_default() * 3
}

/// How long a guard's first key fetches (and introspection probes) may
/// take: three fetch timeouts of its slowest issuer.
fn keys_within(guard: &config::GuardConfig) -> Duration {
    three_fetches(guard.issuers.iter().flat_map(|i| {
        let introspection = i.introspection.as_ref().map(|x| x.timeout);
        std::iter::once(i.jwks_cache.fetch_timeout).chain(introspection)
    }))
}

const KEYS_NOT_LOADED: &str = "the new config's issuer keys did not load; keeping the current one";

fn guard_serve_options(timeouts: &config::Timeouts, limits: &config::Limits) -> ServeOptions {
    ServeOptions {
        header_read_timeout: timeouts.header_read,
        max_header_bytes: limits.max_header_bytes,
        drain: timeouts.drain,
        max_connections: limits.max_connections,
    }
}

impl Section for Inbound {
    type Config = config::InboundConfig;
    /// The listener, whether it speaks TLS and asks for which client
    /// certificates, and how it serves.
    type Fixed = (SocketAddr, Option<config::ClientCerts>, ServeOptions);
    type Kept = Option<Arc<CertStore>>;
    const NAME: &'static str = "the inbound section (added or removed)";
    const FIXED: &'static str =
        "inbound listen, TLS on/off or its client certificates, header_read, drain, max_header_bytes or max_connections";
    const NOT_READY: &'static str = KEYS_NOT_LOADED;

    fn of(config: &Config) -> Option<&Self::Config> {
        config.inbound.as_ref()
    }

    fn fixed(cfg: &Self::Config) -> Self::Fixed {
        let serve = guard_serve_options(&cfg.timeouts, &cfg.guard.limits);
        let tls = cfg.tls.as_ref().map(|t| t.clients.clone());
        (cfg.listen, tls, serve)
    }

    fn build(
        cfg: &Self::Config,
        metrics: &Arc<Metrics>,
        work: &CancellationToken,
    ) -> Result<Arc<Self>, StartError> {
        let client = client::http_client(cfg.timeouts.upstream_connect, None)?;
        let inbound = Inbound::new(cfg, client, metrics.clone())?;
        inbound.guard().spawn_work(work);
        Ok(inbound)
    }

    async fn ready(&self) {
        self.guard().ready().await;
    }

    fn ready_within(cfg: &Self::Config) -> Duration {
        keys_within(&cfg.guard)
    }

    async fn listen(
        cfg: &Self::Config,
        handler: Arc<Swap<Self>>,
        serving: &mut Serving,
    ) -> Result<(Vec<SocketAddr>, Self::Kept), StartError> {
        let (tls, store) = match &cfg.tls {
            Some(files) => {
                let store = CertStore::load(&files.cert_file, &files.key_file)?;
                (Some(store.acceptor(&files.clients)?), Some(store))
            }
            None => (None, None),
        };
        let (listener, addr) = bind(cfg.listen, "inbound").await?;
        let opts = guard_serve_options(&cfg.timeouts, &cfg.guard.limits);
        serving.spawn(listener, tls, opts, handler);
        Ok((vec![addr], store))
    }

    /// Certificates are re-read even from unchanged paths (rotation in place).
    fn refresh(kept: &Self::Kept, cfg: &Self::Config) -> Result<(), StartError> {
        if let (Some(store), Some(files)) = (kept, &cfg.tls) {
            store.reload(&files.cert_file, &files.key_file)?;
        }
        Ok(())
    }
}

impl Section for Authz {
    type Config = config::AuthzConfig;
    type Fixed = (SocketAddr, Option<SocketAddr>, ServeOptions);
    type Kept = ();
    const NAME: &'static str = "the authz section (added or removed)";
    const FIXED: &'static str =
        "authz listen, grpc_listen, header_read, drain, max_header_bytes or max_connections";
    const NOT_READY: &'static str = KEYS_NOT_LOADED;

    fn of(config: &Config) -> Option<&Self::Config> {
        config.authz.as_ref()
    }

    fn fixed(cfg: &Self::Config) -> Self::Fixed {
        let serve = guard_serve_options(&cfg.timeouts, &cfg.guard.limits);
        (cfg.listen, cfg.grpc_listen, serve)
    }

    fn build(
        cfg: &Self::Config,
        metrics: &Arc<Metrics>,
        work: &CancellationToken,
    ) -> Result<Arc<Self>, StartError> {
        let client = client::http_client(cfg.timeouts.upstream_connect, None)?;
        let authz = Authz::new(cfg, client, metrics.clone());
        authz.guard().spawn_work(work);
        Ok(authz)
    }

    async fn ready(&self) {
        self.guard().ready().await;
    }

    fn ready_within(cfg: &Self::Config) -> Duration {
        keys_within(&cfg.guard)
    }

    /// The HTTP listener, and Envoy's gRPC `ext_authz` on `grpc_listen`.
    async fn listen(
        cfg: &Self::Config,
        handler: Arc<Swap<Self>>,
        serving: &mut Serving,
    ) -> Result<(Vec<SocketAddr>, Self::Kept), StartError> {
        let (listener, addr) = bind(cfg.listen, "authz").await?;
        let grpc = match cfg.grpc_listen {
            Some(grpc_listen) => Some(bind(grpc_listen, "authz gRPC").await?),
            None => None,
        };
        let opts = guard_serve_options(&cfg.timeouts, &cfg.guard.limits);
        let mut addrs = vec![addr];
        if let Some((grpc, grpc_addr)) = grpc {
            serving.spawn(grpc, None, opts, GrpcCheck::new(handler.clone()));
            addrs.push(grpc_addr);
        }
        serving.spawn(listener, None, opts, handler);
        Ok((addrs, ()))
    }
}

impl Section for Outbound {
    type Config = config::OutboundConfig;
    type Fixed = (SocketAddr, ServeOptions);
    type Kept = ();
    const NAME: &'static str = "the outbound section (added or removed)";
    const FIXED: &'static str =
        "outbound listen, header_read, drain, max_header_bytes or max_connections";
    const NOT_READY: &'static str =
        "the new config's outbound tokens could not be fetched; keeping the current ones";

    fn of(config: &Config) -> Option<&Self::Config> {
        config.outbound.as_ref()
    }

    fn fixed(cfg: &Self::Config) -> Self::Fixed {
        (cfg.listen, outbound_serve_options(cfg))
    }

    fn build(
        cfg: &Self::Config,
        metrics: &Arc<Metrics>,
        work: &CancellationToken,
    ) -> Result<Arc<Self>, StartError> {
        let client = client::http_client(cfg.timeouts.upstream_connect, cfg.tls.as_deref())?;
        Ok(Outbound::start(cfg, client, metrics.clone(), work.clone())?)
    }

    async fn ready(&self) {
        Outbound::ready(self).await;
    }

    fn ready_within(cfg: &Self::Config) -> Duration {
        three_fetches(cfg.tokens.iter().map(|t| t.fetch_timeout))
    }

    async fn listen(
        cfg: &Self::Config,
        handler: Arc<Swap<Self>>,
        serving: &mut Serving,
    ) -> Result<(Vec<SocketAddr>, Self::Kept), StartError> {
        let (listener, addr) = bind(cfg.listen, "outbound").await?;
        serving.spawn(listener, None, outbound_serve_options(cfg), handler);
        Ok((vec![addr], ()))
    }
}

fn outbound_serve_options(cfg: &config::OutboundConfig) -> ServeOptions {
    ServeOptions {
        header_read_timeout: cfg.timeouts.header_read,
        max_header_bytes: cfg.max_header_bytes,
        drain: cfg.timeouts.drain,
        max_connections: cfg.max_connections,
    }
}
