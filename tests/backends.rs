//! The procfs polling backend, chosen or fallen back to.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::TcpListener,
    process::{Command, Stdio},
    time::Duration,
};

use crate::support::{Watcher, is_event};

#[test]
fn procfs_backend_reports_changes_at_its_interval() {
    let watcher = Watcher::start(&["--backend", "procfs", "--interval", "100ms"]);
    assert_eq!(watcher.ready["backend"], "procfs");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let opened = watcher.expect("polled open", Duration::from_secs(3), |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    assert_eq!(opened["source"], "procfs");
    assert_eq!(opened["pid"], std::process::id());
    drop(l);
    let closed = watcher.expect("polled close", Duration::from_secs(3), |v| {
        is_event(v, "closed", "127.0.0.1", port)
    });
    assert_eq!(closed["source"], "procfs");
}

#[test]
fn auto_falls_back_to_procfs_with_one_warning() {
    let mut child = Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(crate::support::BIN)
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("\"ready\""))
        .expect("a ready line");
    crate::support::signal(child.id(), crate::support::Signal::Term);
    assert!(child.wait().unwrap().success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(ready.contains("\"backend\":\"procfs\""), "{ready}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("portwatch: warning: eBPF unavailable"),
        "{err}"
    );
}
