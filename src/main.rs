//! Thin binary: arguments → logging → command. Exit codes: 0 ok, 1 start-up
//! failure (or a rejected token for `verify`), 64 bad config or usage.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = tokengate::cli::Cli::parse();
    cli.init_logging();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(cli.run()),
        Err(e) => {
            eprintln!("tokengate: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}
