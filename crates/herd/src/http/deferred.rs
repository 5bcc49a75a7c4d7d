//! Deferred responses: a handler takes its [`Responder`] away from the loop and answers later,
//! from any thread. The connection reads nothing meanwhile (requests pipelined behind wait, so
//! answers stay in order) and every other connection of the loop is served as usual.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use super::pool::Pool;
use super::Response;
use crate::event_loop::Wake;

/// What a connection needs to let its handler defer: its wake-up handle and the worker's
/// blocking pool.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) wake: Wake,
    pub(crate) pool: Arc<Pool>,
}

/// How a deferred response ended.
pub(crate) enum Done {
    Answer(Response),
    /// The [`Responder`] was dropped without [`Responder::send`] (or its handler panicked).
    Dropped,
}

/// Where a [`Responder`] leaves its answer for the connection.
#[derive(Default)]
pub(crate) struct Slot(Mutex<Option<Done>>);

impl Slot {
    pub(crate) fn take(&self) -> Option<Done> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether the answer came with a streamed body (and no protocol switch): it may start
    /// before the request's streamed body is read.
    pub(crate) fn streams(&self) -> bool {
        matches!(
            &*self.0.lock().unwrap_or_else(|e| e.into_inner()),
            Some(Done::Answer(res)) if res.stream.is_some() && res.upgrade.is_none()
        )
    }
}

/// The answer to one request, completed later, from any thread: fill it in as a [`Response`]
/// (it derefs to one), then [`send`](Self::send) it. Obtained from [`Response::defer`].
///
/// Dropping it unsent answers `500` (and closes the connection), so a lost responder never
/// leaves a client hanging. If the client went away meanwhile, the answer is discarded.
///
/// ```no_run
/// use herd::{Http, Request, Response};
///
/// let http = Http::new(|_req: &Request<'_>, res: &mut Response| {
///     let mut responder = res.defer();
///     std::thread::spawn(move || {
///         // ... wait for a database, a remote API, a callback ...
///         responder.header("Content-Type", "text/plain").body("done\n");
///         responder.send();
///     });
/// });
/// # let _ = http;
/// ```
pub struct Responder {
    res: Response,
    slot: Arc<Slot>,
    wake: Wake,
    sent: bool,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("res", &self.res).finish()
    }
}

impl Responder {
    pub(crate) fn new(slot: Arc<Slot>, wake: Wake) -> Self {
        wake.begin_work();
        Responder {
            res: Response::new(),
            slot,
            wake,
            sent: false,
        }
    }

    /// Send the answer: the connection's loop writes it (after the answers to earlier
    /// requests) and goes on reading that connection.
    pub fn send(mut self) {
        let res = std::mem::replace(&mut self.res, Response::new());
        self.complete(Done::Answer(res));
    }

    fn complete(&mut self, done: Done) {
        if self.sent {
            return;
        }
        self.sent = true;
        *self.slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
        // The work ends before the wake-up: a draining loop that takes the answer (or sees
        // its connection gone) on that wake-up must not find the work still counted, or it
        // would sleep until its drain timeout with nothing left to do.
        self.wake.end_work();
        self.wake.wake();
    }
}

impl Deref for Responder {
    type Target = Response;
    fn deref(&self) -> &Response {
        &self.res
    }
}

impl DerefMut for Responder {
    fn deref_mut(&mut self) -> &mut Response {
        &mut self.res
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.sent {
            self.complete(Done::Dropped);
        }
    }
}
