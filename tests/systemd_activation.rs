//! systemd socket activation with the real `systemd-socket-activate` (Debian's systemd
//! package): it listens, and on the first connection starts the cluster with the sockets as
//! LISTEN_FDS. The primary serves those sockets (the connection that woke it is answered),
//! workers never see the variables, and a socket that matches no address the workers ask
//! for is one clear error.

mod util;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use util::{free_port, read_reply, Proc, FIXTURE, SEC};

fn activate(listen: &[u16], env: &[(&str, &str)]) -> Proc {
    let mut args: Vec<String> = Vec::new();
    for port in listen {
        args.push("-l".into());
        args.push(format!("127.0.0.1:{port}"));
    }
    args.push("--fdname=web:admin".into());
    // systemd-socket-activate passes its children only what -E names.
    for (k, v) in env
        .iter()
        .chain(&[("RUST_LOG", "info"), ("FIX_WORKERS", "2")])
    {
        args.push("-E".into());
        args.push(format!("{k}={v}"));
    }
    args.push(FIXTURE.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start("systemd-socket-activate", &[], &args)
}

/// Connects (retrying while systemd-socket-activate sets up) and sends one request.
fn request(port: u16) -> TcpStream {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + 5 * SEC;
    let mut s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => panic!("connect to {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    s.set_read_timeout(Some(10 * SEC)).unwrap();
    s.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s
}

#[test]
fn the_cluster_serves_the_sockets_systemd_passed() {
    let (web, admin) = (free_port(), free_port());
    let addrs = format!("0.0.0.0:{web},127.0.0.1:{admin}");
    let mut c = activate(&[web, admin], &[("FIX_MODE", "http"), ("FIX_ADDR", &addrs)]);
    // This connection wakes systemd-socket-activate, which only then starts the cluster:
    // it waits in the passed socket's queue and the workers answer it.
    let first = request(web);
    let reply = read_reply(&mut BufReader::new(first)).expect("an answer to the first request");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.text().starts_with("GET /first"), "{}", reply.text());
    c.expect_n(2, 10 * SEC, "EV listening");
    let reply = read_reply(&mut BufReader::new(request(admin))).unwrap();
    assert_eq!(reply.status, 200, "the second socket is served too");
    let err = c.stderr_contains(SEC, &["LISTEN_FDS"]);
    assert!(
        err.contains(&format!("127.0.0.1:{web} (web)")) && err.contains("(admin)"),
        "the primary names the sockets it adopted: {err}"
    );
    // Workers (and whatever they start) never see the variables.
    for pid in c.worker_pids() {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let env = String::from_utf8_lossy(&env);
        assert!(
            !env.contains("LISTEN_FDS") && !env.contains("LISTEN_PID"),
            "worker {pid} sees {env}"
        );
    }
    // The primary made no socket of its own: what listens on the ports is systemd's.
    let listening = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let on_web = listening
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&format!(":{web:04X}")) && f[3] == "0A"
        })
        .count();
    assert_eq!(on_web, 1, "one listening socket on the port:\n{listening}");
}

#[test]
fn a_socket_that_matches_no_listen_address_is_one_clear_error() {
    let (passed, asked) = (free_port(), free_port());
    let addr = format!("127.0.0.1:{asked}");
    let mut c = activate(&[passed], &[("FIX_MODE", "http"), ("FIX_ADDR", &addr)]);
    // Wake it up; the connection is dropped with the cluster.
    let _wake = request(passed);
    let status = c.wait(10 * SEC).expect("the cluster stops");
    assert!(!status.success(), "{status:?}");
    let err = c.stderr();
    assert!(
        err.contains(&format!("no socket passed by systemd matches {addr}"))
            && err.contains("ListenStream="),
        "{err}"
    );
}
