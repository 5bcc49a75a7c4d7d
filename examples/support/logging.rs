//! The examples' log output: tracing's fmt subscriber on stdout, `RUST_LOG` or `default` as
//! the filter, and ANSI colours only when stdout is a terminal (never in files or pipes).

use std::io::IsTerminal;

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
