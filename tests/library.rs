//! The library API: PortWatcher with a callback, and the event stream.

use std::{
    io::Read as _,
    net::{TcpListener, TcpStream},
    pin::Pin,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use portwatch::{
    EngineConfig, Error, Filter, Proto,
    watcher::{Port, PortChange, PortWatcher, State, watch},
};

use crate::support::{Helper, NetNs};

#[test]
fn port_watcher_calls_back_for_this_process() {
    let (tx, rx) = mpsc::channel();
    let mut watcher = PortWatcher::new(std::process::id(), move |change| {
        let _ = tx.send(change);
    })
    .unwrap();
    watcher.start().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = Port {
        port: listener.local_addr().unwrap().port(),
        pid: std::process::id(),
        address: "127.0.0.1".parse().unwrap(),
        state: State::Open,
        proto: Proto::Tcp,
        // On 127.0.0.1: only this namespace reaches it, whatever the rules.
        exposure: Some(portwatch::exposure::Exposure::Loopback),
        context: None,
    };
    // Equal but for the owner's context, which names this process.
    let next = |what| loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(PortChange::Opened(p) | PortChange::Closed(p))
                if PortChange::Opened(Port {
                    context: None,
                    ..p.clone()
                }) == what
                    || PortChange::Closed(Port {
                        context: None,
                        ..p.clone()
                    }) == what =>
            {
                let ctx = p.context.expect("the owner's context");
                assert_eq!(ctx.ancestry[0].pid, std::process::id());
                return;
            }
            Ok(_) => continue,
            Err(e) => panic!("no {what:?}: {e}"),
        }
    };
    next(PortChange::Opened(port.clone()));
    drop(listener);
    next(PortChange::Closed(Port {
        state: State::Closed,
        ..port
    }));
    watcher.stop();
}

/// Listens on 127.0.0.1 port 0, says the port, and waits; `close` closes
/// it; exits when stdin closes.
const LISTENER: &str = r#"
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1])
for line in sys.stdin:
    s.close()
    print("closed")
"#;

/// The next change the callback got, within a generous time.
fn next_change(rx: &mpsc::Receiver<PortChange>) -> PortChange {
    rx.recv_timeout(Duration::from_secs(10)).expect("a change")
}

/// The Go package's v3: several trees, added and removed while running.
#[test]
fn pids_are_added_and_removed_while_watching() {
    let mut first = Helper::spawn(LISTENER);
    let first_port: u16 = first.read_value("port").parse().unwrap();
    let (tx, rx) = mpsc::channel();
    let mut watcher = PortWatcher::new(first.pid(), move |c| {
        let _ = tx.send(c);
    })
    .unwrap();
    watcher.start().unwrap();
    match next_change(&rx) {
        PortChange::Opened(p) => assert_eq!((p.port, p.state.as_str()), (first_port, "open")),
        other => panic!("{other:?}"),
    }
    // A second tree, with a listener already open: reported when added.
    let mut second = Helper::spawn(LISTENER);
    let second_port: u16 = second.read_value("port").parse().unwrap();
    watcher.add_pid(second.pid()).unwrap();
    match next_change(&rx) {
        PortChange::Opened(p) => assert_eq!((p.port, p.pid), (second_port, second.pid())),
        other => panic!("{other:?}"),
    }
    // The first tree removed: its port is closed to this watcher, and
    // its later changes are not reported.
    watcher.remove_pid(first.pid()).unwrap();
    match next_change(&rx) {
        PortChange::Closed(p) => assert_eq!((p.port, p.state.as_str()), (first_port, "closed")),
        other => panic!("{other:?}"),
    }
    first.send("close");
    assert_eq!(first.read_line(), "closed");
    // The second tree is still watched: its close arrives, and nothing
    // of the first came before it.
    second.send("close");
    assert_eq!(second.read_line(), "closed");
    match next_change(&rx) {
        PortChange::Closed(p) => assert_eq!(p.port, second_port),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        watcher.add_pid(4_194_305),
        Err(Error::NoSuchProcess(_))
    ));
    watcher.stop();
}

#[test]
fn a_namespace_is_named_as_ip_netns_names_it_or_by_inode() {
    let ns = NetNs::new("lib");
    let me = std::process::id();
    assert!(PortWatcher::with_namespace(me, &ns.name, |_| {}).is_ok());
    assert!(PortWatcher::with_namespace(me, &ns.inode().to_string(), |_| {}).is_ok());
    match PortWatcher::with_namespace(me, "no-such-namespace", |_| {}) {
        Err(e) => assert!(e.to_string().contains("no network namespace is named")),
        Ok(_) => panic!("an unknown namespace was accepted"),
    }
}

/// The example: a dev server's port in a namespace, forwarded to the
/// host while it is open; the probes it makes first (as Vite does: the
/// port on 0.0.0.0 and ::, opened and closed) start no forward.
#[test]
fn the_forwarding_example_forwards_while_the_port_is_open() {
    let ns = NetNs::new("fwd");
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/forward_ports");
    assert!(
        example.exists(),
        "{} is missing: `cargo test` without a target filter builds the examples",
        example.display()
    );
    // On `go`: probes, then serves `hello` on 127.0.0.1; on `close`:
    // closes, then listens on another port (a fence: the example's next
    // line is about that one).
    let server = r#"
import socket, sys, threading
sys.stdin.readline()
probe = socket.socket(); probe.bind(("0.0.0.0", 0)); port = probe.getsockname()[1]; probe.listen(); probe.close()
probe6 = socket.socket(socket.AF_INET6); probe6.bind(("::", port)); probe6.listen(); probe6.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen()
def serve():
    try:
        while True:
            c, _ = s.accept(); c.sendall(b"hello"); c.close()
    except OSError:
        pass
threading.Thread(target=serve, daemon=True).start()
print("port", port)
sys.stdin.readline()
# shutdown() wakes the accept() above; close() alone would leave the
# socket listening until that accept() returned.
s.shutdown(socket.SHUT_RDWR); s.close()
other = socket.socket(); other.bind(("127.0.0.1", 0)); other.listen()
print("closed", other.getsockname()[1])
sys.stdin.read()
"#;
    let mut dev = Helper::command_in_netns(&ns.name, server);
    let mut fwd = Helper::command(
        Command::new(&example)
            .args([&dev.pid().to_string(), &ns.name])
            .stderr(Stdio::inherit()),
    );
    assert_eq!(fwd.read_line(), "ready");
    dev.send("go");
    let port: u16 = dev.read_value("port").parse().unwrap();
    assert_eq!(fwd.read_line(), format!("forwarding {port}"));
    let mut got = String::new();
    TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "hello");
    dev.send("close");
    let other: u16 = dev.read_value("closed").parse().unwrap();
    assert_eq!(fwd.read_line(), format!("stopped {port}"));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_eq!(fwd.read_line(), format!("forwarding {other}"));
}

#[test]
fn port_watcher_refuses_an_unknown_pid() {
    match PortWatcher::new(4_194_305, |_| {}) {
        Err(Error::NoSuchProcess(4_194_305)) => {}
        other => panic!("expected NoSuchProcess, got {:?}", other.err()),
    }
}

#[test]
fn stream_yields_events() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = EngineConfig {
            filter: Filter {
                pid: Some(std::process::id()),
                ..Filter::default()
            },
            ..EngineConfig::default()
        };
        let mut stream = watch(config).unwrap();
        let listener = TcpListener::bind("[::1]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let next = async {
            loop {
                let ev = std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(Pin::new(&mut stream), cx)
                })
                .await
                .expect("stream ended")
                .expect("watch error");
                if ev.listener.port == port {
                    return ev;
                }
            }
        };
        let ev = tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .expect("an event within 1 s");
        assert_eq!(ev.listener.pid, std::process::id());
        assert_eq!(ev.change, portwatch::Change::Opened);
    });
}

/// A watcher not started yet keeps its last pid: removing it is refused,
/// and the watcher still follows a tree (it would watch every process
/// otherwise).
#[test]
fn the_last_pid_of_a_watcher_not_started_stays() {
    let me = std::process::id();
    let mut watcher = PortWatcher::new(me, |_| {}).unwrap();
    assert!(matches!(watcher.remove_pid(me), Err(Error::Refused(_))));
    watcher.add_pid(1).unwrap();
    watcher.remove_pid(me).unwrap();
}
