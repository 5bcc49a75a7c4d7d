//! Typed IPC messages (feature `serde`): any `Serialize` value travels as JSON and comes
//! back out with [`from_json`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::{PrimaryHandle, Worker, WorkerHandle, WorkerSender};

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot encode the message as JSON: {e}"),
        )
    })
}

/// Decodes a message sent with one of the `send_json` methods.
///
/// # Errors
/// [`ErrorKind::Config`] when the bytes are not JSON of type `T`.
pub fn from_json<T: DeserializeOwned>(message: &[u8]) -> Result<T> {
    serde_json::from_slice(message).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("the message is not the expected JSON: {e}"),
        )
    })
}

impl WorkerHandle {
    /// Sends `value` as a JSON message to the worker.
    ///
    /// # Errors
    /// As [`WorkerHandle::send`], or when `value` cannot be encoded.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send(encode(value)?)
    }
}

impl PrimaryHandle {
    /// Sends `value` as a JSON message to every connected worker.
    ///
    /// # Errors
    /// As [`PrimaryHandle::broadcast`], or when `value` cannot be encoded.
    pub fn broadcast_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.broadcast(encode(value)?)
    }
}

impl WorkerSender {
    /// Sends `value` as a JSON message to the primary.
    ///
    /// # Errors
    /// As [`WorkerSender::send`], or when `value` cannot be encoded.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send(&encode(value)?)
    }
}

impl Worker {
    /// Sends `value` as a JSON message to the primary.
    ///
    /// # Errors
    /// As [`Worker::send`], or when `value` cannot be encoded.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send(&encode(value)?)
    }
}
