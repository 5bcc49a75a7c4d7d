//! The loop's tunables.

use std::time::Duration;

/// How a worker's event loop behaves. Every field is public; start from [`Config::default`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The most connections one loop keeps open; at the cap it stops accepting (the kernel's
    /// accept queue holds the rest) and resumes when one closes. Default: 10,000.
    pub max_connections: usize,
    /// After [`Inbound::Disconnect`](super::Inbound::Disconnect), the longest the loop waits for
    /// in-flight requests before it returns and drops what is left. Default: 30 s.
    pub drain_timeout: Duration,
    /// The size of the one read buffer the loop shares between its connections (only bytes the
    /// protocol leaves unconsumed are copied per connection). Default: 64 KiB.
    pub read_buffer: usize,
    /// How long the loop stops accepting after `accept` fails for lack of file descriptors or
    /// memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), instead of spinning. Default: 100 ms.
    pub accept_backoff: Duration,
    /// Timers are checked by a sweep over all connections, at the earliest deadline but never
    /// more often than this; a timeout fires up to this late. Default: 50 ms.
    pub timer_granularity: Duration,
    /// A connection whose pending output makes no progress for this long (the peer stopped
    /// reading) is closed. Default: 30 s.
    pub write_timeout: Duration,
    /// Pending output per connection above which the loop stops reading from it until the peer
    /// has taken the output (backpressure against pipelining floods). Default: 1 MiB.
    pub max_pending_output: usize,
    /// How many readiness events one `epoll_wait` returns at most. Default: 1024.
    pub events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            read_buffer: 64 * 1024,
            accept_backoff: Duration::from_millis(100),
            timer_granularity: Duration::from_millis(50),
            write_timeout: Duration::from_secs(30),
            max_pending_output: 1024 * 1024,
            events: 1024,
        }
    }
}
