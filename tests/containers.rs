//! Containers named from real cgroups: a process moved into a cgroup laid
//! out as Docker lays it out, with the name Docker keeps on disk, appears
//! with its container in live events, the baseline and `list`.

use std::{fs, path::PathBuf, process::Command, time::Duration};

use serde_json::Value;

use crate::support::{BIN, EVENT_TIMEOUT, Helper, Watcher, cgroup2_root, is_event};

/// Moves itself into the cgroup directory argv[1], then listens.
const JOIN_AND_LISTEN: &str = r#"
import os, socket, sys
open(os.path.join(sys.argv[1], "cgroup.procs"), "w").write(str(os.getpid()))
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1])
sys.stdin.readline()
"#;

/// What a test made, removed again even when it fails. A cgroup goes
/// with the cgroups made below it (rmdir, depth first: a cgroup's files
/// cannot be removed, only the empty directory).
struct Made(Vec<PathBuf>);

fn remove_cgroup(dir: &std::path::Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

impl Drop for Made {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            if p.starts_with("/sys/fs/cgroup") {
                remove_cgroup(p);
            } else {
                let _ = fs::remove_dir(p).or_else(|_| fs::remove_dir_all(p));
            }
        }
    }
}

#[test]
fn a_docker_container_is_named_everywhere() {
    let id = format!(
        "{:0>64x}",
        0xfeed_0000_0000_u64 + u64::from(std::process::id())
    );
    let scope = cgroup2_root().join(format!("system.slice/docker-{id}.scope"));
    let config_dir = PathBuf::from("/var/lib/docker/containers").join(&id);
    let mut made = Made(Vec::new());
    for dir in [scope.parent().unwrap(), &scope] {
        if !dir.exists() {
            fs::create_dir(dir).unwrap();
            made.0.push(dir.to_path_buf());
        }
    }
    for dir in ["/var/lib/docker", "/var/lib/docker/containers"] {
        if !PathBuf::from(dir).exists() {
            fs::create_dir(dir).unwrap();
            made.0.push(dir.into());
        }
    }
    fs::create_dir(&config_dir).unwrap();
    made.0.push(config_dir.clone());
    fs::write(
        config_dir.join("config.v2.json"),
        r#"{"ID":"x","Name":"/pwtest-web"}"#,
    )
    .unwrap();
    made.0.push(config_dir.join("config.v2.json"));

    let watcher = Watcher::start(&[]);
    let mut helper = Helper::script_inline(JOIN_AND_LISTEN, &[scope.to_str().unwrap()]);
    let port: u16 = helper.read_value("port").parse().unwrap();
    let want = serde_json::json!({"runtime": "docker", "id": id, "name": "pwtest-web"});
    let live = watcher.expect("its open", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    assert_eq!(live["container"], want, "{live}");
    let out = Command::new(BIN).args(["list", "--json"]).output().unwrap();
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let listed = list.iter().find(|v| v["port"] == port).unwrap();
    assert_eq!(listed["container"], want, "{listed}");
    // A process of the host has none.
    let host = list.iter().find(|v| v["pid"] == std::process::id());
    if let Some(h) = host {
        assert_eq!(h["container"], Value::Null);
    }
    drop(helper);
    // The cgroup can go once the helper is reaped (its Drop waits).
}

/// A running systemd-nspawn, ended even when the test fails: SIGTERM, and
/// nspawn ends the container with SIGKILL (--kill-signal).
struct Nspawn(std::process::Child);

impl Drop for Nspawn {
    fn drop(&mut self) {
        crate::support::signal(self.0.id(), crate::support::Signal::Term);
        let _ = self.0.wait();
    }
}

/// A real container: systemd-nspawn (Debian's systemd-container) running
/// busybox from a root filesystem made here, inside the cgroup systemd
/// gives such a container (`machine.slice/systemd-nspawn@NAME.service`;
/// the test places it there, as no systemd runs on a test host).
#[test]
fn an_nspawn_container_is_named() {
    let name = format!("pwtest{}", std::process::id());
    let root = std::env::temp_dir().join(format!("portwatch-rootfs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for dir in ["bin", "usr/bin", "etc", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is needed");
    fs::write(root.join("etc/os-release"), "ID=portwatch-test\n").unwrap();
    let slice = cgroup2_root().join("machine.slice");
    let unit = slice.join(format!("systemd-nspawn@{name}.service"));
    let mut made = Made(Vec::new());
    for dir in [&slice, &unit] {
        if !dir.exists() {
            fs::create_dir(dir).unwrap();
            made.0.push(dir.clone());
        }
    }
    let port = crate::support::free_port();
    let watcher = Watcher::start(&[]);
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec systemd-nspawn --quiet --register=no --keep-unit --kill-signal=SIGKILL -D {} -M {name} /bin/busybox nc -l -p {port}",
        unit.display(),
        root.display()
    );
    let container = Nspawn(
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("systemd-nspawn (systemd-container) is needed"),
    );
    let opened = watcher.expect("the container's listener", Duration::from_secs(30), |v| {
        v["event"] == "opened" && v["port"] == port
    });
    assert_eq!(
        opened["container"],
        serde_json::json!({"runtime": "nspawn", "id": name}),
        "{opened}"
    );
    assert_eq!(opened["comm"], "busybox");
    drop(container);
    watcher.expect("its close", EVENT_TIMEOUT, |v| {
        v["event"] == "closed" && v["port"] == port
    });
    let _ = fs::remove_dir_all(&root);
}
