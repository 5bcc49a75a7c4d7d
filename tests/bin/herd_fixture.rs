//! A configurable cluster for the end-to-end tests in tests/: the primary prints every
//! lifecycle event as one line on stdout (`EV <kind> id=.. ...`); workers behave as the
//! `FIX_*` environment variables say. Not an example: see examples/ for those.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use herd::{Cluster, Event, Exit, WorkerEvent};

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn ms(k: &str) -> Option<Duration> {
    var(k)
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    // Read before herd consumes it: the garbage mode writes raw bytes on the IPC socket.
    let raw_ipc_fd: Option<i32> = var("HERD_IPC_FD").and_then(|v| v.parse().ok());
    // FIX_NO_LOG: no tracing subscriber at all, as in the README's snippet.
    if var("FIX_NO_LOG").is_none() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let mut cluster = Cluster::new().workers(var("FIX_WORKERS").map_or(2, |v| v.parse().unwrap()));
    if let Some(t) = ms("FIX_SHUTDOWN_MS") {
        cluster = cluster.shutdown_timeout(t);
    }
    if let Some(d) = ms("FIX_SHUTDOWN_DELAY_MS") {
        cluster = cluster.shutdown_delay(d);
    }
    if let Some(first) = ms("FIX_BACKOFF_MS") {
        cluster = cluster.restart_backoff(first, first * 64, Duration::from_secs(60));
    }
    if let Some(n) = var("FIX_MAX_MESSAGE") {
        cluster = cluster.max_message_bytes(n.parse().unwrap());
    }
    if let Some(exec) = var("FIX_EXEC") {
        cluster = cluster.exec(exec);
    }
    if let Some(dir) = var("FIX_CWD") {
        cluster = cluster.cwd(dir);
    }
    if let Some(id) = var("FIX_UID") {
        let id: u32 = id.parse().unwrap();
        cluster = cluster.uid(id).gid(id);
    }
    if var("FIX_SILENT").is_some() {
        cluster = cluster.silent(true);
    }
    if let Some(kv) = var("FIX_ENV") {
        let (k, v) = kv.split_once('=').unwrap();
        cluster = cluster.env(k, v);
    }
    if let Some(t) = ms("FIX_READY_TIMEOUT_MS") {
        cluster = cluster.ready_timeout(t);
    }
    if let Some(policy) = var("FIX_POLICY").and_then(|p| herd::Policy::from_name(&p)) {
        cluster = cluster.policy(policy);
    }
    if let Some(cpus) = var("FIX_CPUS") {
        cluster = cluster.cpus(cpus.split(',').map(|c| c.parse::<usize>().unwrap()));
    }
    if let Some(list) = var("FIX_LISTEN_ON") {
        cluster = cluster.listen_on(list.split(','));
    }
    if let Some(addr) = var("FIX_METRICS_ADDR") {
        cluster = cluster.metrics_addr(Some(addr.parse().unwrap()));
    }
    if let Some(t) = ms("FIX_STATS_MS") {
        // 0: workers do not count (and send no counters).
        cluster = cluster.worker_metrics((!t.is_zero()).then_some(t));
    }
    if let Some(n) = var("FIX_BACKLOG") {
        cluster = cluster.backlog(n.parse().unwrap());
    }
    if let Some(t) = ms("FIX_RUN_TIMEOUT_MS") {
        cluster = cluster.run_timeout(t);
    }
    if let Some(t) = ms("FIX_BOOT_TIMEOUT_MS") {
        cluster = cluster.boot_timeout(t);
    }
    if let Some(v) = var("FIX_MAX_REQUESTS") {
        let (n, jitter) = v.split_once(',').unwrap_or((&v, "0"));
        cluster = cluster.max_requests(n.parse().unwrap(), jitter.parse().unwrap());
    }
    if let Some(v) = var("FIX_MAX_RSS_MB") {
        cluster = cluster.max_rss(v.parse::<u64>().unwrap() << 20);
    }
    if let Some(v) = var("FIX_CRASH_LOOP") {
        // crashes,window_ms,retry|stop
        let p: Vec<&str> = v.split(',').collect();
        let then = if p[2] == "stop" {
            herd::OnCrashLoop::Stop
        } else {
            herd::OnCrashLoop::Retry
        };
        cluster = cluster.crash_loop(
            p[0].parse().unwrap(),
            Duration::from_millis(p[1].parse().unwrap()),
            then,
        );
    }
    // Hung workers get SIGABRT: no core files from the tests.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    if let Some(rr) = var("FIX_POLICY").and_then(|p| herd_rr::RoundRobin::from_name(&p)) {
        cluster = cluster.dispatch(rr_settings(rr));
    }
    let action = var("FIX_PRIMARY").unwrap_or_default();
    let want = var("FIX_WORKERS").map_or(2, |v| v.parse().unwrap());
    let mut listening = 0;
    cluster = cluster.on_event(move |ev, primary| {
        let line = match ev {
            Event::Fork(w) => format!("EV fork id={} pid={} slot={}", w.id(), w.pid(), w.slot()),
            Event::Online(w) => format!("EV online id={} state={:?}", w.id(), w.state()),
            Event::Listening(w, a) => {
                format!("EV listening id={} addr={a} state={:?}", w.id(), w.state())
            }
            Event::Message(w, m) => {
                format!(
                    "EV message id={} data={}",
                    w.id(),
                    String::from_utf8_lossy(m)
                )
            }
            Event::Disconnect(w) => format!(
                "EV disconnect id={} ead={} connected={}",
                w.id(),
                w.exited_after_disconnect(),
                w.is_connected()
            ),
            Event::Exit(w, e) => {
                let how = match e {
                    Exit::Code(c) => format!("code={c}"),
                    Exit::Signal(s) => format!("signal={s}"),
                };
                format!(
                    "EV exit id={} {how} ead={} dead={} slot={} cause={}",
                    w.id(),
                    w.exited_after_disconnect(),
                    w.is_dead(),
                    w.slot(),
                    w.cause().map_or("none".to_string(), |c| c.to_string())
                )
            }
            Event::Hung(w, hang) => format!(
                "EV hung id={} slot={} stuck_ms={} request={}",
                w.id(),
                w.slot(),
                hang.stuck.as_millis(),
                hang.request.as_deref().unwrap_or("-").replace(' ', "_")
            ),
            Event::Failed(f) => format!(
                "EV failed slot={} crashes={} last={}",
                f.slot, f.crashes, f.last
            ),
            _ => format!("EV other {ev:?}"),
        };
        say(line);
        // FIX_PRIMARY=stall-on-reload: the primary's loop blocks FIX_STALL_MS in this
        // callback when a reload forks its first new worker (what /livez must notice).
        if let (Event::Fork(w), "stall-on-reload") = (ev, action.as_str()) {
            if w.id() as usize == want + 1 {
                std::thread::sleep(ms("FIX_STALL_MS").unwrap_or(Duration::from_secs(7)));
            }
        }
        if let Event::Listening(w, _) = ev {
            listening += 1;
            match action.as_str() {
                "ping" => w.send(format!("ping:{}", w.id())).unwrap(),
                "disconnect-first" if w.id() == 1 => w.disconnect(),
                "kill-first" if w.id() == 1 => w.kill(libc::SIGTERM),
                "broadcast" if listening == want => primary.broadcast("all").unwrap(),
                "json" => w
                    .send_json(&Job {
                        id: w.id(),
                        name: "resize".into(),
                        sizes: vec![64, 128],
                    })
                    .unwrap(),
                "too-large" if w.id() == 1 => {
                    let e = w.send(vec![0u8; 1 << 21]).unwrap_err();
                    say(format!("PRIMARY send-error kind={:?} {e}", e.kind()));
                }
                _ => {}
            }
        }
    });
    let result = cluster.run(|worker| run_worker(worker, raw_ipc_fd));
    if let Err(e) = result {
        eprintln!("herd-fixture: {e}");
        std::process::exit(1);
    }
}

/// A typed message for the `json` mode (feature `serde`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Job {
    id: u32,
    name: String,
    sizes: Vec<u32>,
}

fn run_worker(mut worker: herd::Worker, raw_ipc_fd: Option<i32>) -> herd::Result<()> {
    let mode = var("FIX_MODE").unwrap_or_default();
    let id = worker.id();
    if mode == "exit42" {
        std::process::exit(42);
    }
    if mode == "crash" {
        std::thread::sleep(Duration::from_millis(20));
        std::process::abort();
    }
    if mode == "crash-new"
        && var("FIX_GENERATION_FILE").is_some_and(|f| std::path::Path::new(&f).exists())
    {
        std::process::exit(3);
    }
    if mode == "garbage" {
        let fd = raw_ipc_fd.unwrap();
        // An unknown kind, then a whole frame over the limit, then (below) a real message.
        let mut junk = vec![2, 0, 0, 0, 250, 1];
        junk.extend_from_slice(&5000u32.to_le_bytes());
        junk.push(5);
        junk.extend_from_slice(&[0xAB; 4999]);
        // SAFETY: fd is this process's IPC socket; the buffer is valid for its length.
        unsafe { libc::write(fd, junk.as_ptr().cast(), junk.len()) };
        worker.send(b"still-alive")?;
    }
    if mode == "too-large" {
        let e = worker.send(&vec![0u8; 1 << 21]).unwrap_err();
        worker.send(format!("send-error kind={:?} {e}", e.kind()).as_bytes())?;
    }
    if let Some(n) = var("FIX_NOFILE") {
        // A low descriptor limit, so that accept runs out (EMFILE).
        let n: u64 = n.parse().unwrap();
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n).unwrap();
    }
    if mode == "http" {
        return serve_http(worker);
    }
    if let Some(addr) = var("FIX_ADDR") {
        let listener = match worker.listen(addr.as_str()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("worker {id}: listen failed: {e}");
                std::process::exit(1);
            }
        };
        // FIX_ADDR_OLD: a second address only the first build serves (until
        // FIX_GENERATION_FILE exists).
        let old_build =
            var("FIX_GENERATION_FILE").is_none_or(|f| !std::path::Path::new(&f).exists());
        if let Some(old) = var("FIX_ADDR_OLD").filter(|_| old_build) {
            let l = worker.listen(old.as_str())?;
            std::thread::spawn(move || serve(l, id));
        }
        worker.listening(listener.local_addr()?)?;
        std::thread::spawn(move || serve(listener, id));
        if let Some(extra) = var("FIX_EXTRA") {
            try_extra(&mut worker, &extra)?;
        }
    }
    if var("FIX_ORPHANS").is_some() && id == 1 {
        // Three processes orphaned at once: their parent (sh) exits, they outlive it by a
        // second and are reparented to the nearest init, the primary when it is PID 1.
        std::process::Command::new("sh")
            .args(["-c", "sleep 1 & sleep 1 & sleep 1 & exit 0"])
            .status()?;
    }
    if mode == "hang" {
        // Never reads IPC again: only SIGKILL ends it.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if mode == "spawn-sleep" {
        // A program this worker starts: its signal dispositions are what the test checks.
        let child = std::process::Command::new("sleep").arg("30").spawn()?;
        worker.send(format!("child pid={}", child.id()).as_bytes())?;
    }
    if mode == "hello" {
        worker.send(format!("hello from {id}").as_bytes())?;
    }
    if mode == "talk" {
        // Worker output on both streams (hidden by Cluster::silent), then a message saying
        // which user the worker runs as.
        println!("WORKER-STDOUT {id}");
        // One write, so that the primary's log lines cannot land inside it.
        let line = format!("WORKER-STDERR {id}\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap_or("")
            .to_string();
        worker.send(format!("talked {uid}").as_bytes())?;
    }
    loop {
        match worker.next_event(Duration::from_secs(3600)) {
            Ok(Some(WorkerEvent::Message(m))) if mode == "json" => {
                let job: Job = herd::from_json(&m)?;
                worker.send_json(&Job {
                    id,
                    name: format!("{}-done", job.name),
                    sizes: job.sizes.iter().map(|s| s * 2).collect(),
                })?;
            }
            Ok(Some(WorkerEvent::Message(m))) => {
                let text = String::from_utf8_lossy(&m);
                worker.send(format!("got:{text}:from:{id}").as_bytes())?;
            }
            Ok(Some(WorkerEvent::Disconnect)) => std::process::exit(0),
            Ok(Some(_)) | Ok(None) => {}
            Err(_) => std::process::exit(0),
        }
    }
}

/// `FIX_EXTRA`: asks the primary for more listeners (`FIX_EXTRA_REPEAT` rounds over the
/// comma-separated addresses) and reports `extra ok=N refused=M last=<error>` as a message.
fn try_extra(worker: &mut herd::Worker, extra: &str) -> herd::Result<()> {
    let rounds: usize = var("FIX_EXTRA_REPEAT").map_or(1, |v| v.parse().unwrap());
    let (mut ok, mut refused, mut last) = (0, 0, String::new());
    let mut kept = Vec::new();
    for _ in 0..rounds {
        for addr in extra.split(',') {
            match worker.listen(addr) {
                Ok(l) => {
                    ok += 1;
                    kept.push(l);
                }
                Err(e) => {
                    refused += 1;
                    last = format!("{:?} errno={:?} {e}", e.kind(), e.raw_os_error());
                }
            }
        }
    }
    worker.send(format!("extra ok={ok} refused={refused} last={last}").as_bytes())
}

/// Answers every connection with one line about this worker, then closes it.
fn serve(listener: TcpListener, id: u32) {
    let _ = listener.set_nonblocking(false);
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let cwd = std::env::current_dir().unwrap_or_default();
        let args: Vec<String> = std::env::args().skip(1).collect();
        let line = format!(
            "id={id} pid={} cwd={} env={} args={}\n",
            std::process::id(),
            cwd.display(),
            var("FIX_CHILD_ENV").unwrap_or_default(),
            args.join(",")
        );
        let _ = conn.write_all(line.as_bytes());
        let _ = conn.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 64];
        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = conn.read(&mut sink);
    }
}

/// herd-rr's settings from `FIX_RR_MAX_CONNS` and `FIX_RR_MAX_UNACKED`.
fn rr_settings(mut rr: herd_rr::RoundRobin) -> herd_rr::RoundRobin {
    if let Some(n) = var("FIX_RR_MAX_CONNS") {
        rr = rr.max_connections(n.parse::<usize>().unwrap());
    }
    if let Some(n) = var("FIX_RR_MAX_UNACKED") {
        rr = rr.max_unacknowledged(n.parse().unwrap());
    }
    rr
}

/// `FIX_MODE=http`: serves HTTP on `FIX_ADDR` (a comma-separated list serves them all)
/// under any policy (hand-off included). Every response names the worker (`X-Herd-Worker`)
/// and its pid (`X-Herd-Pid`); `/sleep?ms=N` blocks the worker's loop for N ms first, `/spin`
/// never returns, `/busy` keeps a thread busy for 4 s, `/leak?mb=N` leaks N MiB,
/// `/big?kb=N` answers N KiB (bytes `i % 251`), `/len` the request body's length,
/// `/defer?ms=N` answers from another thread after N ms. With `FIX_TLS_CERT` and
/// `FIX_TLS_KEY` (PEM files) it serves HTTPS.
fn serve_http(mut worker: herd::Worker) -> herd::Result<()> {
    let addrs = var("FIX_ADDR").expect("FIX_MODE=http needs FIX_ADDR");
    let id = worker.id().to_string();
    let pid = std::process::id().to_string();
    let mut listeners = Vec::new();
    for addr in addrs.split(',') {
        listeners.push(worker.bind(addr)?);
    }
    let http = herd::Http::new(move |req: &herd::Request<'_>, res: &mut herd::Response| {
        let n = |key: &str| -> usize {
            req.query()
                .and_then(|q| q.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if req.path() == "/big" {
            let body: Vec<u8> = (0..n("kb=") << 10).map(|i| (i % 251) as u8).collect();
            res.body(body);
            return;
        }
        if req.path() == "/len" {
            res.body(format!("{}\n", req.body().len()));
            return;
        }
        if req.path() == "/defer" {
            let ms = n("ms=") as u64;
            let mut later = res.defer();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                later.body(format!("deferred {ms}\n"));
                later.send();
            });
            return;
        }
        if req.path() == "/spin" {
            // A handler that never returns: only the watchdog gets this worker back.
            loop {
                std::hint::spin_loop();
            }
        }
        if req.path() == "/busy" {
            // Work on a thread of its own: the process is busy, its loop is not.
            std::thread::spawn(|| {
                let until = std::time::Instant::now() + Duration::from_secs(4);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
            });
        }
        if req.path() == "/leak" {
            let mb: usize = req
                .query()
                .and_then(|q| q.strip_prefix("mb="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            // Touched, so it is resident, and never freed.
            std::mem::forget(vec![1u8; mb << 20]);
        }
        if req.path() == "/sleep" {
            let ms = req
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
        }
        res.header("Content-Type", "text/plain")
            .header("X-Herd-Worker", &id)
            .header("X-Herd-Pid", &pid)
            .body(format!("{} {} from {id}\n", req.method(), req.target()));
    });
    match (var("FIX_TLS_CERT"), var("FIX_TLS_KEY")) {
        (Some(cert), Some(key)) => {
            let tls = herd::tls::TlsConfig::from_pem_files(cert, key)?;
            worker.serve(listeners, http.tls(tls))
        }
        _ => worker.serve(listeners, http),
    }
}
