//! Command line: `run`, `check`, `verify`, `token`, `demo`.

mod online;
mod verify;

use crate::access_log;
use crate::config::{AbsentFiles, Access, Config, GuardConfig, KeySource, Mode, UpstreamProtocol};
use crate::watch::ConfigWatch;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Exit code for a bad config or bad usage (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for a start-up failure (and a request `verify` would not forward).
pub const EXIT_FAILURE: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "tokengate",
    version,
    about = "Sidecar authenticating reverse proxy"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// What to log: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// filter directives (`info,tokengate::inbound=debug`). `RUST_LOG`, when
    /// set, takes precedence.
    #[arg(long, global = true, default_value = "info", value_parser = log_filter)]
    log_level: String,
    /// One line per request at info (direction, rule or route, method, path
    /// without query, status, reason, upstream status, duration; never a token).
    #[arg(long, global = true, value_enum, default_value_t = Switch::On)]
    access_log: Switch,
    /// Worker threads; default: the CPUs this process may use (its affinity mask
    /// and cgroup quota). With 1 the proxy runs on a single-threaded scheduler.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

/// `--log-level`: directives `EnvFilter` accepts, else a usage error.
fn log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("not a log level or filter: {e}"))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    #[value(alias = "human")]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file and print a summary.
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Also reach every issuer (discovery, JWKS), fetch every outbound
        /// token once and read every file the config names; exit 1 if any fails.
        #[arg(long)]
        online: bool,
    },
    /// Explain, check by check, what the proxy would do with a request; the last
    /// line is `decision: <status> <label>`. Exit 0 when it would be forwarded
    /// (or, for `authz`, allowed).
    Verify {
        #[arg(long)]
        config: PathBuf,
        /// The bearer token, or `-` to read it from stdin (keeps it out of the
        /// process list); omitted: a request without `Authorization`.
        #[arg(long)]
        token: Option<String>,
        /// The request target as a caller sends it: path and query.
        #[arg(long, default_value = "/")]
        path: String,
        /// The method as a caller sends it (the proxy refuses `get`).
        #[arg(long, default_value = "GET")]
        method: String,
        /// The `Host` header; empty: none (an HTTP/1.1 request without one is refused).
        #[arg(long, default_value = "localhost")]
        host: String,
        /// Decide as the `authz` listener (the request described is the one a
        /// fronting proxy asks about); the default when there is no `inbound`.
        #[arg(long)]
        authz: bool,
    },
    /// Fetch an outbound token once and print its lifetime and claims (never the token).
    Token {
        #[arg(long)]
        config: PathBuf,
        /// The token's name under `outbound.tokens`.
        #[arg(long)]
        name: String,
    },
    /// DEVELOPMENT ONLY: built-in issuer + echo upstream + guard on loopback.
    Demo,
}

impl Cli {
    /// The async runtime for this command: single-threaded for one worker (a
    /// work-stealing pool would have nothing to steal and only add cross-thread
    /// wake-ups, which is why linkerd2-proxy does the same), multi-threaded otherwise.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let workers = self.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        );
        let mut builder = if workers == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        };
        builder.enable_all().build()
    }

    /// Logging to stderr: `tracing` for events, and, when on and not filtered
    /// out (`tokengate::access=off`, or a level above info), the access log,
    /// written off the request path ([`crate::access_log`]).
    pub fn init_logging(&self) {
        use tracing_subscriber::EnvFilter;
        let directives = std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| self.log_level.clone());
        let mut filter = EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            eprintln!("tokengate: ignoring RUST_LOG={directives:?} ({e}); logging at info");
            EnvFilter::new("info")
        });
        if self.access_log == Switch::Off {
            if let Ok(off) = format!("{}=off", access_log::TARGET).parse() {
                filter = filter.add_directive(off);
            }
        }
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        let format = match self.log_format {
            LogFormat::Text => {
                builder.init();
                access_log::Format::Text
            }
            LogFormat::Json => {
                builder.json().init();
                access_log::Format::Json
            }
        };
        if tracing::enabled!(target: access_log::TARGET, tracing::Level::INFO) {
            match access_log::AccessLog::spawn(
                format,
                access_log::DEFAULT_CAPACITY,
                std::io::stderr(),
            ) {
                Ok(log) => {
                    access_log::install(log);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the access log writer; no access log")
                }
            }
        }
    }

    pub async fn run(self) -> ExitCode {
        match self.command {
            Command::Run { config } => run(&config).await,
            Command::Check { config, online } => check(&config, online).await,
            Command::Verify {
                config,
                token,
                path,
                method,
                host,
                authz,
            } => {
                let asked = verify::Asked {
                    token: token.as_deref(),
                    target: &path,
                    method: &method,
                    host: &host,
                    authz,
                };
                verify::verify(&config, asked).await
            }
            Command::Token { config, name } => token(&config, &name).await,
            Command::Demo => {
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                match crate::demo::run_demo(shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("tokengate demo: {e}");
                        ExitCode::from(EXIT_FAILURE)
                    }
                }
            }
        }
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("tokengate: invalid config {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let shutdown = CancellationToken::new();
    let mut app = match crate::start(&config, shutdown.clone()).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("tokengate: cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Reloads on SIGHUP and when the config file, or a file it names, changes.
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
    ExitCode::SUCCESS
}

/// Re-reads and validates the file and applies it; an invalid one is rejected
/// and the running config keeps serving. `why` names the trigger.
async fn reload(app: &mut crate::App, path: &Path, why: &str) {
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
async fn cancel_on_signal(shutdown: CancellationToken) {
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

/// `  protocol h2` when an upstream's protocol is not its URL's default;
/// nothing otherwise.
fn protocol_note(url: &hyper::Uri, protocol: UpstreamProtocol) -> String {
    match protocol == UpstreamProtocol::default_for(url) {
        true => String::new(),
        false => format!("  protocol {}", protocol.name()),
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Strict => "strict",
        Mode::Permissive => "permissive",
        Mode::Audit => "audit (nothing is rejected)",
    }
}

/// The issuers and rules of an `inbound` or `authz` section.
fn print_guard(guard: &GuardConfig) {
    for iss in &guard.issuers {
        let keys = match &iss.keys {
            KeySource::Jwks(u) => format!("jwks {u}"),
            KeySource::Discovery(u) => format!("discovery {u}"),
            KeySource::None => "shared secret only".to_string(),
        };
        let algorithms: Vec<String> = iss.algorithms.iter().map(|a| format!("{a:?}")).collect();
        let mut fetch = String::new();
        if iss.tls.is_some() {
            fetch.push_str("  own TLS");
        }
        if let Some(file) = &iss.jwks_bearer_token_file {
            fetch.push_str(&format!("  bearer from {}", file.display()));
        }
        println!(
            "  issuer {}  {keys}{fetch}  algorithms {}  audiences {}",
            iss.issuer,
            algorithms.join(", "),
            iss.audiences.join(", ")
        );
    }
    for (n, r) in guard.rules.iter().enumerate() {
        let access = match &r.access {
            Access::Anonymous => "anonymous".to_string(),
            Access::Token(req) => {
                let mut needs = Vec::new();
                if !req.scopes.is_empty() {
                    needs.push(format!("scopes {}", req.scopes.join(" ")));
                }
                for (name, value) in &req.claims {
                    needs.push(format!("claim {name} = {value}"));
                }
                match needs.is_empty() {
                    true => "any valid token".to_string(),
                    false => needs.join(", "),
                }
            }
        };
        println!("  rules[{n}] {}  {access}", r.name);
    }
}

async fn check(path: &Path, online: bool) -> ExitCode {
    // Offline, files that exist only where tokengate runs (a mounted Secret,
    // a projected token) are warned about, not refused; online reads them.
    let absent = if online {
        AbsentFiles::Refuse
    } else {
        AbsentFiles::StandIn
    };
    let config = match Config::load_with(path, absent) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokengate: invalid config {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!("{}: OK", path.display());
    if !online {
        for file in crate::watch::named_files(path).iter().skip(1) {
            if crate::config::is_absent(file) {
                eprintln!(
                    "tokengate: warning: {} does not exist here; it must where tokengate runs \
                     (`check --online` reads it)",
                    file.display()
                );
            }
        }
    }
    println!("admin    {}", config.admin.listen);
    match &config.inbound {
        Some(i) => {
            println!(
                "inbound  {}{} → {}  mode {}{}",
                i.listen,
                if i.tls.is_some() { " (TLS)" } else { "" },
                i.upstream,
                mode_name(i.guard.mode),
                protocol_note(&i.upstream, i.upstream_protocol),
            );
            print_guard(&i.guard);
        }
        None => println!("inbound  not configured"),
    }
    if let Some(a) = &config.authz {
        let grpc = a
            .grpc_listen
            .map(|g| format!(", gRPC ext_authz {g}"))
            .unwrap_or_default();
        println!(
            "authz    {}{grpc} (answers only)  mode {}",
            a.listen,
            mode_name(a.guard.mode)
        );
        print_guard(&a.guard);
    }
    match &config.outbound {
        Some(o) => {
            println!("outbound {}", o.listen);
            for r in &o.routes {
                let token = r
                    .token
                    .map_or("none (pass-through)", |i| o.tokens[i].name.as_str());
                println!(
                    "  host {}  → {}  token {token}{}",
                    r.host.as_deref().unwrap_or("*"),
                    r.upstream,
                    protocol_note(&r.upstream, r.protocol),
                );
            }
            for t in &o.tokens {
                let kind = match &t.source {
                    crate::config::TokenSource::OAuth(g) => {
                        format!("{} {}", t.source.kind(), g.token_url)
                    }
                    crate::config::TokenSource::Login(l) => format!("login {}", l.url),
                    crate::config::TokenSource::File { path } => format!("file {}", path.display()),
                };
                println!(
                    "  token {}  {kind}  renew_before {}",
                    t.name, t.renew_before
                );
            }
        }
        None => println!("outbound not configured"),
    }
    if online && !online::check(path, &config).await {
        return ExitCode::from(EXIT_FAILURE);
    }
    ExitCode::SUCCESS
}

async fn token(path: &Path, name: &str) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(outbound) = &config.outbound else {
        eprintln!("tokengate: the config has no outbound section");
        return ExitCode::from(EXIT_CONFIG);
    };
    let Some(t) = outbound.tokens.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = outbound.tokens.iter().map(|t| t.name.as_str()).collect();
        eprintln!(
            "tokengate: no token {name:?} (configured: {})",
            names.join(", ")
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let client = match crate::client::http_client(
        outbound.timeouts.upstream_connect,
        outbound.tls.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokengate: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match crate::outbound::source::fetch(&t.source, &client, t.fetch_timeout).await {
        Err(e) => {
            println!("token {name} ({}): FAILED: {e}", t.source.kind());
            ExitCode::from(EXIT_FAILURE)
        }
        Ok(fetched) => {
            let lifetime = fetched
                .lifetime
                .map_or("not stated".to_string(), |d| format!("{}s", d.as_secs()));
            println!(
                "token {name} ({}): ok, {} bytes, fingerprint {}, lifetime {lifetime}",
                t.source.kind(),
                fetched.token.len(),
                crate::fingerprint(fetched.token.as_bytes())
            );
            let decode = |part: &str| -> Option<serde_json::Value> {
                serde_json::from_slice(
                    &base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        part,
                    )
                    .ok()?,
                )
                .ok()
            };
            let mut parts = fetched.token.split('.');
            match (parts.next().and_then(decode), parts.next().and_then(decode)) {
                (Some(header), Some(claims)) => {
                    println!("header {header}");
                    println!(
                        "claims {}",
                        serde_json::to_string_pretty(&claims).unwrap_or_default()
                    );
                }
                _ => println!("an opaque token (not a JWT): no claims to show"),
            }
            ExitCode::SUCCESS
        }
    }
}
