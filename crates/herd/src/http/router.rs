//! Routing on `matchit` (the router axum uses): a path pattern per route (`/users/{id}`,
//! `/static/{*rest}`), a handler per method, `404` for an unknown path and `405` with `Allow`
//! for a known path asked with another method.
//!
//! Matching walks a radix tree and allocates nothing, so a routed request costs the same
//! syscalls and allocations as a plain closure (the handler is one indirect call away).

use super::request::Params;
use super::{Handler, Request, Response};

/// Routes requests to handlers by path and method; a [`Handler`] itself.
///
/// ```
/// use herd::http::Router;
/// use herd::{Http, Request, Response};
///
/// let app = Router::new()
///     .get("/", |_req: &Request<'_>, res: &mut Response| {
///         res.body("home\n");
///     })
///     .get("/users/{id}", |req: &Request<'_>, res: &mut Response| {
///         res.body(format!("user {}\n", req.param("id").unwrap_or("?")));
///     })
///     .post("/users", |_req: &Request<'_>, res: &mut Response| {
///         res.status(201);
///     });
/// let http = Http::new(app);
/// # let _ = http;
/// ```
pub struct Router {
    tree: matchit::Router<usize>,
    routes: Vec<Route>,
    fallback: Option<Box<dyn Handler>>,
}

/// The handlers of one path pattern.
struct Route {
    pattern: String,
    methods: Vec<(String, Box<dyn Handler>)>,
    /// The `Allow` value for a `405`.
    allow: String,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<_> = self
            .routes
            .iter()
            .map(|r| (r.pattern.as_str(), r.allow.as_str()))
            .collect();
        f.debug_struct("Router").field("routes", &routes).finish()
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

impl Router {
    /// No routes: everything is `404` until routes are added.
    pub fn new() -> Self {
        Router {
            tree: matchit::Router::new(),
            routes: Vec::new(),
            fallback: None,
        }
    }

    /// Serve `method` requests for paths matching `pattern` with `handler`. A pattern is a path
    /// with `{name}` segments (one segment, read with [`Request::param`]) and at most one
    /// trailing `{*name}` (the rest of the path). A `GET` route also answers `HEAD`.
    ///
    /// # Panics
    /// When `pattern` is malformed or conflicts with another (e.g. `/{a}` and `/{b}`), or
    /// when the method already has a handler for it: a routing table is built once at start,
    /// so the mistake shows there.
    pub fn route(mut self, method: &str, pattern: &str, handler: impl Handler) -> Self {
        let method = method.to_ascii_uppercase();
        let index = match self.routes.iter().position(|r| r.pattern == pattern) {
            Some(i) => i,
            None => {
                if let Err(e) = self.tree.insert(pattern, self.routes.len()) {
                    panic!("Router: route {pattern:?}: {e}");
                }
                self.routes.push(Route {
                    pattern: pattern.to_string(),
                    methods: Vec::new(),
                    allow: String::new(),
                });
                self.routes.len() - 1
            }
        };
        let route = &mut self.routes[index];
        assert!(
            route.methods.iter().all(|(m, _)| *m != method),
            "Router: {method} {pattern} is routed twice"
        );
        route.methods.push((method, Box::new(handler)));
        let mut allow: Vec<&str> = route.methods.iter().map(|(m, _)| m.as_str()).collect();
        if allow.contains(&"GET") && !allow.contains(&"HEAD") {
            allow.push("HEAD");
        }
        route.allow = allow.join(", ");
        self
    }

    /// [`route`](Self::route) for `GET` (and `HEAD`).
    pub fn get(self, pattern: &str, handler: impl Handler) -> Self {
        self.route("GET", pattern, handler)
    }

    /// [`route`](Self::route) for `POST`.
    pub fn post(self, pattern: &str, handler: impl Handler) -> Self {
        self.route("POST", pattern, handler)
    }

    /// [`route`](Self::route) for `PUT`.
    pub fn put(self, pattern: &str, handler: impl Handler) -> Self {
        self.route("PUT", pattern, handler)
    }

    /// [`route`](Self::route) for `DELETE`.
    pub fn delete(self, pattern: &str, handler: impl Handler) -> Self {
        self.route("DELETE", pattern, handler)
    }

    /// [`route`](Self::route) for `PATCH`.
    pub fn patch(self, pattern: &str, handler: impl Handler) -> Self {
        self.route("PATCH", pattern, handler)
    }

    /// Serve the files of `dir` under `prefix` (e.g. `/assets`: `/assets/app.css` is
    /// `app.css` under the directory's root, `/assets` is redirected to `/assets/`; `""` or
    /// `/` serves it at the site's root):
    /// `GET` and `HEAD`, `405` for other methods (see [`StaticDir`](super::StaticDir)).
    ///
    /// # Panics
    /// As [`route`](Self::route), when another route takes the same paths.
    pub fn files(self, prefix: &str, dir: super::StaticDir) -> Self {
        let prefix = prefix.trim_end_matches('/');
        let dir = std::sync::Arc::new(dir.prefix(prefix));
        let mut router = self;
        if !prefix.is_empty() {
            // `/assets` itself: redirected to `/assets/`.
            router = router.get(prefix, std::sync::Arc::clone(&dir));
        }
        router
            .get(&format!("{prefix}/"), std::sync::Arc::clone(&dir))
            .get(&format!("{prefix}/{{*file}}"), dir)
    }

    /// The handler for paths no route matches. Default: `404 Not Found` with an empty body.
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Box::new(handler));
        self
    }
}

impl Handler for Router {
    fn call(&self, req: &Request<'_>, res: &mut Response) {
        let Ok(matched) = self.tree.at(req.path()) else {
            match &self.fallback {
                Some(fallback) => fallback.call(req, res),
                None => {
                    res.status(404);
                }
            }
            return;
        };
        let route = &self.routes[*matched.value];
        let method = req.method();
        let handler = route.methods.iter().find(|(m, _)| m == method).or_else(|| {
            (method == "HEAD")
                .then(|| route.methods.iter().find(|(m, _)| m == "GET"))
                .flatten()
        });
        match handler {
            Some((_, handler)) => {
                let routed = Request {
                    params: Params::Matched(&matched.params),
                    ..*req
                };
                handler.call(&routed, res);
            }
            None => {
                res.status(405).header("Allow", &route.allow);
            }
        }
    }
}
