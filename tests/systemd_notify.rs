//! systemd's service notifications: the test binds the datagram socket systemd would
//! (NOTIFY_SOCKET) and reads what the primary says through a start, a reload and a stop.

mod util;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use util::{Proc, FIXTURE, SEC};

/// The next notification, or `None` after `timeout`.
fn next(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
}

#[test]
fn the_primary_tells_systemd_ready_reloading_and_stopping() {
    let dir = std::env::temp_dir().join(format!("herd-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut c = Proc::start(
        FIXTURE,
        &[
            ("FIX_WORKERS", "2"),
            ("FIX_ADDR", "127.0.0.1:0"),
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ],
        &[],
    );
    let ready = next(&socket, 10 * SEC).expect("READY=1 at start");
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS=2 workers ready"), "{ready:?}");
    // Both workers listen by then.
    c.expect_n(2, 5 * SEC, "EV listening");
    // Workers do not inherit the variable: they cannot notify in the cluster's name.
    for pid in c.worker_pids() {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            !String::from_utf8_lossy(&env).contains("NOTIFY_SOCKET"),
            "worker {pid} sees NOTIFY_SOCKET"
        );
    }

    let before = monotonic_usec();
    c.signal(libc::SIGHUP);
    let reloading = next(&socket, 10 * SEC).expect("RELOADING=1 at a reload");
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading:?}");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC, without which systemctl reload hangs")
        .parse()
        .unwrap();
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "{usec} not in [{before}, now]"
    );
    let done = next(&socket, 10 * SEC).expect("READY=1 at the reload's end");
    assert!(done.starts_with("READY=1\n"), "{done:?}");
    assert!(done.contains("reload complete"), "{done:?}");

    c.signal(libc::SIGTERM);
    let stopping = next(&socket, 10 * SEC).expect("STOPPING=1 at a stop");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    assert!(c.wait(10 * SEC).is_some_and(|s| s.success()));
    assert_eq!(
        next(&socket, Duration::from_millis(200)),
        None,
        "nothing after"
    );
    drop(socket);
    let _ = std::fs::remove_dir_all(&dir);
}
