//! The `herd-load` binary: flag errors and JSON output.

mod util;

use std::process::{Command, Output};

use util::TestServer;

fn herd_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd-load"))
        .args(args)
        .output()
        .expect("run herd-load")
}

#[test]
fn a_bad_flag_gives_one_error_line_and_status_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--url", "http://127.0.0.1:1/", "--bogus"],
            "herd-load: error: unknown flag '--bogus' (see --help)\n",
        ),
        (
            &["--url", "http://127.0.0.1:1/", "-c", "many"],
            "herd-load: error: flag '-c' wants a whole number, got 'many' (see --help)\n",
        ),
        (
            &["--url", "http://127.0.0.1:1/", "--mode=turbo"],
            "herd-load: error: unknown mode 'turbo' (keepalive, close or pipeline) (see --help)\n",
        ),
        (
            &["--url", "http://127.0.0.1:1/", "--duration", "soon"],
            "herd-load: error: flag '--duration' wants a duration like 500ms, 5s or 2m, got 'soon' (see --help)\n",
        ),
        (
            &["--url", "http://127.0.0.1:1/", "--depth", "4"],
            "herd-load: error: --depth needs --mode pipeline (see --help)\n",
        ),
        (
            &["--url"],
            "herd-load: error: flag '--url' needs a value (see --help)\n",
        ),
        (&["-n", "5"], "herd-load: error: --url is required (see --help)\n"),
        (
            &["--url", "https://127.0.0.1/"],
            "herd-load: error: only http:// URLs are supported: https://127.0.0.1/ (see --help)\n",
        ),
    ];
    for (args, line) in cases {
        let out = herd_load(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), *line, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_goes_to_stdout() {
    let out = herd_load(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: herd-load"));
}

#[test]
fn json_report_with_a_path_mix() {
    let server = TestServer::start();
    let url = format!("http://{}/", server.addr);
    let out = herd_load(&[
        "--url",
        &url,
        "-c",
        "4",
        "-t",
        "2",
        "-n",
        "200",
        "--mode",
        "pipeline",
        "--depth",
        "2",
        "--path",
        "9:/",
        "--path",
        "1:/close",
        "--timeout",
        "2s",
        "--json",
    ]);
    let tally = server.finish();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["sent"], 200);
    assert_eq!(report["completed"], tally.ok);
    assert_eq!(report["errors"]["reset"], tally.closed_unanswered);
    assert_eq!(report["errors"]["bad_status"], tally.status_500);
    assert_eq!(report["depth"], 2);
    assert!(tally.closed_unanswered > 0);
}

#[test]
fn text_report() {
    let server = TestServer::start();
    let url = format!("http://{}/", server.addr);
    let out = herd_load(&["--url", &url, "-c", "2", "-n", "50", "--mode", "close"]);
    drop(server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("requests: 50 sent"), "{text}");
    assert!(text.contains("workers:  X-Herd-Worker: a="), "{text}");
}
