//! Nothing lost when scaling down under load (SIGTTOU): connections queued on a removed
//! slot's listener, and connections opened while it goes away, all get their answers. The
//! kernel would reset what is queued on a closed SO_REUSEPORT listener, and its close races
//! new connections' lookups: with net.ipv4.tcp_migrate_req the kernel moves the queue on
//! close; otherwise a cBPF reuseport program steers new connections away from the slot before
//! it drains, the primary hands what is queued to the workers that stay, and the socket stays
//! open, steered around, instead of closing (see listen.rs's `finish_remove_slot`).
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
