//! The process's loop around the app: signals (SIGTERM and Ctrl-C drain,
//! SIGHUP reloads) and the config watcher.

use super::{App, StartError};
use crate::config::Config;
use crate::watch::ConfigWatch;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// Starts the app for `config` (loaded from `path`) and serves until SIGTERM
/// or Ctrl-C, then drains. Reloads on SIGHUP and when the config file, or a
/// file it names, changes.
pub async fn run(path: &Path, config: &Config) -> Result<(), StartError> {
    let shutdown = CancellationToken::new();
    let mut app = super::start(config, shutdown.clone()).await?;
    let mut watch = ConfigWatch::new(path);
    let stop = cancel_on_signal(shutdown.clone());
    tokio::pin!(stop);
    let mut hangup = hangups();
    loop {
        let why = tokio::select! {
            () = &mut stop => break,
            () = next_hangup(&mut hangup) => "SIGHUP".to_string(),
            changed = watch.changed() => {
                let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
                format!("changed: {}", names.join(", "))
            }
        };
        reload(&mut app, path, &why).await;
        watch.settle();
    }
    tracing::info!("shutting down: draining in-flight requests");
    app.wait().await;
    Ok(())
}

/// Re-reads and validates the file and applies it; an invalid one is rejected
/// and the running config keeps serving. `why` names the trigger.
async fn reload(app: &mut App, path: &Path, why: &str) {
    let result = match Config::load(path) {
        Err(e) => Err(e.one_line()),
        Ok(config) => app.reload(config).await.map_err(|e| e.to_string()),
    };
    let outcome = match result {
        Ok(()) => {
            tracing::info!(trigger = why, "config reloaded");
            "applied"
        }
        Err(e) => {
            tracing::error!(
                trigger = why,
                "reload rejected, keeping the running config: {e}"
            );
            "rejected"
        }
    };
    app.metrics
        .config_reloads
        .with_label_values(&[outcome])
        .inc();
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

/// The next SIGHUP (never, where there are none).
async fn next_hangup(hangups: &mut Hangups) {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        if signal.recv().await.is_some() {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Resolves on SIGTERM or Ctrl-C, cancelling `shutdown`.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}
