// cargo run --release -p herd-load -- --url http://127.0.0.1:8000/ --connections 64 --threads 2 --duration 5s
//! The `herd-load` command: runs [`herd_load::run`] with settings from the command line and
//! prints the report as text, or as one line of JSON with `--json`.
//!
//! Flags are parsed by hand; a bad one ends the program with a one-line error on stderr and
//! exit status 2.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use herd_load::{Config, Mode, Stop, WeightedPath};

const USAGE: &str = "\
usage: herd-load --url http://HOST:PORT/PATH [options]

  --url URL             target (http only); its path is requested unless --path is given
  -c, --connections N   concurrent connections (default 64)
  -t, --threads N       generator threads, one poll loop each (default 2)
  -d, --duration D      run for D: 500ms, 5s, 2m; a bare number is seconds (default 5s)
  -n, --requests N      send exactly N requests instead of running for a duration
  --mode M              keepalive | close (new connection per request) | pipeline
  --depth N             requests in flight per connection with --mode pipeline (default 16)
  --timeout D           per-request timeout (default 5s)
  --path [W:]PATH       request PATH with weight W (default 1); repeat for a mix,
                        e.g. --path 95:/ --path 5:/spin?us=20000
  -H, --header 'K: V'   extra request header; repeatable
  --header-key NAME     response header naming the worker (default X-Herd-Worker)
  --source IP[,IP..]    bind connection i to the i-th address (mod count) before connect
  --cpus N[,N..]        pin generator thread i to the i-th CPU (mod count)
  --json                print the report as one line of JSON
  -h, --help            print this help";

/// What the command line asks for.
struct Cli {
    config: Config,
    json: bool,
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
            eprintln!("herd-load: error: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    match herd_load::run(&cli.config) {
        Ok(report) if cli.json => println!("{}", report.to_json()),
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("herd-load: error: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Parses the arguments; `None` when help was asked for.
fn parse(args: &[String]) -> Result<Option<Cli>, String> {
    let mut url = None;
    let mut connections = None;
    let mut threads = None;
    let mut duration = None;
    let mut requests = None;
    let mut mode = None;
    let mut depth = None;
    let mut timeout = None;
    let mut paths = Vec::new();
    let mut headers = Vec::new();
    let mut header_key = None;
    let mut sources = Vec::new();
    let mut cpus = Vec::new();
    let mut json = false;

    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag '{flag}' needs a value")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--url" => url = Some(value()?),
            "-c" | "--connections" => connections = Some(number(flag, &value()?)?),
            "-t" | "--threads" => threads = Some(number(flag, &value()?)?),
            "-d" | "--duration" => duration = Some(duration_of(flag, &value()?)?),
            "-n" | "--requests" => requests = Some(number(flag, &value()?)? as u64),
            "--mode" => mode = Some(value()?),
            "--depth" => depth = Some(number(flag, &value()?)?),
            "--timeout" => timeout = Some(duration_of(flag, &value()?)?),
            "--path" => paths.push(weighted_path(&value()?)?),
            "-H" | "--header" => {
                let v = value()?;
                let (name, val) = v
                    .split_once(':')
                    .ok_or_else(|| format!("header '{v}' is not 'Name: value'"))?;
                headers.push((name.trim().to_string(), val.trim().to_string()));
            }
            "--header-key" => header_key = Some(value()?),
            "--source" => {
                for ip in value()?.split(',') {
                    sources.push(
                        ip.parse::<IpAddr>()
                            .map_err(|_| format!("bad address '{ip}' for --source"))?,
                    );
                }
            }
            "--cpus" => {
                for cpu in value()?.split(',') {
                    cpus.push(number("--cpus", cpu)?);
                }
            }
            _ => return Err(format!("unknown flag '{arg}'")),
        }
    }

    let url = url.ok_or("--url is required")?;
    let mut config = Config::from_url(&url).map_err(|e| e.to_string())?;
    if let Some(n) = connections {
        config.connections = n;
    }
    if let Some(n) = threads {
        config.threads = n;
    }
    config.mode = match (mode.as_deref(), depth) {
        (None | Some("keepalive"), None) => Mode::KeepAlive,
        (Some("close"), None) => Mode::Close,
        (Some("pipeline"), depth) => Mode::Pipeline {
            depth: depth.unwrap_or(16),
        },
        (None | Some("keepalive" | "close"), Some(_)) => {
            return Err("--depth needs --mode pipeline".to_string())
        }
        (Some(other), _) => {
            return Err(format!(
                "unknown mode '{other}' (keepalive, close or pipeline)"
            ))
        }
    };
    config.stop = match (duration, requests) {
        (Some(_), Some(_)) => return Err("give --duration or --requests, not both".to_string()),
        (_, Some(n)) => Stop::Requests(n),
        (Some(d), None) => Stop::Duration(d),
        (None, None) => config.stop,
    };
    if let Some(t) = timeout {
        config.timeout = t;
    }
    if !paths.is_empty() {
        config.paths = paths;
    }
    config.headers = headers;
    if let Some(k) = header_key {
        config.worker_header = k;
    }
    config.source_addrs = sources;
    config.cpus = cpus;
    Ok(Some(Cli { config, json }))
}

fn number(flag: &str, text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("flag '{flag}' wants a whole number, got '{text}'"))
}

/// `500ms`, `5s`, `2m`, `1.5s`, or a bare number of seconds.
fn duration_of(flag: &str, text: &str) -> Result<Duration, String> {
    let bad = || format!("flag '{flag}' wants a duration like 500ms, 5s or 2m, got '{text}'");
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(n * scale).map_err(|_| bad())
}

/// `/path` (weight 1) or `WEIGHT:/path`.
fn weighted_path(text: &str) -> Result<WeightedPath, String> {
    if text.starts_with('/') {
        return Ok(WeightedPath::new(text, 1));
    }
    let (weight, path) = text
        .split_once(':')
        .filter(|(_, p)| p.starts_with('/'))
        .ok_or_else(|| format!("path '{text}' is not /PATH or WEIGHT:/PATH"))?;
    let weight = weight
        .parse()
        .map_err(|_| format!("bad weight '{weight}' in --path '{text}'"))?;
    Ok(WeightedPath::new(path, weight))
}
