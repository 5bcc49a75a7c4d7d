//! A fleet beyond one machine: three herd hosts in network namespaces behind HAProxy, under a
//! new-connection-per-request load through the balancer (benches/fleet.py --quick, which
//! builds, checks and tears down everything; this test asserts on its results).
//!
//! - a rolling deploy host by host loses nothing: driven by /readyz (SIGTERM with
//!   SHUTDOWN_DELAY) through a backend that never retries, and through HAProxy's runtime API
//!   (drain); the same restarts without the delay do fail requests (the control);
//! - `herd reload --wait` host by host loses nothing;
//! - a host killed outright (every process in its namespace) fails no more requests than its
//!   processes could have had in flight, HAProxy marks it DOWN, and once restarted it gets
//!   traffic again.
//!
//! Needs root and `ip netns` (CI runs as root); skipped with a line saying why otherwise.
//! HAProxy and python3 must be installed (.ci/run installs them).

mod util;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the fleet cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root for ip netns".into());
    }
    let probe = format!("hfltest{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::piped())
        .output();
    match made {
        Ok(out) if out.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            None
        }
        Ok(out) => Some(format!(
            "ip netns add failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run ip (iproute2): {e}")),
    }
}

/// The script's process: on drop (a failed assertion, a timeout) it is asked to stop, which
/// tears the fleet down; if it does not within 20 s it is killed and its namespaces
/// (`hfl<pid>-*`) are deleted here.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on the child we started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        let prefix = format!("hfl{pid}-");
        let list = Command::new("ip").args(["netns", "list"]).output();
        let names = list.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        for name in names.unwrap_or_default().lines() {
            let Some(name) = name.split_whitespace().next() else {
                continue;
            };
            if !name.starts_with(&prefix) {
                continue;
            }
            if let Ok(o) = Command::new("ip").args(["netns", "pids", name]).output() {
                for p in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(p) = p.parse::<i32>() {
                        // SAFETY: kill(2) on a process inside a namespace this test made.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

#[test]
fn fleet_rolling_deploys_lose_nothing_and_a_killed_host_rejoins() {
    if let Some(why) = cannot_run() {
        eprintln!("skipped: {why}");
        return;
    }
    let hello = util::example("hello");
    let herd = util::herd_cli();
    let load = util::build(&["-p", "herd-load", "--bin", "herd-load"], "herd-load");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = std::env::temp_dir().join(format!("herd-fleet-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&results);
    let child = Command::new("python3")
        .arg(root.join("benches/fleet.py"))
        .args(["--quick", "--scenarios", "rolling,naive,drain,reload,kill"])
        .args(["--workers", "2", "--connections", "16"])
        .arg("--hello")
        .arg(&hello)
        .arg("--herd")
        .arg(&herd)
        .arg("--load")
        .arg(&load)
        .arg("--json")
        .arg(&results)
        .stdin(Stdio::null())
        .spawn()
        .expect("run python3 benches/fleet.py (is python3 installed?)");
    let mut script = Script(child);
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(s) = script.0.try_wait().expect("wait for the script") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "benches/fleet.py did not finish within 150 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&results).unwrap_or_else(|e| {
        panic!("benches/fleet.py ({status}) wrote no results: {e}");
    });
    let _ = std::fs::remove_file(&results);
    let json: serde_json::Value = serde_json::from_str(&text).expect("the results are JSON");
    let rows = json["results"].as_array().expect("a results array");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["scenario"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {text}"))
    };
    for r in rows {
        assert!(r.get("error").is_none(), "a scenario failed: {r}");
    }
    assert_eq!(
        json["health"], "/readyz",
        "HAProxy must check /readyz: {text}"
    );
    for name in ["rolling", "drain", "reload"] {
        let r = row(name);
        assert!(r["requests"].as_u64().unwrap() > 0, "{name}: no load: {r}");
        assert_eq!(
            r["failed"], 0,
            "{name}: a rolling deploy lost requests: {r}"
        );
    }
    // The control: the same restarts through the same no-retry backend, with the shutdown
    // delay skipped, do fail requests; so it is readiness that kept `rolling` at zero.
    let naive = row("naive");
    assert!(
        naive["failed"].as_u64().unwrap() > 0,
        "naive: restarts without the readiness delay lost nothing, so the rolling scenario \
         proves nothing: {naive}"
    );
    let kill = row("kill");
    assert!(
        kill["requests"].as_u64().unwrap() > 0,
        "kill: no load: {kill}"
    );
    assert!(
        kill["failed"].as_u64().unwrap() <= kill["bound"].as_u64().unwrap(),
        "kill: more failures than the host could have had in flight: {kill}"
    );
    assert!(
        kill["rejoined"].as_u64().unwrap() > 0,
        "kill: the host got no traffic again: {kill}"
    );
    assert!(status.success(), "benches/fleet.py exited {status}: {text}");
}
