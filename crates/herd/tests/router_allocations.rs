//! Routing adds no allocation per request: a routed request (path parameters included) costs
//! the heap exactly what the same request costs a plain closure, counted by a global allocator
//! on this thread while the connection serves a batch of keep-alive requests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use herd::http::Router;
use herd::protocol::{Connection, Protocol};
use herd::{Handler, Http, Request, Response};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls on this thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Allocations made while one connection serves `rounds` batches of `request`, after a warm-up
/// batch (buffers reach their working size first).
fn allocations_per_batch<H: Handler>(http: Http<H>, request: &[u8], rounds: usize) -> u64 {
    let now = Instant::now();
    let mut conn = http.connect(None, now);
    let batch: Vec<u8> = request.repeat(16);
    let mut out = Vec::with_capacity(64 * 1024);
    let step = conn.on_read(&batch, &mut out, now);
    assert_eq!(step.consumed, batch.len());
    let before = allocs();
    for _ in 0..rounds {
        out.clear();
        let step = conn.on_read(&batch, &mut out, now);
        assert_eq!(step.consumed, batch.len());
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    allocs() - before
}

#[test]
fn a_routed_request_allocates_what_a_plain_closure_does() {
    let request = b"GET /users/42 HTTP/1.1\r\nHost: t\r\n\r\n";
    let plain = Http::new(|req: &Request<'_>, res: &mut Response| {
        if req.path().starts_with("/users/") {
            res.body("user");
        }
    });
    let routed = Http::new(
        Router::new()
            .get("/", |_req: &Request<'_>, res: &mut Response| {
                res.body("home");
            })
            .get("/users/{id}", |req: &Request<'_>, res: &mut Response| {
                assert_eq!(req.param("id"), Some("42"));
                res.body("user");
            })
            .post("/users", |_req: &Request<'_>, res: &mut Response| {
                res.status(201);
            }),
    );
    let before = allocs();
    let probe = std::hint::black_box(vec![0u8; 100]);
    assert!(allocs() > before, "the counting allocator counts");
    drop(probe);
    let plain = allocations_per_batch(plain, request, 100);
    let routed = allocations_per_batch(routed, request, 100);
    assert_eq!(
        routed, plain,
        "routing allocated {routed} times over 1,600 requests, the closure {plain}"
    );
    assert_eq!(
        plain, 0,
        "the steady state of a keep-alive connection allocates nothing"
    );
}
