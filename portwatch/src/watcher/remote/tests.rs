//! A connected watcher against a fake daemon: a `UnixListener` in a
//! temporary directory that the test drives line by line.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::{UnixListener, UnixStream},
    path::PathBuf,
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use super::Backoff;
use crate::{
    Error,
    event::{Change, PortEvent, Proto, Source},
    watcher::{Lost, PortWatcher, view::tests::listener, view::tests::said},
    wire::Line,
};

const PID: u32 = 42;
const WAIT: Duration = Duration::from_secs(10);

/// A daemon's socket that the test answers itself.
struct Fake {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl Fake {
    fn new(tag: &str) -> Fake {
        let dir =
            std::env::temp_dir().join(format!("portwatch-remote-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("daemon.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        Fake {
            dir,
            path,
            listener,
        }
    }

    /// The next client and the request line it sent.
    fn accept(&self) -> (UnixStream, String) {
        let deadline = Instant::now() + WAIT;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no client connected");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut request = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut request)
            .unwrap();
        (stream, request)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn send(conn: &mut UnixStream, lines: &[String]) {
    for l in lines {
        conn.write_all(format!("{l}\n").as_bytes()).unwrap();
    }
}

fn port(change: Change, port: u16, source: Source) -> String {
    Line::from(&PortEvent {
        change,
        listener: listener(Proto::Tcp, port, PID),
        ts: chrono::DateTime::UNIX_EPOCH,
        source,
    })
    .to_json()
}

fn base(p: u16) -> String {
    port(Change::Opened, p, Source::Baseline)
}

fn ready() -> String {
    Line::ready("ebpf", 0, chrono::DateTime::UNIX_EPOCH).to_json()
}

fn next<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(WAIT).expect("a callback")
}

/// A connected watcher whose callbacks go to the channels returned.
fn watcher(fake: &Fake) -> (PortWatcher, Receiver<String>, Receiver<Lost>) {
    let (tx, changes) = mpsc::channel();
    let (lost_tx, lost) = mpsc::channel();
    let mut w = PortWatcher::connect(&fake.path, PID, move |c| {
        let _ = tx.send(said(&c));
    })
    .unwrap();
    w.on_lost(move |l| {
        let _ = lost_tx.send(l);
    });
    (w, changes, lost)
}

/// Starts `w` while the fake answers its first connection with `lines`.
fn start(w: &mut PortWatcher, fake: &Fake, lines: Vec<String>) -> UnixStream {
    std::thread::scope(|s| {
        let served = s.spawn(|| {
            let (mut conn, request) = fake.accept();
            assert_eq!(request, format!("{{\"pid\":{PID}}}\n"));
            send(&mut conn, &lines);
            conn
        });
        w.start().unwrap();
        served.join().unwrap()
    })
}

#[test]
fn a_connected_watcher_reports_the_baseline_live_lines_and_the_difference_after_a_reconnection() {
    let fake = Fake::new("reconnect");
    let (mut w, changes, lost) = watcher(&fake);
    let mut conn = start(&mut w, &fake, vec![base(80), base(81), ready()]);
    // Reported before start() returned.
    let baseline: Vec<String> = changes.try_iter().collect();
    assert_eq!(baseline, ["opened tcp 80 pid 42", "opened tcp 81 pid 42"]);
    send(
        &mut conn,
        &[
            port(Change::Opened, 82, Source::Ebpf),
            r#"{"event":"something_new"}"#.into(),
            port(Change::Closed, 80, Source::Ebpf),
        ],
    );
    assert_eq!(next(&changes), "opened tcp 82 pid 42");
    assert_eq!(next(&changes), "closed tcp 80 pid 42");

    // The daemon restarts: the connection ends, and the new one's
    // baseline is reconciled: 82 closed meanwhile, 83 opened, 81 stays.
    drop(conn);
    match next(&lost) {
        Lost::Disconnected { reason } => {
            assert!(reason.contains("closed the connection"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let (mut conn, request) = fake.accept();
    assert_eq!(request, "{\"pid\":42}\n");
    send(&mut conn, &[base(81), base(83), ready()]);
    assert_eq!(next(&changes), "closed tcp 82 pid 42");
    assert_eq!(next(&changes), "opened tcp 83 pid 42");

    // The daemon says this client fell behind: the same reconciliation.
    send(
        &mut conn,
        &[
            Line::lost(5, chrono::DateTime::UNIX_EPOCH).to_json(),
            base(83),
            ready(),
            // A fence: the next change is this one, nothing before it.
            port(Change::Opened, 84, Source::Ebpf),
        ],
    );
    assert_eq!(next(&lost), Lost::Missed { events: 5 });
    assert_eq!(next(&changes), "closed tcp 81 pid 42");
    assert_eq!(next(&changes), "opened tcp 84 pid 42");

    // A malformed line: said, and a fresh connection instead.
    send(&mut conn, &["{\"event\":\"opened\",".into()]);
    match next(&lost) {
        Lost::Disconnected { reason } => assert!(reason.contains("cannot read"), "{reason}"),
        other => panic!("{other:?}"),
    }
    drop(conn);
    let (mut conn, _) = fake.accept();
    send(
        &mut conn,
        &[
            base(83),
            base(84),
            ready(),
            port(Change::Closed, 84, Source::Ebpf),
        ],
    );
    // No open again of what is still open: the close is next.
    assert_eq!(next(&changes), "closed tcp 84 pid 42");

    // No daemon at all for a while: each failed attempt is said, with
    // the growing delay; stop() ends the waiting.
    drop(fake);
    drop(conn);
    assert!(matches!(next(&lost), Lost::Disconnected { .. }));
    let mut delays = Vec::new();
    for _ in 0..2 {
        match next(&lost) {
            Lost::Reconnecting { reason, retry_in } => {
                assert!(reason.contains("cannot connect"), "{reason}");
                delays.push(retry_in);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(delays[1] > delays[0], "{delays:?}");
    w.stop();
    assert!(changes.try_recv().is_err());
}

#[test]
fn a_refusal_is_the_error_of_start_which_may_be_called_again() {
    let fake = Fake::new("refused");
    let (mut w, changes, _lost) = watcher(&fake);
    let e = std::thread::scope(|s| {
        s.spawn(|| {
            let (mut conn, _) = fake.accept();
            let refusal =
                Line::refusal("process 1 belongs to another user: only root may watch it");
            send(&mut conn, &[refusal.to_json()]);
        });
        w.start().unwrap_err()
    });
    assert!(matches!(e, Error::DaemonRefused { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "the portwatch daemon at {} refused: process 1 belongs to another user: only root may watch it",
            fake.path.display()
        )
    );
    // Started again, with the same callbacks.
    let _conn = start(&mut w, &fake, vec![base(80), ready()]);
    assert_eq!(next(&changes), "opened tcp 80 pid 42");
    w.stop();
}

#[test]
fn a_missing_socket_and_a_peer_that_closes_early_fail_the_start() {
    let fake = Fake::new("missing");
    let missing = fake.dir.join("none.sock");
    let mut w = PortWatcher::connect(&missing, PID, |_| {}).unwrap();
    match w.start() {
        Err(e @ Error::DaemonUnreachable { .. }) => {
            let e = e.to_string();
            assert!(e.contains(missing.to_str().unwrap()), "{e}");
            assert!(e.contains("No such file"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // Closed before its ready line.
    let (mut w, _, _) = watcher(&fake);
    let e = std::thread::scope(|s| {
        s.spawn(|| {
            let (mut conn, _) = fake.accept();
            send(&mut conn, &[base(80)]);
        });
        w.start().unwrap_err()
    });
    assert!(e.to_string().contains("closed the connection"), "{e}");
    assert!(matches!(
        PortWatcher::connect(&fake.path, 0, |_| {}),
        Err(Error::NoSuchProcess(0))
    ));
}

#[test]
fn a_line_too_long_is_cut_off_and_the_watcher_reconnects() {
    let fake = Fake::new("long");
    let (mut w, changes, lost) = watcher(&fake);
    let mut conn = start(&mut w, &fake, vec![base(80), ready()]);
    assert_eq!(next(&changes), "opened tcp 80 pid 42");
    // Two megabytes without a newline: the watcher stops reading at 1 MiB.
    let endless = vec![b'x'; 2 << 20];
    let _ = conn.write_all(&endless);
    match next(&lost) {
        Lost::Disconnected { reason } => {
            assert!(reason.contains("longer than 1048576 bytes"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    drop(conn);
    let (mut conn, _) = fake.accept();
    send(&mut conn, &[ready()]);
    assert_eq!(next(&changes), "closed tcp 80 pid 42");
    w.stop();
}

#[test]
fn a_connected_watcher_follows_one_tree() {
    let fake = Fake::new("one-tree");
    let (mut w, _, _) = watcher(&fake);
    for e in [w.add_pid(1), w.remove_pid(PID)] {
        match e {
            Err(Error::Refused(why)) => assert!(why.contains("one tree"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    let _conn = start(&mut w, &fake, vec![ready()]);
    assert!(matches!(w.add_pid(1), Err(Error::Refused(_))));
    w.stop();
}

#[test]
fn the_delay_doubles_up_to_five_seconds_and_starts_over() {
    let mut b = Backoff::new();
    let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    b.reset();
    assert_eq!(b.next_delay(), Duration::from_millis(100));
}
