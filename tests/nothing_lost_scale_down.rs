//! Nothing lost when scaling down under load (SIGTTOU). A removed slot's listener must really
//! close, and closing a SO_REUSEPORT listener resets every connection queued on it, while the
//! kernel keeps steering new connections to it until then: losing nothing needs the kernel's
//! help (net.ipv4.tcp_migrate_req, or a cBPF reuseport program that stops steering to the
//! slot before it drains). Until listen.rs has that steering this test is expected to fail;
//! it asserts zero failures so that it passes once the steering lands. Cargo.toml marks it
//! `test = false` (a plain `cargo test` skips it); run it by name:
//! `cargo test --test nothing_lost_scale_down -- --nocapture`.

mod lost;
mod util;

use std::time::Duration;

use lost::*;
use util::SEC;

#[test]
fn sigttou_under_load_loses_nothing_scale_down() {
    let _serial = serial();
    let mut c = Hello::start(&example("hello"), 3);
    let before = steady(c.addr, Duration::from_secs(1));
    let load = Load::start(c.addr, chunk_for(&before));
    std::thread::sleep(Duration::from_millis(200));
    for n in 1..=2 {
        c.proc.signal(libc::SIGTTOU);
        c.wait_count("slot removed", n, 10 * SEC);
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = load.finish();
    print("scale-down 3 -> 1", &before, &during);
    during.assert_nothing_lost("scale-down");
    assert_eq!(c.count("worker exited"), 2);
}
