// cargo run --example hello_next        (the next version of hello, for upgrade tests)
//! The "next build" of the hello example: the same cluster and settings (`PORT`, `WORKERS`,
//! `POLICY`), answering `Hello again from worker <id> (pid <pid>)`. tests/nothing_lost.rs puts
//! this binary over a running hello's executable and reloads, to show a binary upgrade under
//! load: the responses switch from hello's to this one's and no request is lost.

use std::process::ExitCode;

// hello's own code; its `main` is not this program's.
#[allow(dead_code)]
#[path = "hello.rs"]
mod hello;

fn main() -> ExitCode {
    hello::start("hello_next", "Hello again")
}
