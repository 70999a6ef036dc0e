//! Drives the real `portwatch` binary: start it, wait for its ready line,
//! read its JSON events.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_portwatch");

/// How long an event may take to arrive before a test gives up. Generous,
/// because a loaded CI machine is slow: this is no latency check (the
/// benchmarks measure latency).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long start-up (loading the programs, the procfs scan) may take.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `portwatch watch --json`.
pub struct Watcher {
    child: Child,
    lines: Receiver<Value>,
    /// Lines printed before the ready line.
    pub baseline: Vec<Value>,
    pub ready: Value,
}

impl Watcher {
    /// Starts `portwatch watch --json ARGS` and waits for its ready line.
    pub fn start(args: &[&str]) -> Watcher {
        let mut all = vec!["watch", "--json"];
        all.extend_from_slice(args);
        Self::spawn(&all)
    }

    /// Starts `portwatch ARGS` (which must print JSON lines and a ready
    /// line) and waits for the ready line.
    pub fn spawn(args: &[&str]) -> Watcher {
        Self::spawn_command(Command::new(BIN).args(args))
    }

    /// Like [`Self::spawn`] for a prepared command (environment, a wrapper).
    pub fn spawn_command(cmd: &mut Command) -> Watcher {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portwatch");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("portwatch printed invalid JSON ({e}): {line:?}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut baseline = Vec::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(v) if v["event"] == "ready" => {
                    return Watcher {
                        child,
                        lines,
                        baseline,
                        ready: v,
                    };
                }
                Ok(v) => baseline.push(v),
                Err(_) => {
                    let _ = child.kill();
                    let mut err = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = s.read_to_string(&mut err);
                    }
                    panic!("portwatch never became ready; stderr: {err}");
                }
            }
        }
    }

    /// The next event matching `pred`, skipping others; panics after `timeout`.
    pub fn expect(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {timeout:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("portwatch exited before {what}"),
            }
        }
    }

    /// The next line, if one arrives within `timeout`.
    pub fn next_within(&self, timeout: Duration) -> Option<Value> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Every line up to and including the close of `address:port`.
    pub fn until_closed(&self, address: &str, port: u16) -> Vec<Value> {
        let mut seen = Vec::new();
        self.expect(
            &format!("the close of {address}:{port}"),
            EVENT_TIMEOUT,
            |v| {
                seen.push(v.clone());
                is_event(v, "closed", address, port)
            },
        );
        seen
    }

    /// A fence: this process opens and closes a listener on 127.0.0.1 and
    /// every line up to its close is returned. The kernel's ring buffer is
    /// one ordered queue, so whatever portwatch had to say about what
    /// happened before the fence is out by then: an event that is not in
    /// the result did not happen. The watcher must admit this process's
    /// listeners on 127.0.0.1 (no `--pid`, `--netns` of another namespace).
    pub fn fence(&self) -> Vec<Value> {
        let marker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fence listener");
        let port = marker.local_addr().expect("its address").port();
        drop(marker);
        self.until_closed("127.0.0.1", port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, waits for the exit, and returns the status, stderr
    /// and the lines printed but not yet read.
    pub fn stop(mut self) -> (ExitStatus, String, Vec<Value>) {
        signal(self.child.id(), Signal::Term);
        let status = self.child.wait().expect("wait for portwatch");
        let mut err = String::new();
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        // The reader thread ends at end of file, closing the channel.
        let rest = self.lines.iter().collect();
        (status, err, rest)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use rustix::process::Signal;

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: Signal) {
    let target = rustix::process::Pid::from_raw(pid as i32).expect("a pid above 0");
    rustix::process::kill_process(target, sig)
        .unwrap_or_else(|e| panic!("kill({pid}, {sig:?}): {e}"));
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    // Below the ephemeral range, so that no socket another test binds to
    // port 0 takes it before this test binds it; at random, so that
    // tests running side by side rarely pick the same one.
    loop {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20000 + (random % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// One enabled Warning rule of the alerts.json format.
pub fn rule_with_cooldown(id: &str, condition: &str, cooldown_seconds: u64) -> String {
    format!(
        r#"{{"id":"{id}","name":"{id} rule","condition":{condition},"enabled":true,"severity":"Warning","cooldown_seconds":{cooldown_seconds}}}"#
    )
}

/// Matches an event by kind, port and address.
pub fn is_event(v: &Value, event: &str, address: &str, port: u16) -> bool {
    v["event"] == event && v["port"] == port && v["address"] == address
}

/// A helper process running a Python script that talks over stdin/stdout:
/// the script prints lines (e.g. `port 8080`), the test answers with lines
/// (e.g. `close`). Every step waits on such a message, never on a sleep.
pub struct Helper {
    pub child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
}

/// How long a helper may take to say its next line.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

/// A helper script under tests/helpers/.
pub fn helper_path(name: &str) -> String {
    format!("{}/../tests/helpers/{name}", env!("CARGO_MANIFEST_DIR"))
}

impl Helper {
    pub fn spawn(script: &str) -> Helper {
        Self::command(Command::new("python3").args(["-u", "-c", script]))
    }

    /// Runs an inline Python script with arguments.
    pub fn script_inline(script: &str, args: &[&str]) -> Helper {
        Self::command(
            Command::new("python3")
                .args(["-u", "-c", script])
                .args(args),
        )
    }

    /// Runs tests/helpers/NAME with arguments.
    pub fn script(name: &str, args: &[&str]) -> Helper {
        Self::command(
            Command::new("python3")
                .arg("-u")
                .arg(helper_path(name))
                .args(args),
        )
    }

    /// Runs an inline Python script inside a network namespace.
    pub fn command_in_netns(netns: &str, script: &str) -> Helper {
        Self::command(
            Command::new("ip").args(["netns", "exec", netns, "python3", "-u", "-c", script]),
        )
    }

    pub fn command(cmd: &mut Command) -> Helper {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (and iproute2 for namespaces) are needed by the tests");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper {
            child,
            stdin,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the helper's next line.
    pub fn read_line(&mut self) -> String {
        match self.lines.recv_timeout(HELPER_TIMEOUT) {
            Ok(line) => line.trim_end().to_string(),
            Err(RecvTimeoutError::Timeout) => panic!("helper said nothing for {HELPER_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("helper exited early"),
        }
    }

    /// Reads a `key value` line and returns the value.
    pub fn read_value(&mut self, key: &str) -> String {
        let line = self.read_line();
        let (k, v) = line.split_once(' ').unwrap_or((&line, ""));
        assert_eq!(k, key, "unexpected helper line {line:?}");
        v.to_string()
    }

    pub fn send(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().expect("helper stdin is open");
        writeln!(stdin, "{line}").expect("write to helper");
        stdin.flush().expect("flush helper stdin");
    }

    /// Closes the helper's stdin: it reads end of file.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace made for one test and deleted after it.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let name = format!("pwtest-{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip (iproute2)");
        assert!(ok.success(), "ip netns add {name}");
        let lo = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(lo.success());
        NetNs { name }
    }

    /// The namespace's inode number, as portwatch reports it.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("netns file")
            .ino()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The listening TCP sockets that process `pid` holds: (address, port).
pub fn listening_of(pid: u32) -> std::collections::BTreeSet<(String, u16)> {
    let Ok(proc) = procfs::process::Process::new(pid as i32) else {
        return Default::default();
    };
    let held: std::collections::HashSet<u64> = proc
        .fd()
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| match fd.target {
                    procfs::process::FDTarget::Socket(i) => Some(i),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut rows = proc.tcp().unwrap_or_default();
    rows.extend(proc.tcp6().unwrap_or_default());
    rows.into_iter()
        .filter(|r| r.state == procfs::net::TcpState::Listen && held.contains(&r.inode))
        .map(|r| (r.local_address.ip().to_string(), r.local_address.port()))
        .collect()
}

/// The fdinfo text of each descriptor process `pid` holds (those closed
/// meanwhile left out).
pub fn fdinfo_texts(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .collect()
}

/// The inode of the test process's network namespace.
pub fn own_netns() -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata("/proc/self/ns/net").unwrap())
}

/// The cgroup v2 mount (hybrid hosts keep it under `unified`).
pub fn cgroup2_root() -> std::path::PathBuf {
    let unified = std::path::PathBuf::from("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() {
        unified
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup")
    }
}

/// A child process killed when dropped, however the test ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `path` holds text that `pred` accepts; its text.
pub fn file_until(path: &std::path::Path, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if pred(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} in {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `program` run as user nobody (group nogroup, no other groups): the
/// unprivileged attacker of the hostile tests.
pub fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        program,
    ]);
    c
}

/// `setpriv` as user nobody (group nogroup), in group daemon when
/// `member`, else in no other group; the program follows.
pub fn nobody(member: bool) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "nobody", "--regid", "nogroup"]);
    if member {
        cmd.args(["--groups", "daemon"]);
    } else {
        cmd.arg("--clear-groups");
    }
    cmd
}

/// Runs `sh -c script` as user nobody; panics unless it succeeds.
pub fn nobody_sh(script: &str) {
    let out = as_nobody("sh")
        .args(["-c", script])
        .output()
        .expect("setpriv (util-linux)");
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
