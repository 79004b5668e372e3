//! The app's lifecycle, written once for every section that serves
//! (inbound, authz, outbound; each a [`Section`]): start (build → bind →
//! serve), reload (build → ready → swap, or keep what runs) and drain; and
//! [`run`], the process's loop around it (signals, the config watcher).

mod run;
mod section;

pub use run::{cancel_on_signal, run};
pub use section::StartError;

use crate::admin::Admin;
use crate::authz::Authz;
use crate::config::Config;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::server::ServeOptions;
use crate::swap::Swap;
use section::{bind, Section, Serving};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, DropGuard};

/// A section serving: its current handler, and what cancels that handler's
/// background work.
pub(crate) struct Live<S: Section> {
    swap: Arc<Swap<S>>,
    work: CancellationToken,
    kept: S::Kept,
    /// What it was started with that only a restart changes.
    fixed: S::Fixed,
    addrs: Vec<SocketAddr>,
}

/// A section's new build, ready, waiting to be swapped in; dropped instead,
/// its background work stops.
struct Built<S> {
    handler: Arc<S>,
    work: DropGuard,
}

impl<S: Section> Live<S> {
    async fn start(
        cfg: &S::Config,
        metrics: &Arc<Metrics>,
        serving: &mut Serving,
    ) -> Result<Live<S>, StartError> {
        let work = serving.shutdown.child_token();
        let stop = work.clone().drop_guard();
        let handler = S::build(cfg, metrics, &work)?;
        let swap = Arc::new(Swap::new(handler));
        let (addrs, kept) = S::listen(cfg, swap.clone(), serving).await?;
        Ok(Live {
            swap,
            work: stop.disarm(),
            kept,
            fixed: S::fixed(cfg),
            addrs,
        })
    }

    /// A new build for `new`, ready to serve; the running one is untouched.
    async fn build(
        &self,
        new: &S::Config,
        metrics: &Arc<Metrics>,
        shutdown: &CancellationToken,
    ) -> Result<Built<S>, StartError> {
        if S::fixed(new) != self.fixed {
            return Err(StartError::NeedsRestart(S::FIXED));
        }
        S::refresh(&self.kept, new)?;
        let work = shutdown.child_token();
        let stop = work.clone().drop_guard();
        let handler = S::build(new, metrics, &work)?;
        tokio::time::timeout(S::ready_within(new), handler.ready())
            .await
            .map_err(|_| StartError::NotReady(S::NOT_READY))?;
        Ok(Built {
            handler,
            work: stop,
        })
    }

    /// Swaps `built` in; requests in flight finish on the old handler, whose
    /// background work stops.
    fn swap(&mut self, built: Built<S>) {
        self.swap.replace(built.handler);
        std::mem::replace(&mut self.work, built.work.disarm()).cancel();
    }

    pub fn current(&self) -> Arc<S> {
        self.swap.current()
    }
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
    inbound: Option<Live<Inbound>>,
    authz: Option<Live<Authz>>,
    outbound: Option<Live<Outbound>>,
    /// The admin listener's configured address (a reload may not change it).
    admin_listen: SocketAddr,
    serving: Serving,
}

/// Binds every listener and starts background work. Listening on port 0 is
/// fine: the bound addresses are in the returned `App`.
pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<App, StartError> {
    let metrics = Arc::new(Metrics::new());
    let mut serving = Serving {
        tasks: JoinSet::new(),
        shutdown,
    };
    let inbound = start_section::<Inbound>(config, &metrics, &mut serving).await?;
    let authz = start_section::<Authz>(config, &metrics, &mut serving).await?;
    let outbound = start_section::<Outbound>(config, &metrics, &mut serving).await?;
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        inbound: inbound.as_ref().map(|l| l.swap.clone()),
        authz: authz.as_ref().map(|l| l.swap.clone()),
        outbound: outbound.as_ref().map(|l| l.swap.clone()),
    });
    let (listener, admin_addr) = bind(config.admin.listen, "admin").await?;
    serving.spawn(listener, None, ADMIN_SERVE_OPTIONS, admin);
    let app = App {
        admin_addr,
        inbound_addr: bound(&inbound, 0),
        authz_addr: bound(&authz, 0),
        authz_grpc_addr: bound(&authz, 1),
        outbound_addr: bound(&outbound, 0),
        metrics,
        inbound,
        authz,
        outbound,
        admin_listen: config.admin.listen,
        serving,
    };
    app.log_started();
    Ok(app)
}

/// The `n`th address a section bound (its own listener first).
fn bound<S: Section>(live: &Option<Live<S>>, n: usize) -> Option<SocketAddr> {
    live.as_ref().and_then(|l| l.addrs.get(n).copied())
}

async fn start_section<S: Section>(
    config: &Config,
    metrics: &Arc<Metrics>,
    serving: &mut Serving,
) -> Result<Option<Live<S>>, StartError> {
    match S::of(config) {
        Some(cfg) => Ok(Some(Live::start(cfg, metrics, serving).await?)),
        None => Ok(None),
    }
}

/// The admin listener's settings (not configurable).
const ADMIN_SERVE_OPTIONS: ServeOptions = ServeOptions {
    header_read_timeout: Duration::from_secs(5),
    max_header_bytes: 16 * 1024,
    drain: Duration::from_secs(1),
    max_connections: 64,
};

impl App {
    /// The outbound proxy currently serving.
    pub fn outbound(&self) -> Option<Arc<Outbound>> {
        self.outbound.as_ref().map(Live::current)
    }

    /// The inbound guard currently serving.
    pub fn inbound(&self) -> Option<Arc<Inbound>> {
        self.inbound.as_ref().map(Live::current)
    }

    /// The authz listener's handler currently serving.
    pub fn authz(&self) -> Option<Arc<Authz>> {
        self.authz.as_ref().map(Live::current)
    }

    fn log_started(&self) {
        match self.inbound_addr {
            Some(addr) => {
                tracing::info!(admin = %self.admin_addr, inbound = %addr, "tokengate started")
            }
            None => tracing::info!(admin = %self.admin_addr, "tokengate started"),
        }
        if let Some(addr) = self.authz_addr {
            match self.authz_grpc_addr {
                Some(grpc) => tracing::info!(authz = %addr, grpc = %grpc, "authz listening"),
                None => tracing::info!(authz = %addr, "authz listening"),
            }
        }
        if let Some(addr) = self.outbound_addr {
            tracing::info!(outbound = %addr, "outbound listening");
        }
    }

    /// Stops accepting and drains; returns when every listener has finished.
    pub async fn shutdown(mut self) {
        self.serving.shutdown.cancel();
        while self.serving.tasks.join_next().await.is_some() {}
    }

    /// Waits until `shutdown` (the token given to `start`) is cancelled and the drain is done.
    pub async fn wait(mut self) {
        while self.serving.tasks.join_next().await.is_some() {}
    }

    /// Applies a new config without dropping a request: each section is
    /// rebuilt from it, and swapped in only once every one is ready (keys
    /// loaded, tokens fetched, so rotated secret files take effect); requests
    /// in flight finish on the old one. Listener changes need a restart. On
    /// any error nothing changes and the running config keeps serving.
    pub async fn reload(&mut self, config: Config) -> Result<(), StartError> {
        if self.admin_listen != config.admin.listen {
            return Err(StartError::NeedsRestart("admin.listen"));
        }
        // A build that fails drops those before it, stopping their work.
        let inbound = self.build(&self.inbound, &config).await?;
        let authz = self.build(&self.authz, &config).await?;
        let outbound = self.build(&self.outbound, &config).await?;
        swap(&mut self.inbound, inbound);
        swap(&mut self.authz, authz);
        swap(&mut self.outbound, outbound);
        Ok(())
    }

    /// A section's new build for `config`: `None` when neither config has
    /// the section; adding or removing one takes a restart.
    async fn build<S: Section>(
        &self,
        live: &Option<Live<S>>,
        config: &Config,
    ) -> Result<Option<Built<S>>, StartError> {
        match (live, S::of(config)) {
            (None, None) => Ok(None),
            (Some(live), Some(new)) => {
                let shutdown = &self.serving.shutdown;
                Ok(Some(live.build(new, &self.metrics, shutdown).await?))
            }
            _ => Err(StartError::NeedsRestart(S::NAME)),
        }
    }
}

fn swap<S: Section>(live: &mut Option<Live<S>>, built: Option<Built<S>>) {
    if let (Some(live), Some(built)) = (live, built) {
        live.swap(built);
    }
}
