//! Routing (matchit) and the request helpers over real sockets: path parameters, per-method
//! routes, 404, 405 with Allow, HEAD on GET routes, query and form decoding, cookies, JSON.

mod util;

use herd::event_loop::Config;
use herd::http::Router;
use herd::{Http, Request, Response};
use util::{roundtrip, start};

fn app() -> Router {
    let router = Router::new()
        .get("/", |_req: &Request<'_>, res: &mut Response| {
            res.body("home");
        })
        .get("/users/{id}", |req: &Request<'_>, res: &mut Response| {
            res.body(format!("get user {}", req.param("id").unwrap()));
        })
        .delete("/users/{id}", |req: &Request<'_>, res: &mut Response| {
            res.body(format!("delete user {}", req.param("id").unwrap()));
        })
        .get("/files/{*rest}", |req: &Request<'_>, res: &mut Response| {
            res.body(format!("file {}", req.param("rest").unwrap()));
        })
        .get("/search", |req: &Request<'_>, res: &mut Response| {
            let q = req.query_param("q").unwrap_or_default();
            let n = req.query_pairs().count();
            res.body(format!("{q}|{n}"));
        })
        .post("/form", |req: &Request<'_>, res: &mut Response| {
            let pairs: Vec<String> = req
                .form_pairs()
                .map(|p| p.map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_else(|| vec!["not a form".into()]);
            res.body(pairs.join("&"));
        })
        .get("/cookie", |req: &Request<'_>, res: &mut Response| {
            let sid = req.cookie("sid").unwrap_or_default();
            res.cookie(
                &cookie::Cookie::build(("seen", "yes; really"))
                    .path("/")
                    .build(),
            )
            .body(sid);
        });
    with_json(router)
}

#[cfg(not(feature = "serde"))]
fn with_json(router: Router) -> Router {
    router
}

#[cfg(feature = "serde")]
fn with_json(router: Router) -> Router {
    router.post("/json", |req: &Request<'_>, res: &mut Response| {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct Point {
            x: i32,
            y: i32,
        }
        match req.json::<Point>() {
            Ok(p) => res.json(&Point { x: p.y, y: p.x }),
            Err(e) => {
                e.answer(res);
                res
            }
        };
    })
}

fn get(server: &util::Server, request: &str) -> util::Reply {
    let mut stream = server.connect();
    roundtrip(&mut stream, request)
}

#[test]
fn routes_by_path_and_method() {
    let server = start(Http::new(app()), Config::default());
    let body = |r: util::Reply| String::from_utf8(r.body).unwrap();
    assert_eq!(
        body(get(&server, "GET / HTTP/1.1\r\nHost: t\r\n\r\n")),
        "home"
    );
    assert_eq!(
        body(get(&server, "GET /users/42 HTTP/1.1\r\nHost: t\r\n\r\n")),
        "get user 42"
    );
    assert_eq!(
        body(get(&server, "DELETE /users/7 HTTP/1.1\r\nHost: t\r\n\r\n")),
        "delete user 7"
    );
    assert_eq!(
        body(get(
            &server,
            "GET /files/a/b.txt?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
        )),
        "file a/b.txt"
    );
    let head = get(&server, "HEAD /users/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("10"))
    );

    let missing = get(&server, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(missing.status, 404);
    let wrong = get(
        &server,
        "POST /users/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, DELETE, HEAD"));
}

#[test]
fn decodes_query_form_and_cookies() {
    let server = start(Http::new(app()), Config::default());
    let body = |r: util::Reply| String::from_utf8(r.body).unwrap();
    assert_eq!(
        body(get(
            &server,
            "GET /search?q=herd+rs%21&page=2 HTTP/1.1\r\nHost: t\r\n\r\n"
        )),
        "herd rs!|2"
    );
    let form = "a=1&b=two+words";
    let reply = get(
        &server,
        &format!(
            "POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(body(reply), "a=1&b=two words");
    let reply = get(
        &server,
        "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\na=1",
    );
    assert_eq!(body(reply), "not a form");

    let reply = get(
        &server,
        "GET /cookie HTTP/1.1\r\nHost: t\r\nCookie: theme=dark; sid=abc%20123\r\n\r\n",
    );
    assert_eq!(
        reply.header("set-cookie"),
        Some("seen=yes%3B%20really; Path=/")
    );
    assert_eq!(body(reply), "abc 123");
}

#[cfg(feature = "serde")]
#[test]
fn json_in_and_out_with_a_400_that_says_what_was_wrong() {
    let server = start(Http::new(app()), Config::default());
    let body = |r: util::Reply| String::from_utf8(r.body).unwrap();
    let json = r#"{"x":1,"y":2}"#;
    let reply = get(
        &server,
        &format!(
            "POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        ),
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(body(reply), r#"{"x":2,"y":1}"#);
    let bad = r#"{"x":1}"#;
    let reply = get(
        &server,
        &format!(
            "POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{bad}",
            bad.len()
        ),
    );
    assert_eq!(reply.status, 400);
    let text = body(reply);
    assert!(
        text.contains("invalid JSON body: missing field `y`"),
        "{text}"
    );
}

#[test]
#[should_panic(expected = "routed twice")]
fn a_route_given_twice_is_refused_at_start() {
    let _ = Router::new()
        .get("/a", |_req: &Request<'_>, _res: &mut Response| {})
        .get("/a", |_req: &Request<'_>, _res: &mut Response| {});
}
