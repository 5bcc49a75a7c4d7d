//! Connection-level behaviour: refused connects, source addresses, duration-bound runs, CPU
//! pinning and configuration errors.

mod util;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::Duration;

use herd_load::{Config, Mode, Stop, WeightedPath};
use util::TestServer;

#[test]
fn refused_connects_count_one_error_per_request() {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for mode in [Mode::KeepAlive, Mode::Close, Mode::Pipeline { depth: 4 }] {
        let mut config = Config::new(addr);
        config.connections = 4;
        config.stop = Stop::Requests(200);
        config.mode = mode;
        let report = herd_load::run(&config).unwrap();
        assert_eq!(report.sent, 200, "{mode:?}: {report}");
        assert_eq!(report.errors.connect, 200, "{mode:?}: {report}");
        assert_eq!(report.completed, 0);
        assert_eq!(report.latency.count, 0);
        assert_eq!(report.workers.jain_index, None);
    }
}

#[test]
fn connections_bind_to_the_given_source_addresses() {
    let server = TestServer::start();
    let mut config = Config::new(server.addr);
    config.connections = 6;
    config.mode = Mode::Close;
    config.stop = Stop::Requests(60);
    let sources: Vec<IpAddr> = vec![
        Ipv4Addr::new(127, 0, 0, 2).into(),
        Ipv4Addr::new(127, 0, 0, 3).into(),
    ];
    config.source_addrs = sources.clone();
    let report = herd_load::run(&config).unwrap();
    let tally = server.finish();
    assert_eq!(report.sent, 60, "{report}");
    assert_eq!(report.errors.connect, 0, "{report}");
    assert_eq!(tally.peers, sources.into_iter().collect());
}

#[test]
fn duration_runs_stop_on_time_and_account_for_requests_in_flight() {
    let server = TestServer::start();
    let mut config = Config::new(server.addr);
    config.connections = 4;
    config.mode = Mode::Pipeline { depth: 4 };
    config.stop = Stop::Duration(Duration::from_millis(300));
    let report = herd_load::run(&config).unwrap();
    let tally = server.finish();
    assert!(
        (0.3..2.0).contains(&report.elapsed_secs),
        "{}",
        report.elapsed_secs
    );
    assert!(report.completed > 0, "{report}");
    assert_eq!(report.sent, report.completed + report.errors.total());
    assert_eq!(report.errors.total(), report.errors.bad_status, "{report}");
    assert!(report.abandoned <= 16, "{report}");
    // Abandoned requests were written; the server read them too.
    assert_eq!(tally.requests, report.sent + report.abandoned, "{tally:?}");
    let rate = report.completed as f64 / report.elapsed_secs;
    assert!((rate - report.requests_per_sec).abs() < 1e-6);
}

#[test]
fn threads_pin_to_cpus() {
    let server = TestServer::start();
    let mut config = Config::new(server.addr);
    config.connections = 2;
    config.threads = 2;
    config.cpus = vec![0];
    config.stop = Stop::Requests(20);
    let report = herd_load::run(&config).unwrap();
    assert_eq!(report.sent, 20);
    drop(server);

    config.cpus = vec![1 << 20];
    let err = herd_load::run(&config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn configurations_that_cannot_run_are_refused() {
    let addr = "127.0.0.1:9".parse().unwrap();
    let cases: [fn(&mut Config); 6] = [
        |c| c.connections = 0,
        |c| c.threads = 0,
        |c| c.paths = vec![WeightedPath::new("/", 0)],
        |c| c.paths = vec![WeightedPath::new("/a b", 1)],
        |c| c.worker_header = "X Worker".to_string(),
        |c| c.timeout = Duration::ZERO,
    ];
    for (i, break_it) in cases.iter().enumerate() {
        let mut config = Config::new(addr);
        break_it(&mut config);
        let err = herd_load::run(&config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "case {i}: {err}");
    }
}

#[test]
fn worker_header_name_is_configurable() {
    let server = TestServer::start();
    let mut config = Config::new(server.addr);
    config.connections = 2;
    config.stop = Stop::Requests(40);
    config.worker_header = "x-herd-WORKER".to_string();
    let report = herd_load::run(&config).unwrap();
    assert_eq!(report.workers.counts.values().sum::<u64>(), 40);
    config.worker_header = "X-Other".to_string();
    let report = herd_load::run(&config).unwrap();
    assert_eq!(report.workers.missing, 40);
    assert!(report.workers.counts.is_empty());
    drop(server);
}
