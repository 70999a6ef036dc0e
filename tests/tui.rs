//! The terminal UI in a real terminal: tmux runs it, keys are typed with
//! `send-keys`, the screen is read with `capture-pane`.

use std::{
    net::TcpListener,
    process::Command,
    time::{Duration, Instant},
};

use crate::support::{BIN, Helper};

/// One tmux server per test (its own socket), one window.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    pub(crate) fn start(tag: &str, command: &str) -> Tmux {
        let socket = format!("portwatch-test-{}-{tag}", std::process::id());
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "40",
                command,
            ])
            .status()
            .expect("tmux is needed by the TUI tests");
        assert!(ok.success(), "tmux new-session");
        Tmux { socket }
    }

    pub(crate) fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn send(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys"])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// The screen once `pred` holds for it; panics with the screen after
    /// `timeout`.
    pub(crate) fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("no {what} within {timeout:?}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_until(needle, timeout, |s| s.contains(needle))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// Start-up (loading the programs, the scan) may take a while on CI.
pub(crate) const READY: Duration = Duration::from_secs(30);

/// Whether a table row shows `port` in the PORT column (the second).
pub(crate) fn row_with_port(screen: &str, port: u16) -> bool {
    let port = port.to_string();
    screen.lines().any(|l| {
        l.split(|c: char| c.is_whitespace() || c == '│')
            .filter(|t| !t.is_empty())
            .nth(1)
            == Some(port.as_str())
    })
}

/// `portwatch` showing only this test process's rows: other tests open
/// hundreds of listeners at once, which would push ours off the screen.
fn tui_of_this_process() -> String {
    format!("{BIN} -f pid:{}", std::process::id())
}

#[test]
fn a_new_listener_appears_within_two_seconds() {
    let tui = Tmux::start("appears", &tui_of_this_process());
    tui.wait_for("watching with", READY);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    tui.wait_until("the new listener", Duration::from_secs(2), |s| {
        row_with_port(s, port)
    });
}

#[test]
fn a_udp_port_shows_bound_live_then_closed() {
    let tui = Tmux::start("udp", &format!("{BIN} -f proto:udp"));
    tui.wait_for("watching with", READY);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let row = |state: &'static str| {
        move |s: &str| {
            s.lines().any(|l| {
                let cells: Vec<&str> = l
                    .split(|c: char| c.is_whitespace() || c == '│')
                    .filter(|t| !t.is_empty())
                    .collect();
                cells.get(1) == Some(&port.to_string().as_str())
                    && cells.get(2) == Some(&"udp")
                    && cells.get(3) == Some(&state)
            })
        }
    };
    tui.wait_until("the bound UDP port", Duration::from_secs(5), row("BOUND"));
    drop(socket);
    tui.wait_until("its release", Duration::from_secs(5), row("CLOSED"));
}

#[test]
fn a_filter_shows_only_matching_rows() {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let tui = Tmux::start("filter", &tui_of_this_process());
    tui.wait_until("both listeners", READY, |s| {
        row_with_port(s, pa) && row_with_port(s, pb)
    });
    // Typed after the filter already there: both terms apply.
    tui.send(&["/"]);
    tui.send(&["-l", &format!(" port:{pa}")]);
    tui.send(&["Enter"]);
    let screen = tui.wait_for(
        &format!("filter: 'pid:{} port:{pa}'  1 match", std::process::id()),
        Duration::from_secs(10),
    );
    assert!(row_with_port(&screen, pa), "{screen}");
    assert!(!row_with_port(&screen, pb), "{screen}");
}

const LISTENER: &str = r#"
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1])
sys.stdin.read()
"#;

fn alive(helper: &mut Helper) -> bool {
    helper.child.try_wait().unwrap().is_none()
}

#[test]
fn kill_asks_first_and_n_leaves_the_process_alone() {
    let mut helper = Helper::spawn(LISTENER);
    let port: u16 = helper.read_value("port").parse().unwrap();
    let tui = Tmux::start("kill", &format!("{BIN} -f port:{port}"));
    tui.wait_until("the helper's row", READY, |s| row_with_port(s, port));
    tui.send(&["k"]);
    let dialog = tui.wait_for("y: send it", Duration::from_secs(10));
    assert!(
        dialog.contains(&format!("Send SIGTERM to process {}?", helper.pid())),
        "{dialog}"
    );
    tui.send(&["n"]);
    tui.wait_until("the dialog to close", Duration::from_secs(10), |s| {
        !s.contains("y: send it")
    });
    assert!(alive(&mut helper), "n must leave the process alive");

    tui.send(&["k"]);
    tui.wait_for("y: send it", Duration::from_secs(10));
    tui.send(&["y"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(&mut helper) {
        assert!(Instant::now() < deadline, "y did not end the process");
        std::thread::sleep(Duration::from_millis(20));
    }
    tui.wait_for(
        &format!("sent SIGTERM to process {}", helper.pid()),
        Duration::from_secs(10),
    );
}

/// Listens on "go", hands the socket to a child it forks, closes its own
/// copy and stays alive: its row still names it (the listen() caller),
/// though it no longer holds the port, as a reused pid would not.
const HANDS_OFF_SCRIPT: &str = r#"
import os, socket, sys
sys.stdin.readline()
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
port = s.getsockname()[1]
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.close(w)
    os.read(r, 1)
    os._exit(0)
os.close(r)
s.close()
print("port", port)
print("child", child)
sys.stdin.read()
"#;

/// The kill dialog acts only on a process that still holds the row's
/// socket: the row's pid no longer does, so nothing is signalled and the
/// dialog says who holds it now.
#[test]
fn kill_refuses_a_process_that_no_longer_holds_the_socket() {
    let mut helper = Helper::spawn(HANDS_OFF_SCRIPT);
    let tui = Tmux::start("handsoff", &format!("{BIN} -f pid:{}", helper.pid()));
    tui.wait_for("watching with", READY);
    helper.send("go");
    let port: u16 = helper.read_value("port").parse().unwrap();
    let child = helper.read_value("child");
    tui.wait_until("the helper's row", READY, |s| row_with_port(s, port));
    tui.send(&["k"]);
    let dialog = tui.wait_for("does not hold", Duration::from_secs(10));
    assert!(
        dialog.contains(&child),
        "names the holder {child}: {dialog}"
    );
    tui.send(&["y"]);
    tui.send(&["Escape"]);
    tui.wait_until("the dialog to close", Duration::from_secs(10), |s| {
        !s.contains("does not hold")
    });
    assert!(
        alive(&mut helper),
        "the process that no longer holds the socket was signalled"
    );
}

/// SIGHUP reloads the rules, as in every mode, and the UI goes on.
#[test]
fn sighup_reloads_the_rules_and_the_ui_goes_on() {
    let dir = std::env::temp_dir().join(format!("portwatch-tui-hup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    std::fs::write(&rules, r#"{"rules":[]}"#).unwrap();
    let tui = Tmux::start(
        "hup",
        &format!(
            "{BIN} --alerts {} -f pid:{}",
            rules.display(),
            std::process::id()
        ),
    );
    tui.wait_for("watching with", READY);
    let out = Command::new("tmux")
        .args(["-L", &tui.socket, "display-message", "-p", "#{pane_pid}"])
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    crate::support::signal(pid, crate::support::Signal::Hup);
    tui.wait_for("reloaded 0 rules", Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(dir);
}

/// Another writer adds a rule while the editor is open: the editor's next
/// save (a toggle) must not write its stale copy over it; it says why and
/// shows the file as it is now.
#[test]
fn the_editor_never_overwrites_another_writers_change() {
    let dir = std::env::temp_dir().join(format!("portwatch-tui-stale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    let rule = |id: &str, port: u16| {
        crate::support::rule_with_cooldown(
            id,
            &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#),
            60,
        )
    };
    std::fs::write(&rules, format!(r#"{{"rules":[{}]}}"#, rule("alpha", 1))).unwrap();
    let tui = Tmux::start(
        "stale",
        &format!(
            "{BIN} --alerts {} -f pid:{}",
            rules.display(),
            std::process::id()
        ),
    );
    tui.wait_for("watching with", READY);
    tui.send(&["E"]);
    tui.wait_for("alpha", Duration::from_secs(10));
    let theirs = format!(r#"{{"rules":[{},{}]}}"#, rule("alpha", 1), rule("beta", 2));
    std::fs::write(&rules, &theirs).unwrap();
    tui.send(&["Space"]);
    let screen = tui.wait_until("the save's outcome", Duration::from_secs(10), |s| {
        s.contains("another writer") || !std::fs::read_to_string(&rules).unwrap().contains("beta")
    });
    let now = std::fs::read_to_string(&rules).unwrap();
    assert!(
        now.contains("beta"),
        "their rule was dropped: {now}\n{screen}"
    );
    tui.wait_for("beta", Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn q_quits_and_leaves_a_usable_shell() {
    let tui = Tmux::start("quit", "bash --norc --noprofile");
    tui.send(&["-l", &format!("PS1='$ ' {BIN}")]);
    tui.send(&["Enter"]);
    tui.wait_for("watching with", READY);
    tui.send(&["q"]);
    // Once the UI is gone (keys typed before would be the UI's), typed at
    // the prompt, echoed, run: the terminal is back to normal.
    tui.wait_until("the UI gone", READY, |s| !s.contains("ADDRESS"));
    tui.send(&["-l", "echo usable-$((40 + 2))"]);
    tui.send(&["Enter"]);
    let screen = tui.wait_for("usable-42", Duration::from_secs(10));
    assert!(screen.contains("echo usable-$((40 + 2))"), "{screen}");
    assert!(
        !screen.contains("ADDRESS"),
        "the alternate screen is gone: {screen}"
    );
}

#[test]
fn sigterm_also_leaves_a_usable_shell() {
    let tui = Tmux::start("sigterm", "bash --norc --noprofile");
    tui.send(&["-l", &format!("{BIN}; echo ended-$?")]);
    tui.send(&["Enter"]);
    tui.wait_for("watching with", READY);
    // The shell's child in this tmux server: the UI (other tests run theirs).
    let shell = Command::new("tmux")
        .args(["-L", &tui.socket, "display-message", "-p", "#{pane_pid}"])
        .output()
        .unwrap();
    let shell = String::from_utf8_lossy(&shell.stdout).trim().to_string();
    let out = Command::new("pgrep").args(["-P", &shell]).output().unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    crate::support::signal(pid, crate::support::Signal::Term);
    tui.wait_for("ended-0", Duration::from_secs(10));
    tui.send(&["-l", "echo usable-$((40 + 2))"]);
    tui.send(&["Enter"]);
    let screen = tui.wait_for("usable-42", Duration::from_secs(10));
    assert!(!screen.contains("ADDRESS"), "{screen}");
}

#[test]
fn without_privileges_it_runs_on_procfs_and_says_why() {
    // nobody cannot load eBPF programs.
    let tui = Tmux::start(
        "unprivileged",
        &format!("setpriv --reuid 65534 --regid 65534 --clear-groups {BIN}"),
    );
    // The reason, with its fix at its end, is never cut.
    let screen = tui.wait_for("watching with procfs: eBPF: ", READY);
    assert!(screen.contains("run it with sudo"), "{screen}");
    // Opens seen by polling are events; a poll is no resync.
    let _l = TcpListener::bind("127.0.0.1:0").unwrap();
    let screen = tui.wait_until("an event counted", Duration::from_secs(10), |s| {
        !s.contains("│ 0 events │")
    });
    assert!(screen.contains("│ 0 resyncs"), "{screen}");
}

/// Unprivileged, the terminal UI shows a root daemon's events through its
/// socket: live, with eBPF, as the socket's group allows.
#[test]
fn connected_to_the_daemon_it_shows_live_events_without_root() {
    let dir = std::env::temp_dir().join(format!("portwatch-tui-connect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("alerts.json");
    std::fs::write(&rules, r#"{"rules":[]}"#).unwrap();
    let socket = dir.join("portwatch.sock");
    let socket = socket.to_str().unwrap();
    let _daemon = crate::support::Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        rules.to_str().unwrap(),
        "--socket",
        socket,
        "--socket-group",
        "daemon",
    ]);
    let tui = Tmux::start(
        "connect",
        &format!(
            "setpriv --reuid nobody --regid nogroup --groups daemon {BIN} --connect {socket} --proto tcp -f pid:{}",
            std::process::id()
        ),
    );
    let screen = tui.wait_for("watching with ebpf", READY);
    assert!(screen.contains("daemon at"), "{screen}");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    tui.wait_until("the new listener, counted", Duration::from_secs(5), |s| {
        row_with_port(s, port) && !s.contains("│ 0 events │")
    });
    let _ = std::fs::remove_dir_all(dir);
}
