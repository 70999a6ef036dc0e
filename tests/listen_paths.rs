//! listen() by paths the native syscall's exit does not see: io_uring's
//! `IORING_OP_LISTEN` (issued inline, by an io-wq worker, with its
//! completion skipped) and the 32-bit syscall of a 64-bit process. Each is
//! reported at once with its real port, bound or not, under the caller's
//! pid; one that fails reports nothing.

use std::process::Command;

use crate::support::{EVENT_TIMEOUT, Helper, Watcher, as_nobody, helper_path, is_event};

/// Runs tests/helpers/listen_paths.py VIA MODE; expects the listener it
/// opens reported before it closes it (not at the close, not by a
/// resync), under the helper's pid, and its close after.
fn reported_at_once(via: &str, mode: &str) {
    let mut cmd = Command::new("python3");
    reported_at_once_by(&mut cmd, via, mode);
}

/// The same, run by `cmd` (python3 or a wrapper of it).
fn reported_at_once_by(cmd: &mut Command, via: &str, mode: &str) {
    let address = if mode.starts_with("bound") {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::command(cmd.args(["-u", &helper_path("listen_paths.py"), via, mode]));
    let port: u16 = helper.read_value("port").parse().unwrap();
    let opened = watcher.expect(&format!("the {via} {mode} listen"), EVENT_TIMEOUT, |v| {
        is_event(v, "opened", address, port)
    });
    assert_eq!(opened["pid"], helper.pid(), "{opened}");
    assert_eq!(opened["source"], "ebpf", "{opened}");
    helper.send("close");
    assert_eq!(helper.read_line(), "closed");
    watcher.expect("its close", EVENT_TIMEOUT, |v| {
        is_event(v, "closed", address, port)
    });
}

/// The same for a listen() that fails: the listener that listens is
/// reported once, opened then closed, and the failed one not at all.
fn failed_reports_nothing(via: &str) {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::script("listen_paths.py", &[via, "failed"]);
    let line = helper.read_value("failed");
    let (errno, port) = line.split_once(" port ").unwrap();
    assert_eq!(errno, "EADDRINUSE");
    let port: u16 = port.parse().unwrap();
    let seen = watcher.fence();
    let ours: Vec<&str> = seen
        .iter()
        .filter(|v| v["address"] == "127.0.0.1" && v["port"] == port)
        .map(|v| v["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ours, ["opened"], "only the listener that listens: {seen:?}");
    helper.send("close");
    assert_eq!(helper.read_line(), "closed");
    let rest = watcher.until_closed("127.0.0.1", port);
    let closes = rest
        .iter()
        .filter(|v| is_event(v, "closed", "127.0.0.1", port))
        .count();
    assert_eq!(closes, 1, "{rest:?}");
}

#[test]
fn an_io_uring_listen_is_reported_at_once() {
    reported_at_once("uring", "bound");
}

#[test]
fn an_io_uring_listen_run_by_a_worker_is_reported_at_once() {
    reported_at_once("uring-async", "bound");
}

#[test]
fn an_io_uring_listen_whose_completion_is_skipped_is_reported_at_once() {
    reported_at_once("uring-skip", "bound");
}

#[test]
fn an_io_uring_listen_without_bind_reports_the_real_port() {
    reported_at_once("uring", "unbound");
}

#[test]
fn an_io_uring_listen_that_fails_reports_nothing() {
    failed_reports_nothing("uring");
}

#[test]
fn a_32_bit_listen_is_reported_at_once() {
    reported_at_once("compat", "bound");
}

#[test]
fn a_32_bit_listen_without_bind_reports_the_real_port() {
    reported_at_once("compat", "unbound");
}

#[test]
fn a_32_bit_listen_that_fails_reports_nothing() {
    failed_reports_nothing("compat");
}

/// An unprivileged user makes a socket, moves to a network namespace of
/// its own, then binds it and listens through io_uring: the listener is in
/// the namespace the socket was made in, where it is looked for, and is
/// reported at once, not by a resync.
#[test]
fn an_io_uring_listen_after_its_caller_left_the_sockets_namespace_is_reported_at_once() {
    reported_at_once_by(
        &mut as_nobody("/usr/bin/python3"),
        "uring",
        "bound-after-leaving",
    );
}

/// The state change starts the reader's wake-up with an empty record
/// before the confirmation sends the open: the reader skips it, counts
/// nothing malformed, and still reports the open (once) and its close.
#[test]
fn the_early_wake_up_is_read_as_nothing() {
    use portwatch::{Change, Monitor, MonitorConfig, MonitorEvent};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut monitor = Monitor::start(MonitorConfig::default()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut next_of_ours = async |change| loop {
            let ev = tokio::time::timeout(EVENT_TIMEOUT, monitor.next())
                .await
                .expect("an event in time")
                .unwrap();
            if let MonitorEvent::Port(p) = ev
                && p.listener.port == port
            {
                assert_eq!(p.change, change, "{p:?}");
                return;
            }
        };
        next_of_ours(Change::Opened).await;
        drop(listener);
        next_of_ours(Change::Closed).await;
        assert_eq!(monitor.stats().malformed, 0);
    });
}
