//! Thin binary: [`tokengate::cli::main`]. Exit codes: 0 ok, 1 start-up
//! failure (or a request `verify` would not forward), 64 bad config or usage.

fn main() -> std::process::ExitCode {
    tokengate::cli::main()
}
