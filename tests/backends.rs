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
/// loader is made on a thread in a mount namespace of its own, where the
/// kernel's BTF reads empty. That namespace must not outlive the thread,
/// nor reach the host or the daemon's other threads.
#[test]
fn ebpf_start_up_peak_stays_small_and_hides_nothing_from_the_host() {
    let btf = "/sys/kernel/btf/vmlinux";
    let watcher = Watcher::start(&[]);
    assert_eq!(watcher.ready["backend"], "ebpf");
    // The BTF tracepoint loaded from the stand-in: a listener is reported.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    watcher.expect("open", Duration::from_secs(5), |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    let pid = watcher.pid();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("mountinfo");
        let Ok(mounts) = std::fs::read_to_string(&path) else {
            continue; // the thread ended meanwhile
        };
        assert!(
            !mounts.contains(btf),
            "{} has {btf} mounted over",
            path.display()
        );
    }
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host.contains(btf), "the host has {btf} mounted over");
    assert!(std::fs::metadata(btf).unwrap().len() > 0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line");
    // Steady size is about 16 MiB; aya's parse added 18 MiB on top.
    assert!(peak_kib < 24 * 1024, "start-up peak {peak_kib} KiB");
}
