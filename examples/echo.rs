// cargo run --example echo        (then: nc 127.0.0.1 7000)
//! A TCP echo server over the cluster: each worker serves its connections with the event
//! loop and a raw connection-level [`Protocol`] (bytes in, bytes out) instead of HTTP.
//!
//! Environment: `PORT` (default 7000), `WORKERS` (default 2). Idle connections are not timed
//! out; a drain (SIGTERM, reload) closes them.

use std::net::SocketAddr;
use std::time::Instant;

#[path = "support/logging.rs"]
mod logging;

use herd::protocol::{Connection, Flow, Protocol, Step};
use herd::Cluster;

/// The echo protocol: every byte read is written back.
struct Echo;

/// One echo connection: no state at all.
struct EchoConn;

impl Protocol for Echo {
    type Conn = EchoConn;
    fn connect(&self, _peer: Option<SocketAddr>, _now: Instant) -> EchoConn {
        EchoConn
    }
}

impl Connection for EchoConn {
    fn on_read(&mut self, input: &[u8], out: &mut Vec<u8>, _now: Instant) -> Step {
        out.extend_from_slice(input);
        Step {
            consumed: input.len(),
            flow: Flow::Continue,
        }
    }
    fn deadline(&self) -> Option<Instant> {
        None
    }
    fn on_timeout(&mut self, _out: &mut Vec<u8>, _now: Instant) -> Flow {
        Flow::Continue
    }
    fn on_drain(&mut self, _out: &mut Vec<u8>) -> Flow {
        Flow::Close
    }
}

fn main() -> Result<(), herd::Error> {
    logging::init("info");
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(7000);
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2);
    Cluster::new().workers(workers).run(move |mut worker| {
        let listener = worker.listen(("0.0.0.0", port))?;
        worker.serve(vec![listener], Echo)
    })
}
