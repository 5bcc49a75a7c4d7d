// PORT=8000 WORKERS=2 REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example sessions
//! The Node cluster tutorials' pattern on herd: workers share no memory, so sessions live in
//! Redis, and any worker can serve any client. Also a handler that waits like a database
//! query, on the blocking pool, so it never stalls the fast routes.
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | hello, on the event loop |
//! | `GET /login?user=NAME` | stores a session in Redis (`SET session:<sid> NAME EX 3600`), sets cookie `sid` |
//! | `GET /me` | `200` with the session's user name (any worker), `401` without a valid `sid` |
//! | `GET /slow?ms=N` | waits N ms (default 50, at most 10 s) on the blocking pool |
//!
//! Every answer has `X-Herd-Worker: <id>`. Environment: `PORT` (default 8000), `WORKERS`
//! (default: the CPUs available), `REDIS_URL` (default redis://127.0.0.1:6379).
//!
//! Redis is used with the `redis` crate's sync client from one thread per worker, through
//! deferred responses: handlers hand the command and their `Responder` to that thread, which
//! sends everything that queued meanwhile as one pipeline (one write, one read for many
//! requests) and answers each. When Redis is down or slow, the answer is `503` naming the
//! cause after at most the connect/read timeout (500 ms / 1 s), and the worker reconnects on
//! the next request. Limits: no TLS to Redis, no Redis Cluster.

use std::process::ExitCode;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use herd::http::{blocking, Responder, Router};
use herd::{Cluster, Request, Response};

#[path = "support/env.rs"]
mod env;

/// How long a session lives in Redis.
const SESSION_TTL_SECS: u64 = 3600;
/// The most requests sent to Redis as one pipeline.
const MAX_BATCH: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessions: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::workers()?;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // A malformed URL is a misconfiguration: say so once, before starting anything.
    let client = redis::Client::open(url.as_str())
        .map_err(|e| format!("REDIS_URL={url} is not a Redis URL: {e}"))?;
    Cluster::new()
        .workers(workers)
        .run(move |worker| {
            let id = worker.id();
            let redis = Redis::start(client.clone());
            worker.serve_http(("0.0.0.0", port), app(id, redis))
        })
        .map_err(|e| e.to_string())
}

/// The routes; `worker` goes into `X-Herd-Worker`.
fn app(worker: u32, redis: Redis) -> Router {
    let tag = itoa::Buffer::new().format(worker).to_string();
    let (t1, t2, t3, t4) = (tag.clone(), tag.clone(), tag.clone(), tag);
    let login_redis = redis.clone();
    Router::new()
        .get("/", move |_req: &Request<'_>, res: &mut Response| {
            res.header("X-Herd-Worker", &t1)
                .header("Content-Type", "text/plain")
                .body("Hello from herd\n");
        })
        .get("/login", move |req: &Request<'_>, res: &mut Response| {
            res.header("X-Herd-Worker", &t2);
            let user = req.query_param("user").unwrap_or_default();
            if user.is_empty() || user.len() > 256 {
                res.status(400).body("give ?user=NAME (1 to 256 bytes)\n");
                return;
            }
            let sid = new_sid();
            let mut responder = res.defer();
            let cookie = cookie::Cookie::build(("sid", sid.clone()))
                .path("/")
                .http_only(true)
                .build();
            responder.header("X-Herd-Worker", &t2).cookie(&cookie);
            login_redis.send(Op::Login(sid, user.into_owned()), responder);
        })
        .get("/me", move |req: &Request<'_>, res: &mut Response| {
            res.header("X-Herd-Worker", &t3);
            match req.cookie("sid").filter(|sid| is_sid(sid)) {
                Some(sid) => {
                    let mut responder = res.defer();
                    responder.header("X-Herd-Worker", &t3);
                    redis.send(Op::Me(sid), responder);
                }
                None => {
                    res.status(401)
                        .body("no session: GET /login?user=NAME first\n");
                }
            }
        })
        .get(
            "/slow",
            blocking(move |req: &Request<'_>, res: &mut Response| {
                let ms: u64 = req
                    .query_param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(50)
                    .min(10_000);
                // Stands for a database query: the thread waits, the loop does not.
                std::thread::sleep(Duration::from_millis(ms));
                res.header("X-Herd-Worker", &t4)
                    .body(format!("waited {ms} ms\n"));
            }),
        )
}

/// A Redis command on behalf of one request.
enum Op {
    Login(String, String),
    Me(String),
}

/// The worker's Redis client: a thread that owns the connection and answers deferred
/// requests in batches.
#[derive(Clone)]
struct Redis {
    tx: Sender<(Op, Responder)>,
}

impl Redis {
    fn start(client: redis::Client) -> Redis {
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("redis".into())
            .spawn(move || serve_redis(client, rx))
            .expect("starting the Redis thread");
        Redis { tx }
    }

    fn send(&self, op: Op, responder: Responder) {
        // The thread lives as long as the worker; if it died, dropping the responder answers
        // 500 rather than hanging.
        let _ = self.tx.send((op, responder));
    }
}

/// The Redis thread: wait for one request, take every other one already queued, send them as
/// one pipeline, answer each.
fn serve_redis(client: redis::Client, rx: Receiver<(Op, Responder)>) {
    let mut conn: Option<redis::Connection> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // A connection kept from before may have died with the server (a restart): one
        // more try on a fresh connection before the requests are answered 503.
        let reused = conn.is_some();
        let mut result = run_batch(&client, &mut conn, &batch);
        if result.is_err() && reused {
            conn = None;
            result = run_batch(&client, &mut conn, &batch);
        }
        match result {
            Ok(replies) => {
                for ((op, mut responder), reply) in batch.drain(..).zip(replies) {
                    answer(op, reply, &mut responder);
                    responder.send();
                }
            }
            Err(e) => {
                // Reconnect next time: the connection may be half-way through a reply.
                conn = None;
                for (_, mut responder) in batch.drain(..) {
                    responder
                        .status(503)
                        .header("Retry-After", "1")
                        .header("Content-Type", "text/plain")
                        .body(format!("503 session store unavailable: redis: {e}\n"));
                    responder.send();
                }
            }
        }
    }
}

fn run_batch(
    client: &redis::Client,
    conn: &mut Option<redis::Connection>,
    batch: &[(Op, Responder)],
) -> redis::RedisResult<Vec<Option<String>>> {
    if conn.is_none() {
        let c = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        c.set_read_timeout(Some(IO_TIMEOUT))?;
        c.set_write_timeout(Some(IO_TIMEOUT))?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        unreachable!("connected above")
    };
    let mut pipe = redis::pipe();
    for (op, _) in batch {
        match op {
            Op::Login(sid, user) => {
                pipe.cmd("SET")
                    .arg(format!("session:{sid}"))
                    .arg(user)
                    .arg("EX")
                    .arg(SESSION_TTL_SECS);
            }
            Op::Me(sid) => {
                pipe.cmd("GET").arg(format!("session:{sid}"));
            }
        }
    }
    pipe.query(c)
}

fn answer(op: Op, reply: Option<String>, res: &mut Response) {
    match (op, reply) {
        (Op::Login(_, user), _) => {
            res.header("Content-Type", "text/plain")
                .body(format!("logged in as {user}\n"));
        }
        (Op::Me(_), Some(user)) => {
            res.header("Content-Type", "text/plain")
                .body(format!("{user}\n"));
        }
        (Op::Me(_), None) => {
            res.status(401)
                .body("no session: it expired or never existed\n");
        }
    }
}

/// 128 random bits from the kernel, as 32 hex digits.
fn new_sid() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_sid(sid: &str) -> bool {
    sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit())
}
