//! Command line: `run`, `check`, `verify`, `token`, `demo`.

mod check;
mod online;
mod token;
mod verify;

use crate::access_log;
use crate::config::{AbsentFiles, Config};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Exit code for a bad config or bad usage (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for a start-up failure (and a request `verify` would not forward).
const EXIT_FAILURE: u8 = 1;

/// Why a command did not succeed; [`exit`] is the one place that says it and
/// picks the exit code.
#[derive(Debug)]
pub enum Failed {
    /// Bad usage or config: exit 64.
    Usage(String),
    /// The command could not do its job (start-up, a fetch): exit 1.
    Run(String),
    /// The command's own output has said why (a request `verify` would not
    /// forward, a `check --online` FAIL): exit 1, nothing more printed.
    Said,
    /// Arguments clap refused (64), or `--help` and `--version` (0).
    Args(clap::Error),
}

/// The exit code of a command's result, its error said on stderr.
fn exit(result: Result<(), Failed>) -> ExitCode {
    let (code, message) = match result {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failed::Usage(why)) => (EXIT_CONFIG, Some(why)),
        Err(Failed::Run(why)) => (EXIT_FAILURE, Some(why)),
        Err(Failed::Said) => (EXIT_FAILURE, None),
        Err(Failed::Args(e)) => {
            // --help and --version print to stdout and succeed.
            let _ = e.print();
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            return ExitCode::from(code);
        }
    };
    if let Some(why) = message {
        eprintln!("tokengate: {why}");
    }
    ExitCode::from(code)
}

/// The binary: arguments → logging → runtime → command → exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit(Err(Failed::Args(e))),
    };
    cli.init_logging();
    let result = match cli.runtime() {
        Ok(rt) => rt.block_on(cli.command.run()),
        Err(e) => Err(Failed::Run(format!("cannot start the runtime: {e}"))),
    };
    // The access log's last lines, written by its own thread.
    access_log::close();
    exit(result)
}

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
    /// Explain, check by check, what the proxy would do with a request, ending
    /// in `decision: <status> <label>` (then, if the decision did not reach
    /// the token, a line judging it alone). Exit 0 when it would be forwarded
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
        /// A DPoP proof (RFC 9449) for the request: the token is then sent as
        /// `Authorization: DPoP`, this as the `DPoP` header.
        #[arg(long)]
        dpop: Option<String>,
        /// A PEM file whose first certificate the request comes with, as a
        /// TLS client presents it (a `cnf.x5t#S256` token is bound to it).
        #[arg(long)]
        client_cert: Option<PathBuf>,
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
    fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
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
    fn init_logging(&self) {
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
}

impl Command {
    async fn run(self) -> Result<(), Failed> {
        match self {
            Command::Run { config } => run(&config).await,
            Command::Check { config, online } => check::check(&config, online).await,
            Command::Verify {
                config,
                token,
                path,
                method,
                host,
                dpop,
                client_cert,
                authz,
            } => {
                let asked = verify::Asked {
                    token: token.as_deref(),
                    target: &path,
                    method: &method,
                    host: &host,
                    dpop: dpop.as_deref(),
                    client_cert: client_cert.as_deref(),
                    authz,
                };
                verify::verify(&config, asked).await
            }
            Command::Token { config, name } => token::token(&config, &name).await,
            Command::Demo => {
                let shutdown = CancellationToken::new();
                tokio::spawn(crate::app::cancel_on_signal(shutdown.clone()));
                crate::demo::run_demo(shutdown)
                    .await
                    .map_err(|e| Failed::Run(format!("demo: {e}")))
            }
        }
    }
}

fn load(path: &Path) -> Result<Config, Failed> {
    load_with(path, AbsentFiles::Refuse)
}

fn load_with(path: &Path, absent: AbsentFiles) -> Result<Config, Failed> {
    Config::load_with(path, absent).map_err(|e| Failed::Usage(format!("invalid config {e}")))
}

/// `tokengate run`: the app, until SIGTERM or Ctrl-C, reloading as its config changes.
async fn run(path: &Path) -> Result<(), Failed> {
    let config = load(path)?;
    crate::app::run(path, &config)
        .await
        .map_err(|e| Failed::Run(format!("cannot start: {e}")))
}
