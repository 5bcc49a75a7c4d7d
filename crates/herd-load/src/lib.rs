//! herd-load: the HTTP/1.1 load generator behind herd's benches.
//!
//! Each generator thread runs its own mio poll over its share of the connections. Requests are
//! `GET`s, optionally spread over several paths by weight; connections are kept alive, opened
//! anew for every request, or pipelined ([`Mode`]). A run ends after a duration or a number of
//! requests ([`Stop`]) and yields a [`Report`]: completed requests and their rate, a latency
//! histogram, errors by kind, and how the responses spread over the server's workers (read
//! from a response header, `X-Herd-Worker` by default).
//!
//! ```no_run
//! use std::time::Duration;
//! use herd_load::{Config, Mode, Stop, WeightedPath};
//!
//! # fn main() -> std::io::Result<()> {
//! let mut config = Config::from_url("http://127.0.0.1:8000/")?;
//! config.connections = 64;
//! config.threads = 2;
//! config.mode = Mode::Pipeline { depth: 16 };
//! config.stop = Stop::Duration(Duration::from_secs(5));
//! config.paths = vec![WeightedPath::new("/", 95), WeightedPath::new("/spin?us=20000", 5)];
//! let report = herd_load::run(&config)?;
//! println!("{report}");
//! println!("{}", report.to_json());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod config;
mod conn;
mod generator;
mod report;
mod request;
mod response;
mod run;
mod sys;
mod workers;

pub use config::{Config, Mode, Stop, WeightedPath};
pub use report::{Errors, Latency, Report};
pub use run::run;
pub use workers::WorkerDistribution;
