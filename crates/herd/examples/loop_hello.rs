// cargo run --release --example loop_hello -p herd -- 8080 2
//! Runs the event loop standalone (no primary) with a hello-world handler: N threads, one loop
//! per thread, each with its own SO_REUSEPORT listener on 127.0.0.1:PORT, so the kernel spreads
//! connections over the loops as it would over worker processes.
//!
//! Arguments: PORT (default 8080) and THREADS (default 2). It serves until killed; it is a
//! measuring aid for the loop and the HTTP layer, not a cluster (see the herd crate for that).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;

use herd::event_loop::{self, Config, Standalone};
use herd::{Http, Request, Response};
use socket2::{Domain, Socket, Type};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(8080);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let http = Arc::new(Http::new(|_req: &Request<'_>, res: &mut Response| {
        res.body("hello");
    }));
    let loops: Vec<_> = (0..threads)
        .map(|_| {
            let listener = reuseport_listener(addr)?;
            let http = Arc::clone(&http);
            Ok(thread::spawn(move || {
                event_loop::run(vec![listener], http, &Config::default(), &mut Standalone)
            }))
        })
        .collect::<std::io::Result<_>>()?;
    println!("serving http://{addr}/ with {threads} loops");
    for handle in loops {
        handle.join().expect("loop thread panicked")?;
    }
    Ok(())
}

/// A listener of its own in the port's reuseport group, with TCP_NODELAY for the connections
/// it accepts (they inherit it).
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
