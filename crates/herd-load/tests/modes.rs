//! Each mode against a server whose answers are known: every request ends exactly once, and
//! every error kind matches what the server did.

mod util;

use std::time::{Duration, Instant};

use herd_load::{Config, Mode, Report, Stop, WeightedPath};
use util::{Tally, TestServer, PATTERN};

const REQUESTS: u64 = 3_000;

fn config(server: &TestServer, mode: Mode, paths: Vec<WeightedPath>) -> Config {
    let mut c = Config::new(server.addr);
    c.connections = 8;
    c.threads = 2;
    c.mode = mode;
    c.stop = Stop::Requests(REQUESTS);
    c.timeout = Duration::from_millis(300);
    c.paths = paths;
    c
}

fn mixed_paths() -> Vec<WeightedPath> {
    vec![
        WeightedPath::new("/", 970),
        WeightedPath::new("/close", 25),
        WeightedPath::new("/hang", 5),
    ]
}

/// Runs `config` against `server` and returns the report with the server's tally.
fn run(server: TestServer, config: &Config) -> (Report, Tally) {
    let started = Instant::now();
    let report = herd_load::run(config).expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "run took too long"
    );
    (report, server.finish())
}

fn check_exact(report: &Report, tally: &Tally) {
    assert_eq!(report.sent, REQUESTS, "{report}");
    assert_eq!(
        report.completed + report.errors.total(),
        REQUESTS,
        "{report}"
    );
    assert_eq!(report.abandoned, 0);
    assert_eq!(
        tally.requests, REQUESTS,
        "server saw every request once: {tally:?}"
    );
    assert_eq!(report.completed, tally.ok, "{report}\n{tally:?}");
    assert_eq!(
        report.errors.bad_status, tally.status_500,
        "{report}\n{tally:?}"
    );
    assert_eq!(
        report.errors.reset, tally.closed_unanswered,
        "{report}\n{tally:?}"
    );
    assert_eq!(
        report.errors.timeout, tally.hung_unanswered,
        "{report}\n{tally:?}"
    );
    assert_eq!(report.errors.connect, 0);
    assert_eq!(report.errors.parse, 0);
    assert_eq!(report.histogram().len(), report.completed);
    assert_eq!(report.latency.count, report.completed);

    // Every answer carried the worker header, in the server's pattern.
    let workers = &report.workers;
    assert_eq!(workers.header, "X-Herd-Worker");
    assert_eq!(workers.missing, 0);
    assert_eq!(workers.counts, tally.workers);
    let jain = workers.jain_index.expect("workers seen");
    assert!(
        (jain - tally.jain()).abs() < 1e-12,
        "{jain} vs {}",
        tally.jain()
    );
    let answered = tally.ok + tally.status_500;
    // PATTERN = a a b c: half the answers from a, a quarter each from b and c, to within one.
    let expected = |share: u64| answered * share / 4;
    for (name, share) in [("a", 2), ("b", 1), ("c", 1)] {
        let got = workers.counts[name];
        assert!(
            got.abs_diff(expected(share)) <= 2,
            "{name}: {got} of {answered}"
        );
    }
    assert_eq!(workers.counts.len(), 3);
    assert!(PATTERN.iter().all(|w| workers.counts.contains_key(*w)));
    let ratio = workers.max_min_ratio.unwrap();
    let (max, min) = (
        *workers.counts.values().max().unwrap() as f64,
        *workers.counts.values().min().unwrap() as f64,
    );
    assert_eq!(ratio, max / min);
    // Jain of (2, 1, 1) = 16 / (3 * 6).
    assert!((jain - 16.0 / 18.0).abs() < 0.01, "{jain}");

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["sent"], REQUESTS);
    assert_eq!(json["errors"]["bad_status"], report.errors.bad_status);
    assert_eq!(json["workers"]["counts"]["a"], workers.counts["a"]);
}

#[test]
fn keepalive_counts_every_outcome_exactly() {
    let server = TestServer::start();
    let config = config(&server, Mode::KeepAlive, mixed_paths());
    let (report, tally) = run(server, &config);
    check_exact(&report, &tally);
    assert!(
        tally.closed_unanswered > 0 && tally.hung_unanswered > 0,
        "{tally:?}"
    );
    // Keep-alive: a new connection only after a close or a hang.
    assert!(tally.connections >= 8, "{tally:?}");
    assert!(
        tally.connections <= 8 + tally.closed_unanswered + tally.hung_unanswered,
        "{tally:?}"
    );
}

#[test]
fn close_mode_opens_a_connection_per_request() {
    let server = TestServer::start();
    let config = config(&server, Mode::Close, mixed_paths());
    let (report, tally) = run(server, &config);
    check_exact(&report, &tally);
    assert_eq!(tally.connections, REQUESTS, "{tally:?}");
}

#[test]
fn pipeline_counts_every_outcome_exactly() {
    let server = TestServer::start();
    let config = config(&server, Mode::Pipeline { depth: 8 }, mixed_paths());
    let (report, tally) = run(server, &config);
    check_exact(&report, &tally);
    assert_eq!(report.depth, 8);
    // Requests pipelined behind a /close or /hang die with it.
    assert!(
        tally.closed_unanswered + tally.hung_unanswered
            > tally.connections - config.connections as u64,
        "{tally:?}"
    );
}

#[test]
fn clean_run_has_no_errors_and_a_full_histogram() {
    let server = TestServer::start();
    let mut config = config(
        &server,
        Mode::Pipeline { depth: 4 },
        vec![WeightedPath::new("/", 1)],
    );
    config.threads = 3;
    let (report, tally) = run(server, &config);
    check_exact(&report, &tally);
    assert_eq!(report.errors.total(), report.errors.bad_status);
    assert_eq!(tally.connections, 8);
    assert_eq!(report.threads, 3);
}
