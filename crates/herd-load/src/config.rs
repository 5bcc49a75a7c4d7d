//! What to load, how hard, and for how long.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// How requests travel over connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A fixed set of keep-alive connections, one request in flight on each.
    KeepAlive,
    /// A new connection per request: connect, send the request with `Connection: close`, read
    /// the whole response, close, connect again.
    Close,
    /// Keep-alive connections with up to `depth` requests in flight on each (HTTP pipelining).
    /// A depth of 0 is treated as 1.
    Pipeline {
        /// Requests in flight per connection.
        depth: usize,
    },
}

impl Mode {
    /// Requests in flight per connection in this mode.
    pub fn depth(self) -> usize {
        match self {
            Mode::KeepAlive | Mode::Close => 1,
            Mode::Pipeline { depth } => depth.max(1),
        }
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Send requests for this long. Requests still in flight at the end are abandoned: they are
    /// counted in [`Report::abandoned`](crate::Report::abandoned), not in `sent`.
    Duration(Duration),
    /// Send exactly this many requests in total, and wait until each one has completed or
    /// failed.
    Requests(u64),
}

/// A request path with its relative weight in the mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedPath {
    /// The request target, e.g. `/` or `/spin?us=20000`.
    pub path: String,
    /// The relative weight: with weights 95 and 5, 95% of the requests go to the first path.
    /// A path with weight 0 is never requested.
    pub weight: u32,
}

impl WeightedPath {
    /// A path with weight `weight`.
    pub fn new(path: impl Into<String>, weight: u32) -> WeightedPath {
        WeightedPath {
            path: path.into(),
            weight,
        }
    }
}

/// The whole description of a run. Start from [`Config::new`] or [`Config::from_url`] and set
/// fields; each field documents its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The server to connect to.
    pub addr: SocketAddr,
    /// The value of the `Host` header. Default: `addr` as text, or the URL's authority.
    pub host: String,
    /// The request paths with their weights. Default: `/` alone (or the URL's path).
    pub paths: Vec<WeightedPath>,
    /// Extra request headers, sent with every request. Default: none.
    pub headers: Vec<(String, String)>,
    /// Concurrent connections, split across the threads. Default: 64.
    pub connections: usize,
    /// Generator threads, each with its own poll loop; never more than `connections`.
    /// Default: 2.
    pub threads: usize,
    /// How requests use connections. Default: [`Mode::KeepAlive`].
    pub mode: Mode,
    /// When the run ends. Default: 5 seconds.
    pub stop: Stop,
    /// How long a request may wait for its complete response (and a connect for its
    /// completion) before it counts as an error of kind `timeout` (`connect`). Default: 5 s.
    pub timeout: Duration,
    /// The response header whose values tell which server worker answered. Default:
    /// `X-Herd-Worker`.
    pub worker_header: String,
    /// Local addresses to bind before connecting: connection `i` binds to
    /// `source_addrs[i % len]` (port chosen by the kernel at connect). Default: none, the
    /// kernel picks the source address.
    pub source_addrs: Vec<IpAddr>,
    /// CPUs to pin generator threads to: thread `i` runs on CPU `cpus[i % len]`. Default:
    /// none, threads are not pinned.
    pub cpus: Vec<usize>,
}

impl Config {
    /// A configuration with every default, aimed at `addr`.
    pub fn new(addr: SocketAddr) -> Config {
        Config {
            addr,
            host: addr.to_string(),
            paths: vec![WeightedPath::new("/", 1)],
            headers: Vec::new(),
            connections: 64,
            threads: 2,
            mode: Mode::KeepAlive,
            stop: Stop::Duration(Duration::from_secs(5)),
            timeout: Duration::from_secs(5),
            worker_header: "X-Herd-Worker".to_string(),
            source_addrs: Vec::new(),
            cpus: Vec::new(),
        }
    }

    /// A configuration with every default, aimed at an `http://host[:port][/path]` URL. The host
    /// is resolved now; the first address wins.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the URL is not `http://...`, has no host or a bad port; the resolver's
    /// error when the host does not resolve.
    pub fn from_url(url: &str) -> io::Result<Config> {
        let invalid =
            |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{why}: {url}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(invalid("URL has no host"));
        }
        let with_port = if has_port(authority) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidInput {
                    invalid("bad host or port in URL")
                } else {
                    e
                }
            })?
            .next()
            .ok_or_else(|| invalid("host did not resolve"))?;
        let mut config = Config::new(addr);
        config.host = authority.to_string();
        config.paths = vec![WeightedPath::new(path, 1)];
        Ok(config)
    }

    /// Checks the parts that would make a run meaningless.
    pub(crate) fn validate(&self) -> io::Result<()> {
        let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_string()));
        if self.connections == 0 {
            return invalid("connections must be at least 1");
        }
        if self.threads == 0 {
            return invalid("threads must be at least 1");
        }
        if self.paths.iter().all(|p| p.weight == 0) {
            return invalid("at least one path needs a weight above 0");
        }
        if let Some(p) = self.paths.iter().find(|p| !is_token_free(&p.path)) {
            return invalid(&format!(
                "path contains a space or control character: {:?}",
                p.path
            ));
        }
        if !is_token_free(&self.host) || !is_token_free(&self.worker_header) {
            return invalid("host and header names must not contain spaces or control characters");
        }
        if self.timeout.is_zero() {
            return invalid("timeout must be above 0");
        }
        Ok(())
    }
}

/// Whether an authority (`host`, `host:port`, `[v6]`, `[v6]:port`) names a port.
fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(i) => authority[i..].contains(':'),
        None => authority.contains(':'),
    }
}

/// No whitespace or control characters: safe to put in a request line or header name.
fn is_token_free(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| b <= b' ' || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let c = Config::from_url("http://127.0.0.1:8000/a?b=1").unwrap();
        assert_eq!(c.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(c.host, "127.0.0.1:8000");
        assert_eq!(c.paths, vec![WeightedPath::new("/a?b=1", 1)]);
        let c = Config::from_url("http://127.0.0.1").unwrap();
        assert_eq!(c.addr.port(), 80);
        assert_eq!(c.paths[0].path, "/");
        let c = Config::from_url("http://[::1]:81/").unwrap();
        assert_eq!(c.addr, "[::1]:81".parse().unwrap());
        for bad in [
            "https://x/",
            "127.0.0.1:80",
            "http:///x",
            "http://127.0.0.1:x/",
        ] {
            assert!(Config::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn depth() {
        assert_eq!(Mode::KeepAlive.depth(), 1);
        assert_eq!(Mode::Close.depth(), 1);
        assert_eq!(Mode::Pipeline { depth: 0 }.depth(), 1);
        assert_eq!(Mode::Pipeline { depth: 16 }.depth(), 16);
    }
}
