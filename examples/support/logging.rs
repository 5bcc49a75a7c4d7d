//! The examples' log output: tracing's fmt subscriber on stdout, `RUST_LOG` or `default` as
//! the filter, and ANSI colours only when stdout is a terminal (never in files or pipes).

use std::io::IsTerminal;
use std::process::ExitCode;

/// Installs the subscriber.
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

/// An example's `main`: installs the subscriber with `level`, runs `run`, and turns its error
/// into one line on stderr prefixed by `name` and a failing exit status.
#[allow(dead_code)] // echo.rs logs but returns herd's error from its own `main`.
pub fn main(name: &str, level: &str, run: impl FnOnce() -> Result<(), String>) -> ExitCode {
    init(level);
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
