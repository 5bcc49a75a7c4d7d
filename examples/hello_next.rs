// cargo run --example hello_next        (the next version of hello, for upgrade tests)
//! The "next build" of the hello example: the same cluster and settings (`PORT`, `WORKERS`,
//! `POLICY`), answering `Hello again from worker <id> (pid <pid>)`. tests/nothing_lost.rs puts
//! this binary over a running hello's executable and reloads, to show a binary upgrade under
//! load: the responses switch from hello's to this one's and no request is lost.

use std::process::ExitCode;

use herd::{Cluster, Policy, Request, Response};

#[path = "support/env.rs"]
mod env;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello_next: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let port: u16 = env::env_or("PORT", 8000)?;
    let workers: usize = env::env_or(
        "WORKERS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )?;
    let policy_name = std::env::var("POLICY").unwrap_or_else(|_| "reuseport".into());
    let policy = Policy::from_name(&policy_name)
        .ok_or_else(|| format!("POLICY={policy_name} is not a policy: use reuseport or shared"))?;
    Cluster::new()
        .workers(workers)
        .policy(policy)
        .run(move |worker| {
            let id = worker.id().to_string();
            let body = format!(
                "Hello again from worker {id} (pid {})\n",
                std::process::id()
            );
            worker.serve_http(
                ("0.0.0.0", port),
                move |_req: &Request<'_>, res: &mut Response| {
                    res.header("Content-Type", "text/plain")
                        .header("X-Herd-Worker", &id)
                        .body(&body);
                },
            )
        })
        .map_err(|e| e.to_string())
}
