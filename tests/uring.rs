//! listen() through io_uring (`IORING_OP_LISTEN`), which passes through no
//! syscall tracepoint: reported at once with its port, issued inline or by
//! an io-wq worker, bound or not; a failed one reports nothing.

use crate::support::{EVENT_TIMEOUT, Helper, Watcher, is_event};

/// Runs tests/helpers/uring_listen.py MODE; expects the listener it opens
/// reported before it closes it (not at the close, not by a resync), under
/// the helper's pid, and its close after.
fn reported_at_once(mode: &str, address: &str) {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::script("uring_listen.py", &[mode]);
    let port: u16 = helper.read_value("port").parse().unwrap();
    let opened = watcher.expect(&format!("the {mode} io_uring listen"), EVENT_TIMEOUT, |v| {
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

#[test]
fn an_io_uring_listen_is_reported_at_once() {
    reported_at_once("inline", "127.0.0.1");
}

#[test]
fn an_io_uring_listen_run_by_a_worker_is_reported_at_once() {
    reported_at_once("async", "127.0.0.1");
}

#[test]
fn an_io_uring_listen_without_bind_reports_the_real_port() {
    reported_at_once("unbound", "0.0.0.0");
}

#[test]
fn an_io_uring_listen_that_fails_reports_nothing() {
    let watcher = Watcher::start(&[]);
    let mut helper = Helper::script("uring_listen.py", &["failed"]);
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
