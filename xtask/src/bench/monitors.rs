//! The tools compared: portwatch, a bpftrace one-liner on the same
//! tracepoint with the same LISTEN filter, and a 1 s `ss -ltn` (for UDP,
//! `ss -lun`) poller (what the Go port-watcher does).

use std::{
    collections::HashSet,
    path::Path,
    process::{Child, Command},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver},
    },
    thread,
    time::Duration,
};

use anyhow::{Result, bail};

use super::util::{Lines, mono_ns};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Portwatch,
    /// `portwatch watch --connect`, unprivileged, reading a root daemon's
    /// event socket.
    PortwatchSocket,
    Bpftrace,
    Poller,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Portwatch => "portwatch",
            Tool::PortwatchSocket => "portwatch via the daemon's socket",
            Tool::Bpftrace => "bpftrace",
            Tool::Poller => "ss poll 1s",
        }
    }
}

/// The protocol a benchmark opens ports of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// (arrival time, opened?, port) of each reported change.
pub type Seen = (u64, bool, u16);

pub struct Running {
    pub events: Receiver<Seen>,
    /// portwatch's stage lines, when asked for (see [`start_with_stages`]):
    /// complete after [`Running::stop`], which waits for its stderr.
    pub stages: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
    child: Option<Child>,
    polling: Option<Arc<AtomicBool>>,
    /// A daemon the tool reads from.
    daemon: Option<Child>,
}

impl Running {
    /// Stops the tool; returns its stage lines (portwatch prints them as
    /// it exits).
    pub fn stop(mut self) -> Vec<String> {
        if let Some(mut child) = self.child.take() {
            super::util::stop_child(&mut child);
        }
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        if let Some(mut daemon) = self.daemon.take() {
            super::util::stop_child(&mut daemon);
        }
        if let Some(flag) = self.polling.take() {
            flag.store(false, Ordering::Relaxed);
        }
        self.stages.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

pub const BPFTRACE_LISTEN: &str = r#"tracepoint:sock:inet_sock_set_state /args->protocol == 6 && ((args->oldstate == 7 && args->newstate == 10) || (args->oldstate == 10 && args->newstate == 7))/ { printf("%d %d\n", args->newstate, args->sport); }"#;

/// `tool` reporting ports of `proto`. portwatch runs as by default
/// (watching both protocols); its lines of the other are skipped.
pub fn start_for(tool: Tool, root: &Path, proto: Proto) -> Result<Running> {
    start(tool, root, proto, false)
}

/// [`start_for`], with portwatch (watching alone) saying on stderr where
/// each event's userspace time goes (`PORTWATCH_BENCH_STAGES`).
pub fn start_with_stages(tool: Tool, root: &Path, proto: Proto) -> Result<Running> {
    start(tool, root, proto, true)
}

/// A tool whose stdout lines `parse` turns into (opened, port), read in a
/// thread of its own, stamped as they arrived.
fn reading(
    lines: Lines,
    daemon: Option<Child>,
    parse: impl Fn(&str) -> Option<(bool, u16)> + Send + 'static,
) -> Running {
    let (tx, events) = mpsc::channel();
    let Lines {
        child,
        rx,
        stages,
        stderr_reader,
    } = lines;
    thread::spawn(move || {
        for (t, line) in rx {
            if let Some((opened, port)) = parse(&line)
                && tx.send((t, opened, port)).is_err()
            {
                break;
            }
        }
    });
    Running {
        events,
        stages,
        stderr_reader: Some(stderr_reader),
        child: Some(child),
        polling: None,
        daemon,
    }
}

fn start(tool: Tool, root: &Path, proto: Proto, stages: bool) -> Result<Running> {
    match tool {
        Tool::Bpftrace if proto == Proto::Udp => {
            bail!("bpftrace has no UDP bind hook on this kernel (no kprobes)")
        }
        Tool::Portwatch | Tool::PortwatchSocket => {
            let bin = super::portwatch_bin(root);
            let (lines, daemon) = if tool == Tool::Portwatch {
                let mut cmd = Command::new(&bin);
                cmd.args(["watch", "--json", "--resync-interval", "0"]);
                if stages {
                    cmd.env("PORTWATCH_BENCH_STAGES", "1");
                }
                let lines = Lines::spawn(&mut cmd)?;
                (lines, None)
            } else {
                let dir =
                    std::env::temp_dir().join(format!("portwatch-bench-{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                let rules = dir.join("alerts.json");
                std::fs::write(&rules, r#"{"rules":[]}"#)?;
                let socket = dir.join("portwatch.sock");
                let daemon = Lines::spawn(
                    Command::new(&bin)
                        .args(["daemon", "--json", "--resync-interval", "0", "--alerts"])
                        .arg(&rules)
                        .arg("--socket")
                        .arg(&socket)
                        .args(["--socket-group", "nogroup"]),
                )?;
                daemon.wait_for("\"ready\"", Duration::from_secs(30))?;
                let client = Lines::spawn(
                    Command::new("setpriv")
                        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
                        .arg(&bin)
                        .args(["watch", "--json", "--connect"])
                        .arg(&socket),
                )?;
                (client, Some(daemon.child))
            };
            lines.wait_for("\"ready\"", Duration::from_secs(30))?;
            Ok(reading(lines, daemon, move |line| {
                let v = serde_json::from_str::<serde_json::Value>(line).ok()?;
                let opened = v["event"] == "opened";
                ((opened || v["event"] == "closed")
                    && v["source"] == "ebpf"
                    && v["proto"] == proto.as_str())
                .then(|| (opened, v["port"].as_u64().unwrap_or(0) as u16))
            }))
        }
        Tool::Bpftrace => {
            let lines =
                Lines::spawn(Command::new("bpftrace").args(["-B", "line", "-e", BPFTRACE_LISTEN]))?;
            lines.wait_for("Attaching", Duration::from_secs(60))?;
            Ok(reading(lines, None, |line| {
                let mut f = line.split_whitespace();
                let state = f.next()?.parse::<i32>().ok()?;
                let port = f.next()?.parse::<u16>().ok()?;
                Some((state == 10, port))
            }))
        }
        Tool::Poller => {
            let (tx, events) = mpsc::channel();
            let running = Arc::new(AtomicBool::new(true));
            let flag = running.clone();
            let (ready_tx, ready_rx) = mpsc::channel();
            thread::spawn(move || {
                let mut known: Option<HashSet<u16>> = None;
                let args: &[&str] = match proto {
                    Proto::Tcp => &["-Hltn"],
                    Proto::Udp => &["-Hlun"],
                };
                while flag.load(Ordering::Relaxed) {
                    let now: HashSet<u16> = ss_listening(args, |_| true);
                    let t = mono_ns();
                    if let Some(prev) = &known {
                        for p in now.difference(prev) {
                            let _ = tx.send((t, true, *p));
                        }
                        for p in prev.difference(&now) {
                            let _ = tx.send((t, false, *p));
                        }
                    } else {
                        let _ = ready_tx.send(());
                    }
                    known = Some(now);
                    thread::sleep(Duration::from_secs(1));
                }
            });
            let _ = ready_rx.recv();
            Ok(Running {
                events,
                stages: Arc::default(),
                stderr_reader: None,
                child: None,
                polling: Some(running),
                daemon: None,
            })
        }
    }
}

/// The local ports of the `ss ARGS` lines for which `keep` is true.
pub fn ss_listening<T: FromIterator<u16>>(args: &[&str], keep: impl Fn(&str) -> bool) -> T {
    let out = Command::new("ss")
        .args(args)
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| keep(l))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(3)?
                .rsplit_once(':')?
                .1
                .parse()
                .ok()
        })
        .collect()
}
