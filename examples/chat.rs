// cargo run --release --example chat        (then open http://127.0.0.1:8000/ in a few tabs)
//! The Node cluster classic: a chat whose browsers are connected to different workers, each
//! message broadcast to all of them through the primary.
//!
//! A worker serves a page at `/` and a WebSocket at `/ws`. Every text message a client sends
//! goes to the primary over IPC ([`herd::WorkerSender`]); the primary broadcasts it to every
//! worker ([`herd::PrimaryHandle::broadcast`]), and each worker sends it to all its clients.
//! So every client gets every message exactly once, its own included (the echo comes back
//! through the primary, after the messages sent before it). On open, a client is greeted with
//! `hello from worker <id> (pid <pid>)`, and the `101` names the worker in `X-Herd-Worker`.
//!
//! Environment: `PORT` (default 8000), `WORKERS` (default: the CPUs available), `POLICY` (as
//! the hello example: `reuseport` by default; herd-rr's `rr-sticky` sends a client IP always to
//! the same worker, the "sticky sessions" Node's docs ask WebSocket users for). A reload
//! (SIGHUP) closes the old workers' WebSockets with `1001` (going away): the page reconnects,
//! to a new worker. Limits: text messages of at most 64 KiB; binary messages are ignored;
//! nothing is kept (a client sees only what is sent while it is connected).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use herd::ws::{self, Message, Ws, WsHandler, WsSender};
use herd::{Cluster, Event, Request, Response, WorkerSender};

#[path = "support/env.rs"]
mod env;
#[path = "support/logging.rs"]
mod logging;
#[path = "support/policy.rs"]
mod policy;

/// The largest chat message (well under the IPC limit).
const MAX_MESSAGE: usize = 64 * 1024;

fn main() -> ExitCode {
    logging::main("chat", "info", run)
}

fn run() -> Result<(), String> {
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    let policy_name = std::env::var("POLICY").unwrap_or_else(|_| "reuseport".into());
    let cluster = Cluster::new().workers(workers).on_event(|event, primary| {
        // The primary's whole job in this chat: what one worker heard, all workers say.
        if let Event::Message(_, text) = event {
            if let Err(e) = primary.broadcast(text.clone()) {
                tracing::warn!("broadcasting a chat message: {e}");
            }
        }
    });
    let cluster = policy::apply(cluster, &policy_name)?;
    cluster
        .run(move |mut worker| {
            let id = worker.id();
            let room = Room::default();
            let to_primary = worker.sender();
            {
                let room = room.clone();
                worker.on_message(move |message| match std::str::from_utf8(message) {
                    Ok(text) => room.say(text),
                    Err(_) => tracing::warn!("a chat message that is not UTF-8: dropped"),
                });
            }
            let greeting = format!("hello from worker {id} (pid {})", std::process::id());
            let config = ws::Config::new().max_message_bytes(MAX_MESSAGE);
            worker.serve_http(
                ("0.0.0.0", port),
                move |req: &Request<'_>, res: &mut Response| match req.path() {
                    "/" => {
                        res.header("Content-Type", "text/html; charset=utf-8")
                            .body(PAGE);
                    }
                    "/ws" => {
                        res.header("X-Herd-Worker", id.to_string());
                        let client = Client {
                            room: room.clone(),
                            to_primary: to_primary.clone(),
                            greeting: greeting.clone(),
                            seat: None,
                        };
                        // A bad handshake was answered (400 or 426).
                        let _ = config.accept(req, res, client);
                    }
                    _ => {
                        res.status(404).body("not found\n");
                    }
                },
            )
        })
        .map_err(|e| e.to_string())
}

/// This worker's connected clients.
#[derive(Clone, Default)]
struct Room(Arc<Mutex<Seats>>);

#[derive(Default)]
struct Seats {
    next: u64,
    clients: HashMap<u64, WsSender>,
}

impl Room {
    fn seats(&self) -> std::sync::MutexGuard<'_, Seats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(&self, sender: WsSender) -> u64 {
        let mut seats = self.seats();
        seats.next += 1;
        let seat = seats.next;
        seats.clients.insert(seat, sender);
        seat
    }

    fn leave(&self, seat: u64) {
        self.seats().clients.remove(&seat);
    }

    /// Send `text` to every client of this worker.
    fn say(&self, text: &str) {
        for sender in self.seats().clients.values() {
            sender.send_text(text);
        }
    }
}

/// One browser's connection.
struct Client {
    room: Room,
    to_primary: WorkerSender,
    greeting: String,
    seat: Option<u64>,
}

impl WsHandler for Client {
    fn on_open(&mut self, ws: &mut Ws<'_>) {
        ws.send_text(&self.greeting);
        self.seat = Some(self.room.join(ws.sender()));
    }

    fn on_message(&mut self, _ws: &mut Ws<'_>, msg: Message<'_>) {
        if let Message::Text(text) = msg {
            if let Err(e) = self.to_primary.send(text.as_bytes()) {
                tracing::warn!("sending a chat message to the primary: {e}");
            }
        }
    }

    fn on_close(&mut self, _code: u16, _reason: &str) {
        if let Some(seat) = self.seat.take() {
            self.room.leave(seat);
        }
    }
}

/// The page at `/`: connects to `/ws`, shows what arrives, sends what is typed, and
/// reconnects when the connection closes (a reload moves it to a new worker).
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>herd chat</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { border: 1px solid #ccc; height: 24em; overflow-y: auto; padding: .5em; }
  #log .sys { color: #888; }
  form { display: flex; gap: .5em; margin-top: .5em; }
  input { flex: 1; }
</style>
<h1>herd chat</h1>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" autofocus><button>Send</button></form>
<script>
  const log = document.getElementById("log");
  const text = document.getElementById("text");
  let socket;
  function show(line, cls) {
    const p = document.createElement("div");
    p.textContent = line;
    if (cls) p.className = cls;
    log.appendChild(p);
    log.scrollTop = log.scrollHeight;
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws");
    let first = true;
    socket.onmessage = (event) => {
      show(event.data, first ? "sys" : "");
      first = false;
    };
    socket.onclose = (event) => {
      show("disconnected (" + event.code + "), reconnecting...", "sys");
      setTimeout(connect, 500);
    };
  }
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    if (text.value && socket.readyState === WebSocket.OPEN) socket.send(text.value);
    text.value = "";
  };
  connect();
</script>
</html>
"#;
