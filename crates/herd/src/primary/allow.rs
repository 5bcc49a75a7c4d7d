//! Which listeners a worker may obtain from the primary. The rule, in one place:
//!
//! - With [`Cluster::listen_on`](crate::Cluster::listen_on), exactly those addresses.
//! - Otherwise the addresses the cluster's first workers ask for, until the first worker
//!   reports it is listening ([`Worker::serve`](crate::Worker::serve) reports every address it
//!   serves at once); from then on the set is fixed, for the life of the primary.
//! - Either way a worker makes at most [`MAX_LISTEN_REQUESTS`] listen requests, and the
//!   learned set holds at most [`MAX_LEARNED`] addresses.
//!
//! A compromised worker (say one running as nobody under a root primary) therefore cannot
//! make the primary bind a privileged port or pile up listening sockets until it runs out of
//! descriptors.

use std::collections::HashSet;
use std::net::SocketAddr;

/// Listen requests one worker may make over its life.
pub(crate) const MAX_LISTEN_REQUESTS: u32 = 64;

/// Distinct addresses the first workers may ask for without [`Cluster::listen_on`](crate::Cluster::listen_on).
pub(crate) const MAX_LEARNED: usize = 16;

/// The addresses workers may listen on.
#[derive(Debug)]
pub(crate) struct Allowed {
    addrs: HashSet<SocketAddr>,
    /// Configured by the application (never learned).
    configured: bool,
    /// Still learning from the first workers.
    learning: bool,
}

impl Allowed {
    /// `configured`: the application's list ([`Cluster::listen_on`](crate::Cluster::listen_on)),
    /// or `None` to learn from the first workers.
    pub(crate) fn new(configured: Option<Vec<SocketAddr>>) -> Allowed {
        Allowed {
            learning: configured.is_none(),
            configured: configured.is_some(),
            addrs: configured.into_iter().flatten().collect(),
        }
    }

    /// A worker announced it is listening: the first ones have asked for what they serve.
    pub(crate) fn stop_learning(&mut self) {
        self.learning = false;
    }

    /// Whether the worker that made `requests` listen requests so far (this one included)
    /// may listen on `addr`; `Err` says why not and what to change.
    pub(crate) fn check(&mut self, addr: SocketAddr, requests: u32) -> Result<(), String> {
        if requests > MAX_LISTEN_REQUESTS {
            return Err(format!(
                "refused to listen on {addr}: this worker made more than {MAX_LISTEN_REQUESTS} listen requests"
            ));
        }
        if self.addrs.contains(&addr) {
            return Ok(());
        }
        if self.learning && self.addrs.len() < MAX_LEARNED {
            self.addrs.insert(addr);
            return Ok(());
        }
        let mut known: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        known.sort();
        let how = if self.configured {
            "add it to Cluster::listen_on"
        } else {
            "list every address in Cluster::listen_on, or listen on all of them before the first worker reports listening"
        };
        Err(format!(
            "refused to listen on {addr}: not an address this cluster serves ({}); {how}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// (configured, stop learning before, address, requests so far, allowed)
    type Case = (
        Option<&'static [&'static str]>,
        bool,
        &'static str,
        u32,
        bool,
    );

    #[test]
    fn the_rule_in_a_table() {
        let cases: &[Case] = &[
            (Some(&["127.0.0.1:80"]), false, "127.0.0.1:80", 1, true),
            (Some(&["127.0.0.1:80"]), false, "127.0.0.1:81", 1, false),
            (Some(&["127.0.0.1:80"]), false, "127.0.0.1:80", 65, false),
            (None, false, "127.0.0.1:81", 1, true),
            (None, true, "127.0.0.1:81", 1, false),
            (Some(&[]), false, "127.0.0.1:0", 1, false),
        ];
        for (i, (configured, stopped, addr, n, ok)) in cases.iter().enumerate() {
            let mut allowed = Allowed::new(configured.map(|c| c.iter().map(|s| a(s)).collect()));
            if *stopped {
                allowed.stop_learning();
            }
            assert_eq!(allowed.check(a(addr), *n).is_ok(), *ok, "case {i}");
        }
    }

    #[test]
    fn learned_addresses_stay_allowed_and_are_bounded() {
        let mut allowed = Allowed::new(None);
        allowed.check(a("127.0.0.1:8000"), 1).unwrap();
        allowed.stop_learning();
        allowed.check(a("127.0.0.1:8000"), 2).unwrap();
        let e = allowed.check(a("127.0.0.1:8001"), 3).unwrap_err();
        assert!(
            e.contains("(127.0.0.1:8000)") && e.contains("listen_on"),
            "{e}"
        );
        let mut allowed = Allowed::new(None);
        for port in 0..MAX_LEARNED as u16 {
            allowed
                .check(a(&format!("127.0.0.1:{}", 9000 + port)), 1)
                .unwrap();
        }
        assert!(allowed.check(a("127.0.0.1:1"), 1).is_err());
    }
}
