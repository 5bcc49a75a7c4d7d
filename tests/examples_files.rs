//! The files example (env PORT, ROOT, WORKERS): a real cluster serving a temporary directory,
//! fetched with curl, its worker watched with strace to see that the body goes by sendfile(2)
//! and not through write(2) or send(2).

mod util;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use util::*;

/// A directory under the system's temporary directory, removed (with all it holds) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("herd-example-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sums the results of the `name` calls in strace's output (`... ) = N`).
fn bytes_of(trace: &str, name: &str) -> u64 {
    trace
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|call| call.starts_with(&format!("{name}(")))
        })
        .filter_map(|l| {
            l.rsplit_once(" = ")?
                .1
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn the_files_example_serves_root_and_sends_bodies_with_sendfile() {
    let dir = TempDir::new("serve");
    let root = dir.0.join("www");
    std::fs::create_dir_all(&root).unwrap();
    let content: Vec<u8> = (0..4_000_000u32).map(|i| (i * 13 / 7) as u8).collect();
    std::fs::write(root.join("big.bin"), &content).unwrap();
    std::fs::write(root.join("index.html"), b"<h1>index</h1>\n").unwrap();
    std::fs::write(dir.0.join("secret.txt"), b"SECRET\n").unwrap();

    let port = free_port();
    let mut cluster = Proc::start(
        example("files").to_str().unwrap(),
        &[
            ("PORT", &port.to_string()),
            ("ROOT", root.to_str().unwrap()),
            ("WORKERS", "1"),
        ],
        &[],
    );
    cluster.expect(20 * SEC, |l| l.contains("worker listening"));
    let workers = children_of(cluster.pid());
    cluster.adopt(&workers);
    assert_eq!(workers.len(), 1, "WORKERS=1 started {workers:?}");

    let trace_path = dir.0.join("strace.txt");
    let mut strace = Proc::start(
        "strace",
        &[],
        &[
            "-f",
            "-e",
            "trace=sendfile,write,writev,sendto,sendmsg",
            "-o",
            trace_path.to_str().unwrap(),
            "-p",
            &workers[0].to_string(),
        ],
    );
    let attached = strace.stderr_contains(10 * SEC, &["attached"]);
    assert!(attached.contains("attached"), "strace: {attached}");

    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let out = dir.0.join("got.bin");
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code}"])
        .arg(url("/big.bin"))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200");
    assert!(
        std::fs::read(&out).unwrap() == content,
        "curl got other bytes"
    );
    let index = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(url("/"))
        .output()
        .expect("run curl");
    assert_eq!(index.stdout, b"<h1>index</h1>\n");
    let escape = Command::new("curl")
        .args([
            "-sS",
            "--path-as-is",
            "--max-time",
            "10",
            "-w",
            " %{http_code}",
        ])
        .arg(url("/../secret.txt"))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&escape.stdout), " 400");

    // Let strace write out what it saw, then read it.
    std::thread::sleep(Duration::from_millis(200));
    strace.signal(libc::SIGINT);
    strace.wait(10 * SEC).expect("strace stops on SIGINT");
    let trace = std::fs::read_to_string(&trace_path).expect("strace's output");
    let sent = bytes_of(&trace, "sendfile");
    let written: u64 = ["write", "writev", "sendto", "sendmsg"]
        .iter()
        .map(|call| bytes_of(&trace, call))
        .sum();
    // The two files served (the 400 has no body).
    let files = (content.len() + b"<h1>index</h1>\n".len()) as u64;
    assert_eq!(sent, files, "sendfile sent {sent} bytes:\n{trace}");
    assert!(written > 0, "the heads went out somehow:\n{trace}");
    assert!(
        written < 4096,
        "{written} bytes went by write(2): the body went through user space\n{trace}"
    );
}

#[test]
fn the_files_example_refuses_a_root_that_is_not_a_directory() {
    let dir = TempDir::new("badroot");
    let missing = dir.0.join("missing");
    let mut cluster = Proc::start(
        example("files").to_str().unwrap(),
        &[
            ("PORT", &free_port().to_string()),
            ("ROOT", missing.to_str().unwrap()),
            ("WORKERS", "1"),
        ],
        &[],
    );
    let status = cluster.wait(20 * SEC).expect("it exits at once");
    assert!(!status.success());
    let err = cluster.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("ROOT=") && err.contains("missing"), "{err}");
}
