//! Thin binary: arguments → logging → runtime → command. Exit codes: 0 ok, 1
//! start-up failure (or a rejected token for `verify`), 64 bad config or usage.

use clap::Parser;
use std::process::ExitCode;
use tokengate::cli::{Cli, EXIT_CONFIG};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors are 64.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cli.init_logging();
    let code = match cli.runtime() {
        Ok(rt) => rt.block_on(cli.run()),
        Err(e) => {
            eprintln!("tokengate: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    };
    // The access log's last lines, written by its own thread.
    tokengate::access_log::close();
    code
}
