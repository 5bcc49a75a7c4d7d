//! Pushing messages to a WebSocket from any thread: a queue per connection, drained by the
//! loop when the connection's [`Wake`] fires.

use std::sync::{Arc, Mutex};

use crate::protocol::Wake;

/// What another thread asked a connection to send.
pub(super) enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, String),
}

#[derive(Default)]
struct Queue {
    messages: Vec<Outgoing>,
    closed: bool,
}

/// What a connection and its [`WsSender`]s share.
pub(super) struct Shared {
    queue: Mutex<Queue>,
    wake: Option<Wake>,
}

impl Shared {
    pub(super) fn new(wake: Option<Wake>) -> Arc<Shared> {
        Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake,
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was pushed since the last call.
    pub(super) fn take(&self) -> Vec<Outgoing> {
        std::mem::take(&mut self.queue().messages)
    }

    /// The connection is over: later pushes are refused.
    pub(super) fn close(&self) {
        let mut queue = self.queue();
        queue.closed = true;
        queue.messages = Vec::new();
    }
}

/// Sends messages to one WebSocket connection from any thread (obtained from
/// [`Ws::sender`](super::Ws::sender)); cheap to clone. A message is queued, and the
/// connection's loop writes it on its next turn (one wake-up for a burst). Messages of one
/// sender go out in order; relative to what the handler sends with [`Ws`](super::Ws) from its
/// callbacks, they go out as the loop gets to them.
#[derive(Clone)]
pub struct WsSender {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSender")
            .field("open", &self.is_open())
            .finish()
    }
}

impl WsSender {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        WsSender { shared }
    }

    fn push(&self, message: Outgoing) -> bool {
        let first = {
            let mut queue = self.shared.queue();
            if queue.closed {
                return false;
            }
            queue.messages.push(message);
            queue.messages.len() == 1
        };
        if first {
            if let Some(wake) = &self.shared.wake {
                wake.wake();
            }
        }
        true
    }

    /// Send a text message. `false` (and the message is dropped) once the connection is over.
    pub fn send_text(&self, text: impl Into<String>) -> bool {
        self.push(Outgoing::Text(text.into()))
    }

    /// Send a binary message. `false` (and the message is dropped) once the connection is
    /// over.
    pub fn send_binary(&self, data: impl Into<Vec<u8>>) -> bool {
        self.push(Outgoing::Binary(data.into()))
    }

    /// Start the close handshake with `code` (e.g. `1000`, normal closure) and `reason` (at
    /// most 123 bytes, cut at a character boundary); see [`Ws::close`](super::Ws::close).
    /// `false` once the connection is over.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        self.push(Outgoing::Close(code, reason.to_string()))
    }

    /// Whether the connection is still open (a `true` may be stale by the time it is read).
    pub fn is_open(&self) -> bool {
        !self.shared.queue().closed
    }
}
