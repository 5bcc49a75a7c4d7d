//! Files over real sockets: `Response::file` and `StaticDir` served by the event loop, fetched
//! with a raw `TcpStream` (requests exactly as written, pipelining) and with curl. Real files
//! in a temporary directory that each test makes and removes.

mod util;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use herd::event_loop::Config;
use herd::http::{blocking, Router, StaticDir};
use herd::{Http, Request, Response};
use util::{read_reply, roundtrip, start, Reply};

/// A directory under the system's temporary directory, removed (with all it holds) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("herd-files-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create a subdirectory");
        }
        std::fs::write(&path, content).expect("write a test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes that differ from one offset to the next (a shifted range would not match).
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn get(stream: &mut std::net::TcpStream, path: &str, extra: &str) -> Reply {
    roundtrip(
        stream,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"),
    )
}

/// `Response::file` on every path under `dir`, GET and HEAD.
fn serve_dir(dir: &Path) -> Http<impl herd::Handler> {
    let dir = dir.to_path_buf();
    Http::new(move |req: &Request<'_>, res: &mut Response| {
        res.file(req, dir.join(req.path().trim_start_matches('/')));
    })
}

const BIG: usize = 5 * 1024 * 1024 + 123;

#[test]
fn a_multi_megabyte_file_comes_whole_with_its_length_and_validators() {
    let dir = TempDir::new("big");
    let content = pattern(BIG);
    let path = dir.write("big.bin", &content);
    dir.write("small.txt", b"small\n");
    let server = start(serve_dir(dir.path()), Config::default());
    let mut s = server.connect();
    // Pipelined: the small request waits behind the large body, then is answered.
    s.write_all(
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let big = read_reply(&mut s, false).expect("the large answer");
    assert_eq!(big.status, 200);
    assert_eq!(big.header("content-length"), Some(BIG.to_string().as_str()));
    assert!(big.body == content, "the body differs from the file");
    assert_eq!(big.header("accept-ranges"), Some("bytes"));
    assert_eq!(big.header("content-type"), Some("application/octet-stream"));
    let meta = std::fs::metadata(&path).unwrap();
    let modified = UNIX_EPOCH + Duration::from_secs(meta.mtime() as u64);
    assert_eq!(
        big.header("last-modified"),
        Some(httpdate::fmt_http_date(modified).as_str())
    );
    let etag = big.header("etag").expect("an ETag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let small = read_reply(&mut s, false).expect("the pipelined answer");
    assert_eq!(
        (small.status, small.body.as_slice()),
        (200, &b"small\n"[..])
    );
    assert_eq!(
        small.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // And again on the same connection, with curl as another client.
    let again = get(&mut s, "/big.bin", "");
    assert!(again.body == content);
    let out = dir.path().join("curl.out");
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code} %{size_download}"])
        .arg(format!("http://{}/big.bin", server.addr))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), format!("200 {BIG}"));
    assert!(
        std::fs::read(&out).unwrap() == content,
        "curl got other bytes"
    );
}

#[test]
fn conditional_requests_answer_304_without_a_body() {
    let dir = TempDir::new("cond");
    dir.write("page.html", b"<p>page</p>\n");
    let server = start(serve_dir(dir.path()), Config::default());
    let mut s = server.connect();
    let first = get(&mut s, "/page.html", "");
    let etag = first.header("etag").unwrap().to_string();
    let modified = first.header("last-modified").unwrap().to_string();
    let earlier = httpdate::fmt_http_date(
        httpdate::parse_http_date(&modified).unwrap() - Duration::from_secs(1),
    );
    // Each answer is read off the same connection: a 304 that sent a body would break the
    // framing of the next one.
    for (extra, want) in [
        (format!("If-None-Match: {etag}\r\n"), 304),
        (format!("If-None-Match: W/{etag}\r\n"), 304),
        (format!("If-None-Match: \"other\", {etag}\r\n"), 304),
        ("If-None-Match: *\r\n".to_string(), 304),
        ("If-None-Match: \"other\"\r\n".to_string(), 200),
        (format!("If-Modified-Since: {modified}\r\n"), 304),
        (format!("If-Modified-Since: {earlier}\r\n"), 200),
        ("If-Modified-Since: not a date\r\n".to_string(), 200),
        // If-None-Match takes precedence over If-Modified-Since.
        (
            format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\n"),
            200,
        ),
        ("If-Match: \"other\"\r\n".to_string(), 412),
        (format!("If-Match: {etag}\r\n"), 200),
        (format!("If-Unmodified-Since: {earlier}\r\n"), 412),
    ] {
        let reply = get(&mut s, "/page.html", &extra);
        assert_eq!(reply.status, want, "{extra:?}");
        match want {
            304 => {
                assert_eq!(reply.header("content-length"), None, "{extra:?}");
                assert_eq!(reply.header("etag"), Some(etag.as_str()));
                assert_eq!(reply.header("last-modified"), Some(modified.as_str()));
            }
            200 => assert_eq!(reply.body, b"<p>page</p>\n"),
            _ => assert!(reply.body.is_empty()),
        }
    }
    // A changed file gets a new validator, and no 304 for the old one.
    std::thread::sleep(Duration::from_millis(20));
    dir.write("page.html", b"<p>changed</p>\n");
    let reply = get(&mut s, "/page.html", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, &b"<p>changed</p>\n"[..])
    );
    assert_ne!(reply.header("etag"), Some(etag.as_str()));
}

#[test]
fn single_ranges_answer_206_with_content_range_and_out_of_file_ones_416() {
    let dir = TempDir::new("range");
    let len = 100_000;
    let content = pattern(len);
    dir.write("data.bin", &content);
    let server = start(serve_dir(dir.path()), Config::default());
    let mut s = server.connect();
    let etag = get(&mut s, "/data.bin", "")
        .header("etag")
        .unwrap()
        .to_string();
    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=99990-", 99_990, 99_999),
        ("bytes=-10", 99_990, 99_999),
        ("bytes=50000-50000", 50_000, 50_000),
        ("bytes=99000-200000", 99_000, 99_999),
        ("bytes=-200000", 0, 99_999),
    ] {
        let reply = get(&mut s, "/data.bin", &format!("Range: {range}\r\n"));
        assert_eq!(reply.status, 206, "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str()),
            "{range}"
        );
        assert_eq!(
            reply.header("content-length"),
            Some((end - start + 1).to_string().as_str())
        );
        assert!(reply.body == content[start..=end], "{range}: other bytes");
    }
    for range in ["bytes=100000-", "bytes=200000-300000", "bytes=-0"] {
        let reply = get(&mut s, "/data.bin", &format!("Range: {range}\r\n"));
        assert_eq!(reply.status, 416, "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
        assert!(reply.body.is_empty());
    }
    // Ignored: several ranges, another unit, a malformed one, a stale If-Range.
    for extra in [
        "Range: bytes=0-1,5-6\r\n".to_string(),
        "Range: items=0-1\r\n".to_string(),
        "Range: bytes=9-1\r\n".to_string(),
        "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n".to_string(),
    ] {
        let reply = get(&mut s, "/data.bin", &extra);
        assert_eq!(reply.status, 200, "{extra:?}");
        assert!(reply.body == content, "{extra:?}");
    }
    let reply = get(
        &mut s,
        "/data.bin",
        &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!((reply.status, reply.body.as_slice()), (206, &content[..10]));
    // curl's own range request.
    let curl = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-r",
            "10-19",
            "-w",
            " %{http_code}",
        ])
        .arg(format!("http://{}/data.bin", server.addr))
        .output()
        .expect("run curl");
    let mut want = content[10..20].to_vec();
    want.extend_from_slice(b" 206");
    assert_eq!(curl.stdout, want);
}

#[test]
fn head_gets_the_headers_of_get_and_no_body() {
    let dir = TempDir::new("head");
    dir.write("big.bin", &pattern(BIG));
    let server = start(serve_dir(dir.path()), Config::default());
    let mut s = server.connect();
    let head = roundtrip(&mut s, "HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(BIG.to_string().as_str())
    );
    assert!(head.header("etag").is_some() && head.header("last-modified").is_some());
    // Ranges are for GET: a HEAD gets the 200 headers.
    let head = roundtrip(
        &mut s,
        "HEAD /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    // Had a body followed, this would read it as the next answer.
    let next = get(&mut s, "/big.bin", "Range: bytes=0-3\r\n");
    assert_eq!((next.status, next.body.as_slice()), (206, &pattern(4)[..]));
}

#[test]
fn media_types_come_from_the_extension() {
    let dir = TempDir::new("mime");
    let server = start(serve_dir(dir.path()), Config::default());
    let mut s = server.connect();
    for (name, want) in [
        ("index.html", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("logo.png", "image/png"),
        ("photo.JPG", "image/jpeg"),
        ("data.json", "application/json"),
        ("doc.pdf", "application/pdf"),
        ("archive.tar.gz", "application/gzip"),
        ("README", "application/octet-stream"),
    ] {
        dir.write(name, b"x");
        let reply = get(&mut s, &format!("/{name}"), "");
        assert_eq!(reply.status, 200, "{name}");
        assert_eq!(reply.header("content-type"), Some(want), "{name}");
    }
}

/// A root with files, a secret beside it, and symbolic links in and out.
fn site() -> (TempDir, PathBuf) {
    let dir = TempDir::new("site");
    let root = dir.path().join("root");
    dir.write("secret.txt", b"TOP SECRET\n");
    dir.write("root/index.html", b"<h1>home</h1>\n");
    dir.write("root/docs/guide.txt", b"guide\n");
    dir.write("root/docs/index.html", b"<h1>docs</h1>\n");
    dir.write("root/empty/.keep", b"");
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, root.join(name)).expect("symlink")
    };
    link(Path::new("../secret.txt"), "out-relative");
    link(&dir.path().join("secret.txt"), "out-absolute");
    link(Path::new("/etc/passwd"), "passwd");
    link(Path::new(".."), "up");
    link(Path::new("docs/guide.txt"), "in-relative");
    link(&root.join("docs/guide.txt"), "in-absolute");
    (dir, root)
}

/// Whether an answer shows anything from outside the root.
fn leaks(reply: &Reply) -> bool {
    let body = String::from_utf8_lossy(&reply.body);
    body.contains("SECRET") || body.contains("root:")
}

#[test]
fn paths_that_leave_the_root_are_refused_without_leaking() {
    let (_dir, root) = site();
    let server = start(Http::new(StaticDir::new(&root).unwrap()), Config::default());
    let mut s = server.connect();
    // As sent, byte for byte (no client normalises them away).
    for (path, want) in [
        ("/../secret.txt", 400),
        ("/docs/../../secret.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/%2E%2E/%2E%2E/etc/passwd", 400),
        ("/..%2fsecret.txt", 400),
        ("/docs/..%2f..%2fsecret.txt", 400),
        ("/.%2e/secret.txt", 400),
        ("/%2e%2e%5csecret.txt", 400),
        ("/..\\secret.txt", 400),
        ("/index.html%00.txt", 400),
        // Decoded once: `%2e%2e` is a name, not `..`; there is no such file.
        ("/%252e%252e/secret.txt", 404),
        ("/%252e%252e%252fsecret.txt", 404),
        // An absolute path is a path under the root.
        ("//etc/passwd", 404),
        ("/etc/passwd", 404),
        // Symbolic links out of the root, relative or absolute, or to a parent.
        ("/out-relative", 403),
        ("/out-absolute", 403),
        ("/passwd", 403),
        ("/up/secret.txt", 403),
        // An absolute link is refused even when it points inside the root.
        ("/in-absolute", 403),
    ] {
        let reply = get(&mut s, path, "");
        assert_eq!(reply.status, want, "{path}");
        assert!(!leaks(&reply), "{path} leaked: {reply:?}");
    }
    // A relative link that stays inside the root is followed.
    let reply = get(&mut s, "/in-relative", "");
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, &b"guide\n"[..])
    );
    // curl with --path-as-is sends them unchanged too.
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/out-relative"] {
        let curl = Command::new("curl")
            .args([
                "-sS",
                "--path-as-is",
                "--max-time",
                "10",
                "-w",
                " %{http_code}",
            ])
            .arg(format!("http://{}{path}", server.addr))
            .output()
            .expect("run curl");
        let out = String::from_utf8_lossy(&curl.stdout);
        assert!(
            out.ends_with(" 400") || out.ends_with(" 403"),
            "{path}: {out}"
        );
        assert!(!out.contains("SECRET"), "{path}: {out}");
    }
}

#[test]
fn directories_serve_their_index_and_other_methods_get_405() {
    let (_dir, root) = site();
    let server = start(Http::new(StaticDir::new(&root).unwrap()), Config::default());
    let mut s = server.connect();
    let reply = get(&mut s, "/", "");
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, &b"<h1>home</h1>\n"[..])
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let reply = get(&mut s, "/docs?x=1", "");
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/docs/?x=1"));
    let reply = get(&mut s, "/docs/", "");
    assert_eq!(reply.body, b"<h1>docs</h1>\n");
    // No index, no listing.
    assert_eq!(get(&mut s, "/empty/", "").status, 404);
    assert_eq!(get(&mut s, "/missing.txt", "").status, 404);
    let reply = roundtrip(
        &mut s,
        "POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    // A root that is not a directory is refused when the handler is made, with its name.
    let err = StaticDir::new(root.join("index.html")).unwrap_err();
    assert!(err.to_string().contains("index.html"), "{err}");
    let err = StaticDir::new(root.join("nowhere")).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn a_router_mounts_a_directory_beside_other_routes() {
    let (_dir, root) = site();
    let app = Router::new()
        .get("/", |_req: &Request<'_>, res: &mut Response| {
            res.body("app home");
        })
        .files("/assets", StaticDir::new(&root).unwrap());
    let server = start(Http::new(app), Config::default());
    let mut s = server.connect();
    assert_eq!(get(&mut s, "/", "").body, b"app home");
    assert_eq!(get(&mut s, "/assets/docs/guide.txt", "").body, b"guide\n");
    assert_eq!(get(&mut s, "/assets/", "").body, b"<h1>home</h1>\n");
    let reply = get(&mut s, "/assets", "");
    assert_eq!(
        (reply.status, reply.header("location")),
        (301, Some("/assets/"))
    );
    assert_eq!(get(&mut s, "/assets/../secret.txt", "").status, 400);
    assert_eq!(get(&mut s, "/assets/%2e%2e/secret.txt", "").status, 400);
    assert_eq!(get(&mut s, "/other", "").status, 404);
    let reply = roundtrip(
        &mut s,
        "DELETE /assets/index.html HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    let reply = roundtrip(
        &mut s,
        "HEAD /assets/docs/guide.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(reply.header("content-length"), Some("6"));
}

#[test]
fn a_file_answered_from_the_blocking_pool_goes_out_the_same_way() {
    let dir = TempDir::new("pool");
    let content = pattern(BIG);
    dir.write("big.bin", &content);
    let path = dir.path().join("big.bin");
    let http = Http::new(blocking(move |req: &Request<'_>, res: &mut Response| {
        res.file(req, &path);
    }));
    let server = start(http, Config::default());
    let mut s = server.connect();
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nRange: bytes=-5\r\n\r\n",
    )
    .unwrap();
    let whole = read_reply(&mut s, false).unwrap();
    assert!(whole.status == 200 && whole.body == content);
    let tail = read_reply(&mut s, false).unwrap();
    assert_eq!(
        (tail.status, tail.body.as_slice()),
        (206, &content[BIG - 5..])
    );
}

#[test]
fn a_file_shorter_than_its_range_closes_the_connection_after_what_there_is() {
    let dir = TempDir::new("short");
    let path = dir.write("short.bin", &pattern(1000));
    let http = Http::new(move |_req: &Request<'_>, res: &mut Response| {
        let file = std::fs::File::open(&path).expect("open");
        res.body_file(file, 0, 5000);
    });
    let server = start(http, Config::default());
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("the server closes");
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("Content-Length: 5000\r\n"), "{text}");
    let body = &all[all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert_eq!(body, &pattern(1000)[..]);
}

#[test]
fn a_drain_lets_a_file_in_flight_finish_then_closes() {
    let dir = TempDir::new("drain");
    let content = pattern(BIG);
    dir.write("big.bin", &content);
    let mut server = start(serve_dir(dir.path()), Config::default());
    let mut s = server.connect();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Read a little, so that most of the body is still to come when the drain starts.
    let mut first = [0u8; 1024];
    s.read_exact(&mut first).unwrap();
    server.begin_drain();
    std::thread::sleep(Duration::from_millis(100));
    let mut all = first.to_vec();
    s.read_to_end(&mut all).expect("the body, then the close");
    let body = &all[all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert!(
        body == content.as_slice(),
        "{} of {BIG} body bytes",
        body.len()
    );
    server.stop().expect("the loop returns");
}

#[test]
fn files_and_streamed_bodies_pipelined_on_one_connection_keep_their_order() {
    let dir = TempDir::new("mixed");
    let content = pattern(BIG);
    let path = dir.write("big.bin", &content);
    let app = Router::new()
        .get("/file", move |req: &Request<'_>, res: &mut Response| {
            res.file(req, &path);
        })
        .get("/chunks", |_req: &Request<'_>, res: &mut Response| {
            res.chunks((0..100).map(|i| format!("chunk {i}\n")));
        });
    let server = start(Http::new(app), Config::default());
    let mut s = server.connect();
    s.write_all(
        b"GET /file HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /chunks HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /file HTTP/1.1\r\nHost: t\r\nRange: bytes=-3\r\n\r\n",
    )
    .unwrap();
    let first = read_reply(&mut s, false).unwrap();
    assert!(first.status == 200 && first.body == content);
    // The chunked body: read up to its last chunk.
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    let mut text = String::new();
    while !text.ends_with("\r\n0\r\n\r\n") {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0,
            "{text}"
        );
        text.push_str(&line);
    }
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("chunk 0\n") && text.contains("chunk 99\n"),
        "{text}"
    );
    let mut rest = Vec::new();
    let third = loop {
        // What the buffered reader took past the chunked body, then the socket.
        let buffered = std::io::BufRead::fill_buf(&mut reader).unwrap().to_vec();
        let n = buffered.len();
        std::io::BufRead::consume(&mut reader, n);
        rest.extend_from_slice(&buffered);
        if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            if rest.len() >= end + 4 + 3 {
                break rest;
            }
        }
    };
    let text = String::from_utf8_lossy(&third);
    assert!(text.starts_with("HTTP/1.1 206 "), "{text}");
    assert!(third.ends_with(&content[BIG - 3..]));
}

#[test]
fn a_file_answered_after_a_streamed_upload_goes_out_before_the_next_request() {
    let dir = TempDir::new("upload");
    let content = pattern(2 * 1024 * 1024);
    let path = dir.write("reply.bin", &content);
    let app = Router::new()
        .post(
            "/upload",
            blocking(move |req: &Request<'_>, res: &mut Response| {
                let mut reader = req.body_reader().expect("a streamed body");
                let n = std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
                assert_eq!(n, 3_000_000);
                res.file(req, &path);
            }),
        )
        .get("/small", |_req: &Request<'_>, res: &mut Response| {
            res.body("small");
        });
    let http = Http::new(app)
        .max_body_bytes(64 * 1024)
        .stream_large_bodies(true);
    let server = start(http, Config::default());
    let mut s = server.connect();
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            w.write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n")?;
            w.write_all(&vec![7u8; 3_000_000])?;
            w.write_all(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
        })
    };
    let file = read_reply(&mut s, false).unwrap();
    assert!(file.status == 200 && file.body == content, "{}", file.head);
    let small = read_reply(&mut s, false).unwrap();
    assert_eq!(small.body, b"small");
    writer.join().unwrap().unwrap();
}

/// A file answered before the end of a streamed upload (the handler read only part of the
/// body, the connection reads the rest) with `Connection: close` (or HTTP/1.0, or a drain):
/// the file still goes out whole once the body is read, then the connection closes.
#[test]
fn a_file_answered_during_a_streamed_upload_goes_out_whole_before_a_close() {
    let dir = TempDir::new("upload-close");
    let content = pattern(2 * 1024 * 1024);
    let path = dir.write("reply.bin", &content);
    let app = Router::new().post(
        "/upload",
        blocking(move |req: &Request<'_>, res: &mut Response| {
            let mut reader = req.body_reader().expect("a streamed body");
            reader.read_exact(&mut [0; 1000]).unwrap();
            res.file(req, &path);
        }),
    );
    let http = Http::new(app)
        .max_body_bytes(64 * 1024)
        .stream_large_bodies(true);
    let server = start(http, Config::default());
    for version in ["HTTP/1.1\r\nConnection: close", "HTTP/1.0"] {
        let mut s = server.connect();
        let writer = {
            let mut w = s.try_clone().unwrap();
            let head =
                format!("POST /upload {version}\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n");
            std::thread::spawn(move || {
                w.write_all(head.as_bytes())?;
                w.write_all(&vec![7u8; 3_000_000])
            })
        };
        let file = read_reply(&mut s, false).expect("the whole file");
        assert!(file.status == 200 && file.body == content, "{}", file.head);
        assert!(util::is_closed(&mut s), "{version}: closes after the file");
        writer.join().unwrap().unwrap();
    }
}
