//! The reference servers' files: Node's cluster example and an nginx configuration, written
//! by the harness next to its results.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Node's cluster example (the `cluster.isPrimary` fork-per-CPU http server of the Node docs),
/// with the worker count and port from the environment, an `X-Herd-Worker` header, and a
/// `listening` line per worker from the primary.
const NODE_CLUSTER_JS: &str = r#"// Written by herd's benches/policies.rs: Node's cluster example from the Node docs.
// Run: PORT=8000 WORKERS=2 NODE_CLUSTER_SCHED_POLICY=rr node node-cluster.js
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const { availableParallelism } = require('node:os');
const process = require('node:process');

const numWorkers = Number(process.env.WORKERS) || availableParallelism();
const port = Number(process.env.PORT) || 8000;

if (cluster.isPrimary) {
  for (let i = 0; i < numWorkers; i++) {
    cluster.fork();
  }
  cluster.on('listening', (worker, address) => {
    console.log(`listening id=${worker.id} pid=${worker.process.pid} addr=${address.address}:${address.port}`);
  });
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} died`);
  });
} else {
  const id = String(cluster.worker.id);
  http.createServer((req, res) => {
    res.writeHead(200, { 'X-Herd-Worker': id, 'Content-Type': 'text/plain' });
    res.end('hello\n');
  }).listen(port, '127.0.0.1');
}
"#;

/// Writes node-cluster.js into `dir`; returns its path.
pub fn node_script(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join("node-cluster.js");
    std::fs::write(&path, NODE_CLUSTER_JS)?;
    Ok(path)
}

/// The nginx command for `workers` workers on 127.0.0.1:`port` (reuseport, no access log,
/// `return 200 "hello"`), with a prefix of its own under `dir`.
pub fn nginx_command(nginx: &Path, dir: &Path, workers: usize, port: u16) -> io::Result<Command> {
    let prefix = dir.join(format!("nginx-{port}"));
    std::fs::create_dir_all(prefix.join("logs"))?;
    let p = prefix.display();
    let conf = format!(
        "worker_processes {workers};
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            add_header X-Herd-Worker $pid;
            return 200 \"hello\\n\";
        }}
    }}
}}
"
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p").arg(&prefix).arg("-c").arg(&conf_path).args([
        "-e",
        "stderr",
        "-g",
        "daemon off;",
    ]);
    Ok(cmd)
}
