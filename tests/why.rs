//! Why a listener is there: real processes started the ways users start
//! them (a systemd unit's cgroup, a git work tree, a deleted executable,
//! Debian's python3, `setsid` in a tmux pane, a double-forking daemon, a
//! server whose launcher exits), each told in the `context` of its
//! events and of `list --json`; and a user who plants traps where
//! portwatch looks for a git work tree.

use std::{fs, os::unix::fs::PermissionsExt as _, path::PathBuf, process::Command};

use serde_json::{Value, json};

use crate::support::{
    BIN, EVENT_TIMEOUT, Helper, Watcher, as_nobody, cgroup2_root, file_until, helper_path, is_event,
};

const PYTHON: &str = "/usr/bin/python3";

fn why(args: &[&str]) -> Helper {
    Helper::command(
        Command::new(PYTHON)
            .arg("-u")
            .arg(helper_path("why.py"))
            .args(args),
    )
}

/// The `opened` line of 127.0.0.1:`port`, and its context.
fn opened(w: &Watcher, port: u16) -> (Value, Value) {
    let v = w.expect("its open", EVENT_TIMEOUT, |v| {
        is_event(v, "opened", "127.0.0.1", port)
    });
    let ctx = v["context"].clone();
    assert!(ctx.is_object(), "no context: {v}");
    (v, ctx)
}

fn ancestry_pids(ctx: &Value) -> Vec<u64> {
    ctx["ancestry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pid"].as_u64().unwrap())
        .collect()
}

/// Directories and cgroups a test made, removed even when it fails.
struct Made(Vec<PathBuf>);

impl Drop for Made {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = fs::remove_dir(p).or_else(|_| fs::remove_dir_all(p));
        }
    }
}

impl Made {
    fn dir(&mut self, p: PathBuf) -> PathBuf {
        if !p.exists() {
            fs::create_dir(&p).unwrap();
            self.0.push(p.clone());
        }
        p
    }
}

#[test]
fn system_and_user_units_are_named_from_the_cgroup() {
    let tag = format!("pwtest-why-{}", std::process::id());
    let root = cgroup2_root();
    let mut made = Made(Vec::new());
    let system = made.dir(root.join("system.slice"));
    let system_unit = made.dir(system.join(format!("{tag}.service")));
    let mut user = root.clone();
    for part in [
        "user.slice",
        "user-1000.slice",
        "user@1000.service",
        "app.slice",
    ] {
        user = made.dir(user.join(part));
    }
    let user_unit = made.dir(user.join(format!("{tag}.service")));

    let w = Watcher::start(&[]);
    let mut a = why(&["cgroup", system_unit.to_str().unwrap()]);
    let port_a: u16 = a.read_value("port").parse().unwrap();
    let (_, ctx) = opened(&w, port_a);
    assert_eq!(
        ctx["source"],
        json!({"kind": "systemd", "name": format!("{tag}.service"), "trusted": true}),
        "{ctx}"
    );
    let mut b = why(&["cgroup", user_unit.to_str().unwrap()]);
    let port_b: u16 = b.read_value("port").parse().unwrap();
    let (_, ctx) = opened(&w, port_b);
    assert_eq!(
        ctx["source"],
        json!({"kind": "systemd", "name": format!("{tag}.service"), "user": "1000", "trusted": false}),
        "{ctx}"
    );
    // `list --json` tells the same story.
    let out = Command::new(BIN).args(["list", "--json"]).output().unwrap();
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let listed = list.iter().find(|v| v["port"] == port_b).unwrap();
    assert_eq!(listed["context"]["source"], ctx["source"], "{listed}");
    drop((a, b));
}

#[test]
fn a_git_work_tree_and_its_branch_are_read_from_its_files() {
    let dir = std::env::temp_dir().join(format!("pwtest-why-git-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join(".git")).unwrap();
    fs::create_dir_all(dir.join("src/deep")).unwrap();
    fs::write(dir.join(".git/HEAD"), "ref: refs/heads/feature/why\n").unwrap();
    let w = Watcher::start(&[]);
    let cwd = dir.join("src/deep");
    let mut h = why(&["cwd", cwd.to_str().unwrap()]);
    let port: u16 = h.read_value("port").parse().unwrap();
    let (_, ctx) = opened(&w, port);
    assert_eq!(ctx["cwd"], cwd.to_str().unwrap());
    assert_eq!(
        ctx["git"],
        json!({"root": dir.to_str().unwrap(), "branch": "feature/why"}),
        "{ctx}"
    );
    // The executable is Debian's python, as `dpkg -S` says.
    let exe = fs::canonicalize(PYTHON).unwrap();
    let out = Command::new("dpkg")
        .arg("-S")
        .arg(&exe)
        .output()
        .expect("dpkg");
    let said = String::from_utf8_lossy(&out.stdout);
    let package = said.split(": ").next().unwrap().trim();
    assert!(!package.is_empty(), "dpkg -S {}: {said}", exe.display());
    assert_eq!(ctx["exe"], exe.to_str().unwrap());
    assert_eq!(ctx["package"], package, "{ctx}");
    assert!(ctx.get("exe_deleted").is_none(), "{ctx}");
    drop(h);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_deleted_executable_is_told_and_owned_by_no_package() {
    let dir = std::env::temp_dir().join(format!("pwtest-why-exe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("py");
    fs::copy(fs::canonicalize(PYTHON).unwrap(), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let w = Watcher::start(&[]);
    let mut h = Helper::command(
        Command::new(&copy)
            .arg("-u")
            .arg(helper_path("why.py"))
            .arg("later"),
    );
    let _pid = h.read_value("ready");
    fs::remove_file(&copy).unwrap();
    h.send("listen");
    let port: u16 = h.read_value("port").parse().unwrap();
    let (_, ctx) = opened(&w, port);
    assert_eq!(ctx["exe"], copy.to_str().unwrap(), "{ctx}");
    assert_eq!(ctx["exe_deleted"], true, "{ctx}");
    assert_eq!(ctx["package"], Value::Null, "{ctx}");
    // `list --hash` hashes the file the process runs, deleted or not.
    let out = Command::new(BIN)
        .args(["list", "--json", "--hash"])
        .output()
        .unwrap();
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let listed = list.iter().find(|v| v["port"] == port).unwrap();
    let sum = Command::new("sha256sum")
        .arg(fs::canonicalize(PYTHON).unwrap())
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&sum.stdout);
    assert_eq!(
        listed["context"]["exe_sha256"],
        want.split_whitespace().next().unwrap(),
        "{listed}"
    );
    drop(h);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_daemon_is_told_as_it_was_at_listen_time() {
    let w = Watcher::start(&[]);
    // Double fork: when it listens, the middle process is gone already.
    let mut h = why(&["double-fork"]);
    let mid: u64 = h.read_value("mid").parse().unwrap();
    let line = h.read_line();
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts[0], "daemon", "{line}");
    let daemon: u64 = parts[1].parse().unwrap();
    let port: u16 = parts[2].parse().unwrap();
    let (_, ctx) = opened(&w, port);
    let pids = ancestry_pids(&ctx);
    assert_eq!(pids[0], daemon, "{ctx}");
    assert!(!pids.contains(&mid), "{ctx}");
    assert!(!pids.contains(&u64::from(h.pid())), "{ctx}");
    drop(h);

    // Re-parented after it listened: its close still names the launcher.
    let mut r = why(&["reparent"]);
    let launcher = u64::from(r.pid());
    let line = r.read_line();
    let parts: Vec<&str> = line.split(' ').collect();
    let port: u16 = parts[2].parse().unwrap();
    let (_, ctx) = opened(&w, port);
    assert_eq!(ancestry_pids(&ctx)[1], launcher, "{ctx}");
    r.send("exit");
    let closed = w.expect("its close", EVENT_TIMEOUT, |v| {
        is_event(v, "closed", "127.0.0.1", port)
    });
    assert_eq!(closed["context"]["ancestry"], ctx["ancestry"], "{closed}");
}

/// Runs `tmux -L SOCKET ARGS`.
fn tmux(socket: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .args(["-L", socket, "-f", "/dev/null"])
        .args(args)
        .output()
        .expect("tmux")
}

struct TmuxServer(String);

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = tmux(&self.0, &["kill-server"]);
    }
}

#[test]
fn setsid_in_a_tmux_pane_is_a_terminal_story() {
    let tag = format!("pwtest-why-tmux-{}", std::process::id());
    let mut made = Made(Vec::new());
    // A cgroup of no unit, whatever runs the tests.
    let cgroup = made.dir(cgroup2_root().join(&tag));
    let report = std::env::temp_dir().join(format!("{tag}.port"));
    let _ = fs::remove_file(&report);
    let w = Watcher::start(&[]);
    // `setsid -f` forks: the server is re-parented at once and keeps
    // only its environment from the pane (whose shell lives on, in cat).
    let pane = format!(
        "setsid -f {PYTHON} -u {} report {}; exec cat",
        helper_path("why.py"),
        report.display()
    );
    let server = TmuxServer(tag.clone());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec tmux -L {tag} -f /dev/null new-session -d -x 80 -y 24 \"$0\"",
            cgroup.display()
        ))
        .arg(&pane)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = file_until(&report, "the pane's listener", |t| t.ends_with('\n'));
    let (pid, port) = text.trim().split_once(' ').unwrap();
    let (pid, port): (u32, u16) = (pid.parse().unwrap(), port.parse().unwrap());
    let (_, ctx) = opened(&w, port);
    assert_eq!(ctx["source"]["kind"], "terminal", "{ctx}");
    assert_eq!(ctx["source"]["name"], "tmux", "{ctx}");
    assert!(
        ctx["source"]["session"]
            .as_str()
            .is_some_and(|s| s.starts_with('%')),
        "{ctx}"
    );
    crate::support::signal(pid, crate::support::Signal::Kill);
    drop(server);
    let _ = fs::remove_file(&report);
}

/// A user's traps where portwatch looks for a git work tree: a HEAD that
/// is a FIFO (a read would block), a `.git` that links to root's
/// repository, a `gitdir:` file pointing at it. The user's listeners are
/// reported, with no git work tree, and nothing of root's is read.
#[test]
fn planted_git_files_make_portwatch_block_on_nothing_and_read_nothing_of_others() {
    let base = std::env::temp_dir().join(format!("pwtest-why-trap-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    // Root's repository, on a secret branch.
    let secret = base.join("root-repo");
    fs::create_dir_all(secret.join(".git")).unwrap();
    fs::write(secret.join(".git/HEAD"), "ref: refs/heads/root-secret\n").unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    // The user's directories, made by the user.
    let traps = base.join("traps");
    fs::create_dir(&traps).unwrap();
    fs::set_permissions(&traps, fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "cd {t} && mkdir -p fifo/.git link gitdir && mkfifo fifo/.git/HEAD && ln -s {s}/.git link/.git && echo 'gitdir: {s}/.git' > gitdir/.git",
        t = traps.display(),
        s = secret.display()
    );
    crate::support::nobody_sh(&script);
    let w = Watcher::start(&[]);
    for trap in ["fifo", "link", "gitdir"] {
        let dir = traps.join(trap);
        let mut h = Helper::command(
            as_nobody(PYTHON)
                .arg("-u")
                .arg(helper_path("why.py"))
                .args(["cwd", dir.to_str().unwrap()]),
        );
        let port: u16 = h.read_value("port").parse().unwrap();
        let (v, ctx) = opened(&w, port);
        assert!(ctx.get("git").is_none(), "{trap}: {v}");
        assert!(!v.to_string().contains("root-secret"), "{trap}: {v}");
        assert_eq!(ctx["cwd"], dir.to_str().unwrap(), "{trap}: {v}");
    }
    let _ = fs::remove_dir_all(&base);
}

/// A user who names a process `cron` (or sets `SSH_CONNECTION`) gets a
/// story, but not one root vouches for: a rule that knows cron jobs
/// still alerts on the user's listener, and not on root's cron job.
#[test]
fn a_forged_source_is_untrusted_and_known_to_no_rule() {
    let dir = std::env::temp_dir().join(format!("pwtest-why-forged-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    fs::write(
        &rules,
        format!(
            r#"{{"rules":[{}],"known_processes":["source:cron:.*","source:ssh:.*"]}}"#,
            crate::support::rule_with_cooldown(
                "unknown",
                r#"{"type":"UnknownProcessListening","params":null}"#,
                1
            )
        ),
    )
    .unwrap();
    // In a namespace of its own: other tests' listeners would take the
    // rule's cooldown. The daemon's lines are its alerts; the watcher's,
    // the events.
    let ns = crate::support::NetNs::new("forged");
    let inode = ns.inode().to_string();
    let daemon = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        rules.to_str().unwrap(),
        "--netns",
        &inode,
    ]);
    let w = Watcher::start(&["--netns", &inode]);
    let in_ns = |nobody: bool| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns.name]);
        if nobody {
            c.args([
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
            ]);
        }
        c.args([PYTHON, "-u", &helper_path("why.py"), "named-parent", "cron"]);
        Helper::command(&mut c)
    };
    // Root's own process named cron: trusted, known, no alert.
    let mut root_job = in_ns(false);
    let port: u16 = root_job.read_value("port").parse().unwrap();
    let (_, ctx) = opened(&w, port);
    assert_eq!(
        ctx["source"],
        json!({"kind": "cron", "name": "cron", "trusted": true}),
        "{ctx}"
    );
    // User nobody's, under the same name: untrusted, and it alerts.
    let mut forged = in_ns(true);
    let forged_port: u16 = forged.read_value("port").parse().unwrap();
    let (_, ctx) = opened(&w, forged_port);
    assert_eq!(
        ctx["source"],
        json!({"kind": "cron", "name": "cron", "trusted": false}),
        "{ctx}"
    );
    // Root's listen came first: an alert for it would come before this.
    let mut alerts = Vec::new();
    daemon.expect("the alert for nobody's listener", EVENT_TIMEOUT, |v| {
        if v["event"] == "alert" {
            alerts.push(v.clone());
        }
        alerts.iter().any(|a| a["port"] == forged_port)
    });
    assert!(
        alerts.iter().all(|a| a["port"] != port),
        "root's cron job alerted: {alerts:?}"
    );
    drop((root_job, forged));
    let _ = fs::remove_dir_all(&dir);
}
