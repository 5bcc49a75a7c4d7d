//! What is measured: the workload server under each herd policy, and the reference servers
//! (Node's cluster under both of its scheduling policies, nginx) when they are installed.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::Server;
use super::reference;
use super::workload::{Load, Workload};

/// A server to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// examples/workload.rs with `POLICY=<name>`.
    Herd(String),
    /// The same, under the plain loopback load ([`Load::Plain`]), keep-alive only: what a
    /// bench on loopback shows for a policy that steers by CPU or client address.
    Plain(String),
    /// Node's cluster example with `NODE_CLUSTER_SCHED_POLICY=<sched>` (`rr` or `none`).
    Node {
        /// The node executable.
        node: PathBuf,
        /// `rr` or `none`.
        sched: &'static str,
    },
    /// nginx with `worker_processes` workers and a reuseport listener.
    Nginx(PathBuf),
}

impl Target {
    /// The name in the table: the policy name, `node-rr`, `node-none` or `nginx`.
    pub fn name(&self) -> String {
        match self {
            Target::Herd(policy) => policy.clone(),
            Target::Plain(policy) => format!("{policy} (plain loopback)"),
            Target::Node { sched, .. } => format!("node-{sched}"),
            Target::Nginx(_) => "nginx".to_string(),
        }
    }

    /// `herd` or `reference`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Herd(_) | Target::Plain(_) => "herd",
            _ => "reference",
        }
    }

    /// Whether `workload` means something for this server (the references have no `/spin`;
    /// the plain-loopback rows show their lesson with keep-alive alone).
    pub fn runs(&self, workload: Workload) -> bool {
        match self {
            Target::Herd(_) => true,
            Target::Plain(_) => workload == Workload::KeepAlive,
            _ => !workload.needs_spin(),
        }
    }

    /// The load it gets: [`Load::Plain`] for the plain-loopback rows, `spread` otherwise.
    pub fn load(&self, spread: &Load) -> Load {
        match self {
            Target::Plain(_) => Load::Plain,
            _ => spread.clone(),
        }
    }

    /// How many `listening` lines it prints once serving (0: it prints none).
    fn listening_lines(&self, workers: usize) -> usize {
        match self {
            Target::Herd(_) | Target::Plain(_) | Target::Node { .. } => workers,
            Target::Nginx(_) => 0,
        }
    }

    /// Starts it with `workers` workers on 127.0.0.1:`port`; `bin` is the workload server,
    /// `dir` a directory for the references' files. Returns the server and how many
    /// `listening` lines to wait for.
    pub fn start(
        &self,
        bin: &Path,
        dir: &Path,
        workers: usize,
        port: u16,
    ) -> io::Result<(Server, usize)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = match self {
            Target::Herd(policy) | Target::Plain(policy) => {
                let mut c = Command::new(bin);
                c.env("HOST", "127.0.0.1")
                    .env("PORT", port.to_string())
                    .env("WORKERS", workers.to_string())
                    .env("POLICY", policy)
                    .env("RUST_LOG", "warn");
                c
            }
            Target::Node { node, sched } => {
                let script = reference::node_script(dir)?;
                let mut c = Command::new(node);
                c.arg(script)
                    .env("PORT", port.to_string())
                    .env("WORKERS", workers.to_string())
                    .env("NODE_CLUSTER_SCHED_POLICY", sched);
                c
            }
            Target::Nginx(nginx) => reference::nginx_command(nginx, dir, workers, port)?,
        };
        let server = Server::spawn(&mut cmd, addr)?;
        Ok((server, self.listening_lines(workers)))
    }
}

/// The herd policies compared by default (a name the workload server does not know shows as
/// n/a, so a build without one of them still runs).
pub const POLICIES: [&str; 6] = [
    "reuseport",
    "shared",
    "pinned",
    "rr",
    "rr-least",
    "rr-sticky",
];

/// The policies whose plain-loopback row teaches something: they steer by the CPU that took
/// the SYN or by the client's address, which loopback with one client IP makes one value.
pub const PLAIN_LESSONS: [&str; 2] = ["pinned", "rr-sticky"];

/// The reference servers installed on this machine (node, nginx), found on PATH.
pub fn references() -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(node) = find_program("node") {
        for sched in ["rr", "none"] {
            out.push(Target::Node {
                node: node.clone(),
                sched,
            });
        }
    }
    if let Some(nginx) = find_program("nginx") {
        out.push(Target::Nginx(nginx));
    }
    out
}

/// `name` on PATH (plus /usr/sbin, where nginx usually lives), if it is there.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
