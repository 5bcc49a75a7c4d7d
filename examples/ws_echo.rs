// cargo run --release --example ws_echo
//! A WebSocket echo service on a herd cluster: every text or binary message sent to `/ws` comes
//! back as it was. It is the herd side of `make measure-ws` (benches/ws.rs), which races it
//! against a tokio-tungstenite echo server.
//!
//! Environment: `PORT` (default 8000), `WORKERS` (default: the CPUs available).

use std::process::ExitCode;

use herd::ws::{self, Message, Ws, WsHandler};
use herd::{Cluster, Request, Response};

#[path = "support/env.rs"]
mod env;
#[path = "support/logging.rs"]
mod logging;

fn main() -> ExitCode {
    logging::main("ws_echo", "warn", run)
}

fn run() -> Result<(), String> {
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    Cluster::new()
        .workers(workers)
        .run(move |worker| {
            worker.serve_http(
                ("0.0.0.0", port),
                |req: &Request<'_>, res: &mut Response| {
                    if req.path() == "/ws" {
                        let _ = ws::accept(req, res, Echo);
                    } else {
                        res.status(404).body("not found\n");
                    }
                },
            )
        })
        .map_err(|e| e.to_string())
}

/// Sends every message back.
struct Echo;

impl WsHandler for Echo {
    fn on_message(&mut self, ws: &mut Ws<'_>, msg: Message<'_>) {
        match msg {
            Message::Text(text) => ws.send_text(text),
            Message::Binary(data) => ws.send_binary(data),
        };
    }
}
