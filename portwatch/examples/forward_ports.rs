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
//! target/release/examples/forward_ports --connect SOCKET --pid PID [NETNS]
//! ```
//!
//! It prints `ready` once it watches, then `forwarding PORT` and
//! `stopped PORT` as it goes.
//!
//! With `--connect SOCKET` it needs no root: it follows the tree through
//! a running daemon's event socket (`portwatch daemon --socket SOCKET`),
//! as a member of the socket's group, for a process of the same user
//! (`PortWatcher::connect`; the daemon's settle time applies). Without a
//! NETNS the ports are on this host already, so it forwards nothing and
//! prints `opened ADDRESS:PORT` and `closed ADDRESS:PORT` instead; with
//! one it forwards as above (entering the namespace needs
//! `CAP_SYS_ADMIN`). It prints `lost WHY` when its view may lack changes
//! (the daemon restarted, say): it reconnects by itself, and then
//! reports what closed and opened meanwhile.

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
    Filter, Proto,
    watcher::{Lost, PortChange, PortWatcher},
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

/// What the command line asked for.
enum Mode {
    /// A monitor of its own (root): `PID NETNS`.
    Local { pid: u32, netns: String },
    /// Through a daemon's socket: `--connect SOCKET --pid PID [NETNS]`.
    Connect {
        socket: String,
        pid: u32,
        netns: Option<String>,
    },
}

impl Mode {
    fn parse(args: &[String]) -> Option<Mode> {
        match args {
            [connect, socket, pid_flag, pid, rest @ ..]
                if connect == "--connect" && pid_flag == "--pid" && rest.len() <= 1 =>
            {
                Some(Mode::Connect {
                    socket: socket.clone(),
                    pid: pid.parse().ok()?,
                    netns: rest.first().cloned(),
                })
            }
            [pid, netns] => Some(Mode::Local {
                pid: pid.parse().ok()?,
                netns: netns.clone(),
            }),
            _ => None,
        }
    }
}

/// What the watcher's thread hands the main loop, in order.
enum Message {
    Change(PortChange),
    Lost(Lost),
}

/// The inode of the network namespace `ip netns` calls `name`.
fn netns_inode(name: &str) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata(format!("/run/netns/{name}"))?.ino())
}

/// The watcher `mode` asks for, started; else why not, and the exit
/// status to say it with (2 for what is wrong before the start).
fn watcher(mode: &Mode, tx: mpsc::Sender<Message>) -> Result<PortWatcher, (i32, String)> {
    let changes = tx.clone();
    let on_change = move |change| {
        let _ = changes.send(Message::Change(change));
    };
    let mut watcher = match mode {
        Mode::Local { pid, netns } => {
            let mut w = PortWatcher::with_namespace(*pid, netns, on_change)
                .map_err(|e| (2, e.to_string()))?;
            w.set_settle(Duration::from_millis(50));
            w
        }
        Mode::Connect { socket, pid, netns } => {
            let netns = match netns {
                Some(name) => Some(
                    netns_inode(name)
                        .map_err(|e| (2, format!("no network namespace {name:?} ({e})")))?,
                ),
                None => None,
            };
            let filter = Filter {
                pid: Some(*pid),
                netns,
                ..Filter::default()
            };
            let mut w = PortWatcher::connect_with_filter(socket, filter, on_change);
            w.on_lost(move |lost| {
                let _ = tx.send(Message::Lost(lost));
            });
            w
        }
    };
    watcher.start().map_err(|e| (1, e.to_string()))?;
    Ok(watcher)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = Mode::parse(&args) else {
        eprintln!(
            "usage: forward_ports PID NETNS | forward_ports --connect SOCKET --pid PID [NETNS]"
        );
        std::process::exit(2);
    };
    // Where to forward from: None to report only.
    let netns = match &mode {
        Mode::Local { netns, .. } => Some(netns.clone()),
        Mode::Connect { netns, .. } => netns.clone(),
    };
    let (tx, rx) = mpsc::channel();
    let _watcher = match watcher(&mode, tx) {
        Ok(w) => w,
        Err((status, e)) => {
            eprintln!("forward_ports: {e}");
            std::process::exit(status);
        }
    };
    println!("ready");
    let mut forwards: HashMap<u16, Forward> = HashMap::new();
    for message in rx {
        let change = match message {
            Message::Change(change) => change,
            Message::Lost(lost) => {
                println!("lost {lost}");
                continue;
            }
        };
        let Some(netns) = &netns else {
            match change {
                PortChange::Opened(p) if p.proto == Proto::Tcp => {
                    println!("opened {}", std::net::SocketAddr::new(p.address, p.port));
                }
                PortChange::Closed(p) if p.proto == Proto::Tcp => {
                    println!("closed {}", std::net::SocketAddr::new(p.address, p.port));
                }
                _ => {}
            }
            continue;
        };
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
