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

/// The eBPF backend starts without aya's parse of the whole kernel BTF
/// (a 34 MiB start-up peak, over twice the daemon's steady size): its
/// loader is made on a thread that Landlock forbids to read files. That
/// thread must be gone by the ready line, and the restriction with it:
/// the daemon still reads /proc to name owners.
#[test]
fn ebpf_start_up_peak_stays_small_and_no_thread_stays_restricted() {
    let watcher = Watcher::start(&[]);
    assert_eq!(watcher.ready["backend"], "ebpf");
    // The BTF tracepoint loaded from the stand-in, and the owner's story
    // comes from /proc: the reading thread is not the restricted one.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let opened = watcher.expect("open", Duration::from_secs(5), |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    assert_eq!(opened["pid"], std::process::id());
    assert!(
        opened["context"]["ancestry"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{opened}"
    );
    let pid = watcher.pid();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(comm) = std::fs::read_to_string(task.unwrap().path().join("comm")) else {
            continue; // the thread ended meanwhile
        };
        // Thread names are cut to 15 bytes.
        assert_ne!(
            comm.trim(),
            "portwatch-loade",
            "the loader thread outlived the load"
        );
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line");
    // Steady size is about 16 MiB; aya's parse added 18 MiB on top.
    assert!(peak_kib < 24 * 1024, "start-up peak {peak_kib} KiB");
}
