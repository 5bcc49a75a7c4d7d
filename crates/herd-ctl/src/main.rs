//! The `herd` command: steers and shows a running herd cluster through the control socket
//! of its primary (see herd's `control` module for the protocol).
//!
//! ```text
//! herd status                # one line per worker, then the cluster
//! herd reload --wait         # exit 0 when every slot runs the new generation
//! HERD_SOCKET=/run/app.sock herd scale +1 -j
//! ```
//!
//! Flags are parsed by hand (like herd-load): a bad one ends the program with one line on
//! stderr and exit status 2. A command the cluster refuses, or no cluster at the socket,
//! exits 1 with a sentence saying what to do.

mod client;
mod render;

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

const USAGE: &str = "\
usage: herd [--socket PATH] [-j|--json] COMMAND

commands:
  status               one line per worker (id, slot, pid, state, uptime, requests, open
                       connections, memory, CPU, restarts by reason, heartbeat age), then
                       the cluster's policy, address, generation and failed slots
  top                  status, redrawn in place every second (Ctrl-C quits)
  reload [--wait]      rolling reload; --wait blocks until it ends: exit 0 when every slot
                       runs the new generation, 1 with the reason when it rolled back
  scale N|+K|-K        run N workers, or K more / K fewer (never below 1)
  stop [--quick]       graceful stop; --quick SIGKILLs the workers now
  kill ID [--signal S] send S (default TERM) to worker ID; its slot gets a new worker

options:
  --socket PATH        the cluster's control socket (default: env HERD_SOCKET, else the
                       one live herd-*.sock under $XDG_RUNTIME_DIR or the temp dir)
  -j, --json           print the answer as JSON
  -h, --help           print this help";

/// What the command line asks for.
struct Cli {
    socket: Option<String>,
    json: bool,
    verb: Verb,
}

enum Verb {
    Status,
    Top,
    Reload { wait: bool },
    Scale(Value),
    Stop { quick: bool },
    Kill { id: u64, signal: Option<String> },
}

fn parse(args: &[String]) -> Result<Option<Cli>, String> {
    let mut socket = None;
    let mut json = false;
    let mut wait = false;
    let mut quick = false;
    let mut signal = None;
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "-j" | "--json" => json = true,
            "--wait" => wait = true,
            "--quick" => quick = true,
            "--socket" => socket = Some(it.next().ok_or("--socket needs a path")?.clone()),
            "--signal" => signal = Some(it.next().ok_or("--signal needs a signal")?.clone()),
            s if s.starts_with("--socket=") => socket = Some(s["--socket=".len()..].to_string()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if s.starts_with('-') && s[1..].parse::<u64>().is_err() => {
                return Err(format!("unknown option {s}"))
            }
            s => words.push(s.to_string()),
        }
    }
    let (verb, rest) = words.split_first().ok_or("no command given")?;
    let verb = match (verb.as_str(), rest) {
        ("status", []) => Verb::Status,
        ("top", []) => Verb::Top,
        ("reload", []) => Verb::Reload { wait },
        ("scale", [n]) => Verb::Scale(scale_arg(n)?),
        ("scale", _) => return Err("scale needs one argument: N, +K or -K".into()),
        ("stop", []) => Verb::Stop { quick },
        ("kill", [id]) => Verb::Kill {
            id: id
                .parse()
                .map_err(|_| format!("kill needs a worker id, not {id:?}"))?,
            signal,
        },
        ("kill", _) => return Err("kill needs one worker id (herd status lists them)".into()),
        (v, []) => return Err(format!("unknown command {v:?}")),
        (v, extra) => return Err(format!("{v}: unexpected argument {:?}", extra[0])),
    };
    if wait && !matches!(verb, Verb::Reload { .. }) {
        return Err("--wait goes with reload".into());
    }
    Ok(Some(Cli { socket, json, verb }))
}

fn scale_arg(n: &str) -> Result<Value, String> {
    let bad = || format!("scale takes N, +K or -K, not {n:?}");
    if let Some(k) = n.strip_prefix('+') {
        Ok(json!({"delta": k.parse::<i64>().map_err(|_| bad())?}))
    } else if let Some(k) = n.strip_prefix('-') {
        Ok(json!({"delta": -k.parse::<i64>().map_err(|_| bad())?}))
    } else {
        Ok(json!({"workers": n.parse::<u64>().map_err(|_| bad())?}))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(Some(cli)) => cli,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("herd: {message} (see herd --help)");
            return ExitCode::from(2);
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("herd: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let mut conn = client::Client::connect(cli.socket.as_deref())?;
    let (request, wait) = match &cli.verb {
        Verb::Status | Verb::Top => (json!({"cmd": "status"}), false),
        Verb::Reload { wait } => (json!({"cmd": "reload", "wait": wait}), *wait),
        Verb::Scale(arg) => {
            let mut r = arg.clone();
            r["cmd"] = "scale".into();
            (r, false)
        }
        Verb::Stop { quick } => (json!({"cmd": "stop", "quick": quick}), false),
        Verb::Kill { id, signal } => (json!({"cmd": "kill", "id": id, "signal": signal}), false),
    };
    if let Verb::Top = cli.verb {
        return top(&mut conn, cli.json);
    }
    let answer = conn.call(
        &request,
        if wait {
            None
        } else {
            Some(Duration::from_secs(10))
        },
    )?;
    let ok = answer["ok"].as_bool() == Some(true);
    if cli.json {
        let shown = match cli.verb {
            Verb::Status if ok => &answer["status"],
            _ => &answer,
        };
        println!("{shown}");
    } else if ok {
        match &cli.verb {
            Verb::Status => print!("{}", render::status(&answer["status"])),
            Verb::Reload { wait: true } => {
                println!(
                    "reload complete: every slot runs generation {}",
                    answer["generation"]
                )
            }
            Verb::Reload { wait: false } => println!("reload started"),
            Verb::Scale(_) => println!(
                "scaling from {} to {} workers",
                answer["from"], answer["to"]
            ),
            Verb::Stop { quick: true } => println!("stopping now (workers SIGKILLed)"),
            Verb::Stop { quick: false } => println!("stopping gracefully"),
            Verb::Kill { .. } => println!(
                "sent signal {} to worker {} (pid {})",
                answer["signal"], answer["id"], answer["pid"]
            ),
            Verb::Top => {}
        }
    }
    if ok {
        Ok(())
    } else {
        Err(answer["error"]
            .as_str()
            .unwrap_or("the cluster refused the command")
            .to_string())
    }
}

/// Redraws the status every second until interrupted.
fn top(conn: &mut client::Client, json: bool) -> Result<(), String> {
    loop {
        let answer = conn.call(&json!({"cmd": "status"}), Some(Duration::from_secs(10)))?;
        if json {
            println!("{}", answer["status"]);
        } else {
            // Home the cursor and clear the screen, then draw.
            print!("\x1b[H\x1b[2J{}", render::status(&answer["status"]));
            println!("\n(refreshing every second; Ctrl-C quits)");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Option<Cli>, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn command_lines() {
        let c = p(&["-j", "scale", "-1", "--socket", "/x"])
            .unwrap()
            .unwrap();
        assert!(c.json);
        assert_eq!(c.socket.as_deref(), Some("/x"));
        assert!(matches!(c.verb, Verb::Scale(ref v) if v["delta"] == -1));
        assert!(
            matches!(p(&["scale", "+2"]).unwrap().unwrap().verb, Verb::Scale(ref v) if v["delta"] == 2)
        );
        assert!(
            matches!(p(&["scale", "3"]).unwrap().unwrap().verb, Verb::Scale(ref v) if v["workers"] == 3)
        );
        assert!(matches!(
            p(&["reload", "--wait"]).unwrap().unwrap().verb,
            Verb::Reload { wait: true }
        ));
        assert!(p(&["scale", "x"]).is_err());
        assert!(p(&["status", "--wait"]).is_err());
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&[]).is_err());
        assert!(p(&["--help"]).unwrap().is_none());
    }
}
