//! Listening through the primary: port 0, bind errors, privileged ports, both policies.

mod util;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use util::*;

#[test]
fn port_zero_gives_one_real_port_shared_by_every_worker() {
    let mut c = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "3"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    let addrs: HashSet<String> = c
        .expect_n(3, 5 * SEC, "EV listening")
        .iter()
        .map(|l| field(l, "addr").unwrap().to_string())
        .collect();
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    let addr: SocketAddr = addrs.into_iter().next().unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0);
    // Every worker serves on it: the kernel spreads new connections over the slots.
    let mut ids = HashSet::new();
    for _ in 0..60 {
        let line = fetch_line(addr).unwrap();
        ids.insert(field(&line, "id").unwrap().to_string());
    }
    assert_eq!(ids.len(), 3, "connections reached {ids:?}");
}

#[test]
fn shared_policy_serves_through_one_listener() {
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_POLICY", "shared"),
        ],
        &[],
    );
    let l = c.expect_n(2, 5 * SEC, "EV listening");
    let addr: SocketAddr = field(&l[0], "addr").unwrap().parse().unwrap();
    assert_eq!(field(&l[1], "addr").unwrap(), addr.to_string());
    assert!(fetch_line(addr).unwrap().starts_with("id="));
}

#[test]
fn bind_twice_second_cluster_gets_eaddrinuse_and_stops() {
    let mut first = Proc::start(
        FIXTURE,
        &[("FIX_WORKERS", "2"), ("FIX_ADDR", "127.0.0.1:0")],
        &[],
    );
    let l = first.expect(5 * SEC, |l| l.starts_with("EV listening"));
    let addr = field(&l, "addr").unwrap().to_string();
    let start = Instant::now();
    let mut second = Proc::start(FIXTURE, &[("FIX_WORKERS", "2"), ("FIX_ADDR", &addr)], &[]);
    let status = second
        .wait(10 * SEC)
        .expect("the second cluster stops instead of spinning");
    assert_eq!(status.code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(5));
    let err = second.stderr_contains(5 * SEC, &["herd-fixture: worker"]);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("herd-fixture: worker") && last.contains("already in use (EADDRINUSE)"),
        "{err}"
    );
    second.drain_for(Duration::from_millis(50));
    let forks = second
        .seen
        .iter()
        .filter(|l| l.starts_with("EV fork"))
        .count();
    assert!(forks <= 2, "no restart loop: {:?}", second.seen);
    // The first cluster is untouched and still serves.
    assert!(fetch_line(addr.parse().unwrap())
        .unwrap()
        .starts_with("id="));
}

#[test]
fn privileged_port_as_non_root_is_eacces() {
    let unprivileged_start: u32 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || unprivileged_start <= 80 {
        eprintln!("skipped: needs root to run the cluster as another uid, and port 80 privileged");
        return;
    }
    let mut cmd = std::process::Command::new(FIXTURE);
    std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
    std::os::unix::process::CommandExt::gid(&mut cmd, 65534);
    cmd.env("FIX_WORKERS", "1").env("FIX_ADDR", "127.0.0.1:80");
    let mut c = Proc::spawn(&mut cmd);
    let status = c.wait(10 * SEC).expect("stops");
    assert_eq!(status.code(), Some(1), "{}", c.stderr());
    assert!(
        c.stderr_contains(
            5 * SEC,
            &["permission denied to listen on 127.0.0.1:80 (EACCES)"]
        )
        .contains("permission denied to listen on 127.0.0.1:80 (EACCES)"),
        "{}",
        c.stderr()
    );
}

/// Ports someone listens on in this network namespace (from /proc/net/tcp, IPv4).
fn listening_ports() -> HashSet<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let local = cols.nth(1)?;
            let state = cols.nth(1)?;
            (state == "0A").then(|| u16::from_str_radix(local.rsplit(':').next()?, 16).ok())?
        })
        .collect()
}

/// A privileged port nobody listens on.
fn free_privileged_port() -> u16 {
    let used = listening_ports();
    (900..1000).find(|p| !used.contains(p)).unwrap()
}

#[test]
fn a_worker_cannot_obtain_listeners_the_cluster_does_not_serve() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run workers as uid 65534 under a root primary");
        return;
    }
    let privileged = free_privileged_port();
    let high = free_port();
    let extra = format!("127.0.0.1:{privileged},127.0.0.1:{high}");
    // Workers run as nobody; after serving their own address they ask the root primary
    // for a privileged port and another one, 40 times each (80 requests).
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "1"),
            ("FIX_UID", "65534"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_EXTRA", &extra),
            ("FIX_EXTRA_REPEAT", "40"),
        ],
        &[],
    );
    let l = c.expect(10 * SEC, |l| {
        l.starts_with("EV message") && l.contains("extra")
    });
    assert!(l.contains("ok=0 refused=80"), "{l}");
    // Refused with a sentence, and past 64 requests the bound says so.
    assert!(
        l.contains("Listen errno=Some(1) refused to listen on")
            && l.contains("more than 64 listen requests"),
        "{l}"
    );
    let err = c.stderr();
    assert!(
        err.contains(&format!("refused to listen on 127.0.0.1:{privileged}: not an address this cluster serves (127.0.0.1:0)")),
        "{err}"
    );
    let ports = listening_ports();
    assert!(
        !ports.contains(&privileged) && !ports.contains(&high),
        "the primary listens on an extra port"
    );
    // The cluster still serves.
    let addr: SocketAddr = c
        .seen
        .iter()
        .find(|l| l.starts_with("EV listening"))
        .and_then(|l| field(l, "addr"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(fetch_line(addr).unwrap().starts_with("id="));
}

#[test]
fn listen_on_allows_its_addresses_and_refuses_the_rest_with_one_line() {
    let allowed = free_port();
    let extra = free_port();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_LISTEN_ON", &format!("127.0.0.1:{allowed}")),
            ("FIX_ADDR", &format!("127.0.0.1:{allowed}")),
            ("FIX_EXTRA", &format!("127.0.0.1:{extra}")),
        ],
        &[],
    );
    let msgs = c.expect_n(2, 10 * SEC, "EV message");
    for m in &msgs {
        assert!(m.contains("ok=0 refused=1"), "{m}");
        assert!(m.contains("add it to Cluster::listen_on"), "{m}");
    }
    assert!(fetch_line(format!("127.0.0.1:{allowed}").parse().unwrap())
        .unwrap()
        .starts_with("id="));
    drop(c);
    // A worker whose own address is not in the list stops the cluster with the reason.
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_LISTEN_ON", &format!("127.0.0.1:{allowed}")),
            ("FIX_ADDR", &format!("127.0.0.1:{extra}")),
        ],
        &[],
    );
    let status = c
        .wait(10 * SEC)
        .expect("stops instead of restarting workers");
    assert_eq!(status.code(), Some(1));
    let err = c.stderr_contains(5 * SEC, &["herd-fixture: worker"]);
    assert!(
        err.lines().last().unwrap_or("").contains(&format!(
            "refused to listen on 127.0.0.1:{extra}: not an address this cluster serves (127.0.0.1:{allowed}); add it to Cluster::listen_on"
        )),
        "{err}"
    );
    // A listen_on entry that is not an address is a configuration error at once.
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_LISTEN_ON", "localhost:80"),
            ("FIX_ADDR", "127.0.0.1:0"),
        ],
        &[],
    );
    let status = c.wait(10 * SEC).expect("stops");
    assert_eq!(status.code(), Some(1));
    assert!(
        c.stderr()
            .contains("listen_on: \"localhost:80\" is not an IP address and port"),
        "{}",
        c.stderr()
    );
    assert!(
        !c.seen.iter().any(|l| l.starts_with("EV fork")),
        "{:?}",
        c.seen
    );
}

#[test]
fn a_listener_the_new_build_no_longer_uses_is_closed_after_the_reload() {
    let marker = std::env::temp_dir().join(format!("herd-gen-listen-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let old = free_port();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("FIX_ADDR_OLD", &format!("127.0.0.1:{old}")),
            ("FIX_GENERATION_FILE", marker.to_str().unwrap()),
        ],
        &[],
    );
    c.expect_n(2, 10 * SEC, "EV listening");
    assert!(listening_ports().contains(&old));
    std::fs::write(&marker, b"new").unwrap();
    c.signal(libc::SIGHUP);
    c.expect_n(2, 10 * SEC, "EV exit");
    let deadline = Instant::now() + 5 * SEC;
    while listening_ports().contains(&old) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&marker);
    assert!(
        !listening_ports().contains(&old),
        "port {old} still listens after the reload; nothing serves it"
    );
    // The address the new build serves still works.
    let addr: SocketAddr = c
        .seen
        .iter()
        .rfind(|l| l.starts_with("EV listening"))
        .and_then(|l| field(l, "addr"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(fetch_line(addr).unwrap().starts_with("id="));
}
