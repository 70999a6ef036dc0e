//! Forwards every port a process tree opens inside a network namespace to
//! the same port on the host's 127.0.0.1, and stops forwarding when the
//! port closes: what the Go port-watcher was written for (a dev server in
//! a sandbox, reachable from outside). A 50 ms settle time keeps a tool
//! that probes a port before listening from starting and stopping a
//! forward.
//!
//! ```sh
//! cargo build --release --example forward_ports
//! sudo target/release/examples/forward_ports PID NETNS
//! ```
//!
//! It prints `ready` once it watches, then `forwarding PORT` and
//! `stopped PORT` as it goes.

use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, Shutdown, TcpListener, TcpStream},
    os::fd::AsFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use portwatch::{
    Proto,
    watcher::{PortChange, PortWatcher},
};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Connects to `port` on the loopback of namespace `netns`, from a thread
/// that enters it: a socket stays in the namespace it was made in.
fn connect_in(netns: &str, port: u16) -> io::Result<TcpStream> {
    let ns = std::fs::File::open(format!("/run/netns/{netns}"))?;
    thread::scope(|s| {
        s.spawn(|| {
            move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
            TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the connecting thread panicked")))
    })
}

/// Copies both ways between two streams until either side closes.
fn pipe(a: TcpStream, b: TcpStream) -> io::Result<()> {
    let (mut a2, mut b2) = (a.try_clone()?, b.try_clone()?);
    let (mut a, mut b) = (a, b);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut a, &mut b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut b, &mut a2);
    let _ = a2.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// One forward: a host listener whose accept loop ends when `stop` is set
/// (and a connection wakes it).
struct Forward {
    stop: Arc<AtomicBool>,
    port: u16,
    accepting: Option<thread::JoinHandle<()>>,
}

impl Forward {
    fn start(netns: String, port: u16) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accepting = thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let netns = netns.clone();
                thread::spawn(move || match connect_in(&netns, port) {
                    Ok(inner) => {
                        let _ = pipe(client, inner);
                    }
                    Err(e) => eprintln!("forward_ports: port {port}: {e}"),
                });
            }
        });
        Ok(Self {
            stop,
            port,
            accepting: Some(accepting),
        })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag and closes.
        let _ = TcpStream::connect_timeout(
            &(Ipv4Addr::LOCALHOST, self.port).into(),
            Duration::from_secs(1),
        );
        // Closed when this returns: "stopped" means no one can connect.
        if let Some(t) = self.accepting.take() {
            let _ = t.join();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(Ok(pid)), Some(netns)) = (args.get(1).map(|a| a.parse::<u32>()), args.get(2)) else {
        eprintln!("usage: forward_ports PID NETNS");
        std::process::exit(2);
    };
    let (tx, rx) = mpsc::channel();
    let mut watcher = match PortWatcher::with_namespace(pid, netns, move |change| {
        let _ = tx.send(change);
    }) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("forward_ports: {e}");
            std::process::exit(2);
        }
    };
    watcher.set_settle(Duration::from_millis(50));
    if let Err(e) = watcher.start() {
        eprintln!("forward_ports: {e}");
        std::process::exit(1);
    }
    println!("ready");
    let mut forwards: HashMap<u16, Forward> = HashMap::new();
    for change in rx {
        match change {
            PortChange::Opened(p) if p.proto == Proto::Tcp && !forwards.contains_key(&p.port) => {
                match Forward::start(netns.clone(), p.port) {
                    Ok(f) => {
                        forwards.insert(p.port, f);
                        println!("forwarding {}", p.port);
                    }
                    Err(e) => eprintln!("forward_ports: cannot forward port {}: {e}", p.port),
                }
            }
            PortChange::Closed(p)
                if p.proto == Proto::Tcp && forwards.remove(&p.port).is_some() =>
            {
                println!("stopped {}", p.port);
            }
            _ => {}
        }
    }
}
