//! Alert delivery: `--exec` commands and `--webhook` URLs get each alert;
//! a failing, hanging, down or slow output is reported and holds up
//! neither the daemon nor another output.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{BIN, Helper, Killed, Watcher, file_until, free_port, rule_with_cooldown};

/// A rules file with a PortOpened rule per (id, port).
fn rules_dir(tag: &str, rules: &[(&str, u16)]) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("portwatch-delivery-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rules: Vec<String> = rules
        .iter()
        .map(|(id, port)| {
            rule_with_cooldown(
                id,
                &format!(r#"{{"type":"PortOpened","params":{{"port":{port}}}}}"#),
                3600,
            )
        })
        .collect();
    let path = dir.join("alerts.json");
    fs::write(&path, format!(r#"{{"rules":[{}]}}"#, rules.join(","))).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

/// A FIFO in `dir` for commands to write to, and its lines. It is opened
/// read-write so that opening it never waits for a writer; each
/// command's line arrives whole.
fn fifo(dir: &std::path::Path, name: &str) -> (PathBuf, std::io::Lines<BufReader<fs::File>>) {
    let fifo = dir.join(name);
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    (fifo, BufReader::new(reader).lines())
}

fn delivery_error(d: &Watcher, what: &str, needle: &str) -> Value {
    d.expect(what, Duration::from_secs(20), |v| {
        v["event"] == "delivery_error" && v["message"].as_str().unwrap().contains(needle)
    })
}

#[test]
fn exec_runs_per_alert_and_reports_a_failing_or_hanging_command() {
    let (hang, fail, ok) = (free_port(), free_port(), free_port());
    let (dir, rules) = rules_dir("exec", &[("hang", hang), ("fail", fail), ("ok", ok)]);
    let (fifo, mut lines) = fifo(&dir, "alerts.fifo");
    let cmd = format!(
        r#"read line; case "$line" in *'"hang"'*) sleep 60;; *'"fail"'*) echo "no luck" >&2; exit 3;; *) printf '%s\n' "$line" >> {};; esac"#,
        fifo.display()
    );
    let d = daemon(&rules, &["--exec", &cmd, "--exec-timeout", "1s"]);
    // The hanging command first: the others are not held up by it.
    let _h = TcpListener::bind(("127.0.0.1", hang)).unwrap();
    let _f = TcpListener::bind(("127.0.0.1", fail)).unwrap();
    let _o = TcpListener::bind(("127.0.0.1", ok)).unwrap();
    let alert: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (alert["rule_id"].as_str(), alert["port"].as_u64()),
        (Some("ok"), Some(u64::from(ok)))
    );
    let failed = delivery_error(&d, "the failing command", "exit status: 3");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .ends_with("exit status: 3: no luck"),
        "{failed}"
    );
    delivery_error(&d, "the hanging command", "still running after 1s; killed");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn webhooks_get_each_alert_with_retries_and_a_down_or_slow_one_is_reported() {
    let port = free_port();
    let (dir, rules) = rules_dir("webhook", &[("p", port)]);
    let mut server = Helper::script("http_sink.py", &[]);
    let http = server.read_value("port");
    let url = |path: &str| format!("http://127.0.0.1:{http}{path}");
    // Nothing listens on a port just freed. The path stands for a secret
    // (Slack keeps its token there): reports leave it out.
    let down_port = free_port();
    let down = format!("http://127.0.0.1:{down_port}/secret-token");
    let d = daemon(
        &rules,
        &[
            "--webhook",
            &url("/slow"),
            "--webhook",
            &down,
            "--webhook",
            &url("/flaky"),
            "--webhook",
            &url("/ok"),
            "--webhook-timeout",
            "500ms",
        ],
    );
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    // Each webhook has its own worker: /ok and /flaky get the alert while
    // /slow hangs and the down one refuses. /flaky twice: 500, then
    // retried.
    let mut posts: Vec<(String, Value)> = Vec::new();
    while posts.iter().filter(|(p, _)| p != "/slow").count() < 3 {
        let line = server.read_value("post");
        let (path, body) = line.split_once(' ').unwrap();
        posts.push((path.to_string(), serde_json::from_str(body).unwrap()));
    }
    for (path, body) in &posts {
        assert_eq!(body["rule_id"], "p", "{path}");
        assert_eq!(body["port"], port, "{path}");
    }
    let count = |p: &str| posts.iter().filter(|(path, _)| path == p).count();
    assert_eq!((count("/ok"), count("/flaky")), (1, 2), "{posts:?}");
    let e = delivery_error(
        &d,
        "the down webhook",
        &format!("webhook http://127.0.0.1:{down_port}/...: not delivered after 4 tries"),
    );
    assert!(!e["message"].as_str().unwrap().contains("secret"), "{e}");
    delivery_error(
        &d,
        "the slow webhook",
        &format!(
            "webhook http://127.0.0.1:{http}/...: not delivered after 4 tries: no answer in time"
        ),
    );
    let _ = fs::remove_dir_all(dir);
}

/// Events the kernel dropped (a storm through a 4 KiB ring buffer) are
/// told to the outputs too, as an `events_lost` object.
#[test]
fn lost_events_reach_the_outputs() {
    let (dir, rules) = rules_dir("lost", &[]);
    let (fifo, mut lines) = fifo(&dir, "lost.fifo");
    let cmd = format!("cat >> {}", fifo.display());
    let d = daemon(&rules, &["--exec", &cmd, "--ring-buffer", "4096"]);
    let mut storm = Helper::script("storm.py", &["4", "1000", "7"]);
    for _ in 0..4 {
        storm.read_value("done");
    }
    let printed = d.expect("the daemon's own notice", Duration::from_secs(20), |v| {
        v["event"] == "events_lost"
    });
    assert!(printed["dropped"].as_u64().unwrap() > 0, "{printed}");
    let delivered: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(delivered["event"], "events_lost", "{delivered}");
    assert!(delivered["dropped"].as_u64().unwrap() > 0, "{delivered}");
    storm.close_stdin();
    let _ = fs::remove_dir_all(dir);
}

/// Whether process `pid` still runs (a zombie has stopped running).
fn running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => !matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X') | None
        ),
        Err(_) => false,
    }
}

/// Waits (bounded) until none of `pids` runs; those still running.
fn still_running_after_wait(pids: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| running(p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `sleep` processes a test's commands started, killed when the test
/// ends however it ends (a failing test leaves none behind).
struct Sleepers(Vec<i32>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep"
                && let Some(p) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::Kill);
            }
        }
    }
}

/// A command that outlives `--exec-timeout` is killed with everything
/// it started, even a child that made a session (and so a process group)
/// of its own.
#[test]
fn exec_timeout_kills_a_child_that_left_the_process_group() {
    let port = free_port();
    let (dir, rules) = rules_dir("setsid", &[("s", port)]);
    let pidfile = dir.join("grandchild.pid");
    let cmd = format!("setsid sleep 300 & echo $! > {}; wait", pidfile.display());
    let d = daemon(&rules, &["--exec", &cmd, "--exec-timeout", "1s"]);
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let text = file_until(&pidfile, "the setsid child's pid", |t| t.ends_with('\n'));
    let pid: i32 = text.trim().parse().unwrap();
    let _sleepers = Sleepers(vec![pid]);
    delivery_error(&d, "the timeout", "still running after 1s; killed");
    assert_eq!(
        still_running_after_wait(&[pid]),
        Vec::<i32>::new(),
        "the command's setsid child outlived its timeout"
    );
    let _ = fs::remove_dir_all(dir);
}

/// Open descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// A command that leaves a child in the background holding its stderr
/// costs the daemon no descriptor once the command is over: what it left
/// is killed with it.
#[test]
fn exec_leaves_no_descriptor_behind_for_a_background_child() {
    const N: usize = 20;
    let mut ports = std::collections::BTreeSet::new();
    while ports.len() < N {
        ports.insert(free_port());
    }
    let ids: Vec<String> = (0..N).map(|i| format!("bg{i}")).collect();
    let rules: Vec<(&str, u16)> = ids
        .iter()
        .map(String::as_str)
        .zip(ports.iter().copied())
        .collect();
    let (dir, rules) = rules_dir("stderr", &rules);
    let (fifo, mut lines) = fifo(&dir, "pids.fifo");
    // The background sleep keeps the command's stderr; its pid goes to
    // the FIFO, the command's last act.
    let cmd = format!("sleep 300 >/dev/null & echo $! >> {}", fifo.display());
    let d = Watcher::spawn(&["daemon", "--json", "--alerts", &rules, "--exec", &cmd]);
    let baseline = fd_count(d.pid());
    let _listeners: Vec<TcpListener> = ports
        .iter()
        .map(|&p| TcpListener::bind(("127.0.0.1", p)).unwrap())
        .collect();
    let mut sleepers = Sleepers(Vec::new());
    for _ in 0..N {
        sleepers
            .0
            .push(lines.next().unwrap().unwrap().trim().parse().unwrap());
    }
    // Some descriptors are opened on first use (the child-reaping
    // machinery): a little slack, far below one per command.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut now = fd_count(d.pid());
    while now > baseline + 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        now = fd_count(d.pid());
    }
    assert!(
        now <= baseline + 4,
        "the daemon holds {now} descriptors after {N} commands, {baseline} before"
    );
    assert_eq!(
        still_running_after_wait(&sleepers.0),
        Vec::<i32>::new(),
        "what the commands left in the background still runs"
    );
    let _ = fs::remove_dir_all(dir);
}

/// The count of alerts that a `delivery_error` message says were not
/// delivered (0 for other failures).
fn not_delivered(message: &str) -> u64 {
    if message.contains("alerts wait already; this one is dropped") {
        // The report of one dropped alert, before they were coalesced.
        return 1;
    }
    if message.contains(" not delivered to ") && message.contains("queue of 256 was full") {
        return message
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {message:?}"));
    }
    0
}

/// A burst of alerts that overflows two outputs' queues: every alert is
/// either delivered or counted in a `delivery_error`, per output; none
/// is lost silently (the reports of drops used to be dropped themselves).
#[test]
fn a_burst_that_overflows_the_queues_loses_no_alert_silently() {
    const N: usize = 1000;
    let mut helper = Helper::script_inline(
        r#"
import resource, socket, sys
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < n + 64:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
socks = []
for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("ports " + " ".join(str(s.getsockname()[1]) for s in socks))
sys.stdin.readline()
for s in socks[:-1]:
    s.listen()
print("listening")
sys.stdin.readline()
socks[-1].listen()
print("fenced")
sys.stdin.read()
"#,
        &[&(N + 1).to_string()],
    );
    // Bound, not yet listening: the ports are this helper's until the
    // burst. Two rules per port: two alerts per listener.
    let mut ports: Vec<u16> = helper
        .read_value("ports")
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let fence = ports.pop().unwrap();
    assert_eq!(ports.len(), N);
    let dir = std::env::temp_dir().join(format!("portwatch-delivery-burst-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut rules = Vec::new();
    for p in &ports {
        rules.push(rule_with_cooldown(
            &format!("o{p}"),
            &format!(r#"{{"type":"PortOpened","params":{{"port":{p}}}}}"#),
            3600,
        ));
        rules.push(rule_with_cooldown(
            &format!("r{p}"),
            &format!(
                r#"{{"type":"PortRangeActivity","params":{{"start_port":{p},"end_port":{p}}}}}"#
            ),
            3600,
        ));
    }
    rules.push(rule_with_cooldown(
        "fence",
        &format!(r#"{{"type":"PortOpened","params":{{"port":{fence}}}}}"#),
        3600,
    ));
    let rules_path = dir.join("alerts.json");
    fs::write(&rules_path, format!(r#"{{"rules":[{}]}}"#, rules.join(","))).unwrap();
    // Each command records its alert, then waits for the gate: the
    // queues stay full until the test opens it.
    let gate = dir.join("go");
    let out = |name: &str| dir.join(format!("{name}.out"));
    let cmd = |name: &str| {
        format!(
            "cat >> {}; until [ -e {} ]; do sleep 0.05; done",
            out(name).display(),
            gate.display()
        )
    };
    let d = Watcher::spawn(&[
        "daemon",
        "--json",
        "--alerts",
        rules_path.to_str().unwrap(),
        "--exec",
        &cmd("a"),
        "--exec",
        &cmd("b"),
        "--exec-timeout",
        "120s",
    ]);
    helper.send("go");
    helper.read_value("listening");
    let mut fired = 0u64;
    let mut reported = [0u64; 2];
    let take = |v: &Value, fired: &mut u64, reported: &mut [u64; 2]| match v["event"].as_str() {
        Some("alert" | "events_lost") => *fired += 1,
        Some("delivery_error") => {
            let m = v["message"].as_str().unwrap();
            let n = not_delivered(m);
            assert!(
                n > 0 || m.contains("not shown"),
                "unexpected delivery_error: {m}"
            );
            // Outputs are named by place and program, never by their
            // whole command (which may carry a token).
            if m.contains("exec #1 (") {
                reported[0] += n;
            } else if m.contains("exec #2 (") {
                reported[1] += n;
            } else {
                panic!("a report of no output: {m}");
            }
        }
        _ => {}
    };
    // A fence: the helper's last port opens after the burst, and its
    // alert is printed after every alert of the burst.
    helper.send("fence");
    helper.read_value("fenced");
    d.expect("the fence's alert", Duration::from_secs(60), |v| {
        take(v, &mut fired, &mut reported);
        v["rule_id"] == "fence"
    });
    assert!(
        fired > 2 * N as u64,
        "{fired} alerts for {N} listeners and the fence"
    );
    fs::write(&gate, "").unwrap();
    let delivered = |name: &str| {
        fs::read_to_string(out(name))
            .unwrap_or_default()
            .lines()
            .count() as u64
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = [delivered("a"), delivered("b")];
        if now[0] + reported[0] == fired && now[1] + reported[1] == fired {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{fired} alerts fired; output a: {} delivered, {} reported not delivered; output b: {} delivered, {} reported not delivered",
            now[0],
            reported[0],
            now[1],
            reported[1]
        );
        if let Some(v) = d.next_within(Duration::from_millis(100)) {
            take(&v, &mut fired, &mut reported);
        }
    }
    assert!(
        reported[0] > 0 && reported[1] > 0,
        "the burst overflowed no queue: {reported:?}"
    );
    helper.close_stdin();
    let _ = fs::remove_dir_all(dir);
}

/// A tiny HTTP server: `/first` answers 301 to `/second`, anything else
/// 200. Each request's method and path go to the receiver, sent before
/// the answer.
fn redirecting_server() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read as _, Write as _};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    break;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((k, v)) = header.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = request.split(' ');
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let _ = tx.send(format!("{method} {path}"));
            let answer = if path == "/first" {
                "HTTP/1.1 301 Moved Permanently\r\nLocation: /second\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = reader.get_mut().write_all(answer.as_bytes());
        }
    });
    (port, rx)
}

/// A webhook that answers with a redirect has not taken the alert: it
/// is reported, and the redirect is not followed (a GET without the
/// alert would count as delivered).
#[test]
fn a_webhook_redirect_is_a_failure_not_followed() {
    let port = free_port();
    let (dir, rules) = rules_dir("redirect", &[("r", port)]);
    let (http, requests) = redirecting_server();
    let d = daemon(
        &rules,
        &["--webhook", &format!("http://127.0.0.1:{http}/first")],
    );
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let e = delivery_error(&d, "the redirect", "301 Moved Permanently");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{e}"
    );
    // Each request is recorded before its answer: whatever was asked
    // before the report is here.
    let asked: Vec<String> = requests.try_iter().collect();
    assert_eq!(asked, ["POST /first"], "{e}");
    let _ = fs::remove_dir_all(dir);
}

/// `portwatch daemon --json --alerts RULES OUTPUTS...`, once ready.
fn daemon(rules: &str, outputs: &[&str]) -> Watcher {
    let mut args = vec!["daemon", "--json", "--alerts", rules];
    args.extend_from_slice(outputs);
    Watcher::spawn(&args)
}

/// `portwatch daemon ARGS` run to its exit (bounded): status, stdout,
/// stderr.
fn daemon_exit(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut child = Killed(
        std::process::Command::new(BIN)
            .arg("daemon")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit: {args:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read as _;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

/// A webhook URL's secrets (password, path, query) appear nowhere: not
/// in the refusal of a bad URL, not in a delivery failure.
#[test]
fn webhook_secrets_are_never_shown() {
    let (dir, rules) = rules_dir("secrets", &[]);
    for url in [
        "htps://user:hunter2@example.invalid/hook?token=s3cret",
        "http://user:hunter2@[::1/hook?token=s3cret",
        "http://user:hunter2@example.invalid:99999/hook?token=s3cret",
    ] {
        let (status, out, err) = daemon_exit(&["--json", "--alerts", &rules, "--webhook", url]);
        assert!(!status.success(), "{url} was accepted");
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
        for secret in ["hunter2", "s3cret", "/hook"] {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{url}: {secret} shown: {out}{err}"
            );
        }
    }
    let port = free_port();
    let (dir2, rules) = rules_dir("secrets-down", &[("d", port)]);
    let d = daemon(
        &rules,
        &[
            "--webhook",
            "http://user:hunter2@127.0.0.1:1/x?token=s3cret",
            "--webhook-timeout",
            "500ms",
        ],
    );
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let e = delivery_error(&d, "the unreachable webhook", "not delivered after 4 tries");
    let m = e["message"].as_str().unwrap();
    for secret in ["hunter2", "s3cret", "/x", "user"] {
        assert!(!m.contains(secret), "{secret} shown: {m}");
    }
    let _ = fs::remove_dir_all(dir);
    let _ = fs::remove_dir_all(dir2);
}

/// A command can carry a token (`curl -H 'Authorization: ...'`): its
/// failure is reported under the output's place and program, never the
/// whole command.
#[test]
fn an_exec_commands_arguments_are_never_shown() {
    let port = free_port();
    let (dir, rules) = rules_dir("execsecret", &[("fail", port)]);
    let d = daemon(&rules, &["--exec", "false --token=s3cret"]);
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let e = delivery_error(&d, "the failing command", "exit status: 1");
    let m = e["message"].as_str().unwrap();
    assert!(m.starts_with("exec #1 (false)"), "{m}");
    assert!(!m.contains("s3cret"), "the token was shown: {m}");
    let _ = fs::remove_dir_all(dir);
}

/// portwatch raises its own descriptor limit; the commands it runs get
/// the limit it was started with (programs that still use select() break
/// past 1,024).
#[test]
fn exec_commands_get_the_original_descriptor_limit() {
    let port = free_port();
    let (dir, rules) = rules_dir("nofile", &[("limit", port)]);
    let out = dir.join("limit.txt");
    let cmd = format!("ulimit -Sn > {}.tmp && mv {0}.tmp {0}", out.display());
    let _d = Watcher::spawn_command(std::process::Command::new("prlimit").args([
        "--nofile=1024:4096",
        crate::support::BIN,
        "daemon",
        "--json",
        "--alerts",
        &rules,
        "--exec",
        &cmd,
    ]));
    let _l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let text = crate::support::file_until(&out, "the command's limit", |t| !t.is_empty());
    assert_eq!(text.trim(), "1024");
    let _ = fs::remove_dir_all(dir);
}

/// Alerts still waiting for a slow output when the daemon stops are said,
/// not dropped silently.
#[test]
fn alerts_still_queued_at_stop_are_reported() {
    let ports: Vec<u16> = (0..10).map(|_| free_port()).collect();
    let ids: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let rules: Vec<(&str, u16)> = ids
        .iter()
        .map(String::as_str)
        .zip(ports.iter().copied())
        .collect();
    let (dir, rules) = rules_dir("atstop", &rules);
    let d = daemon(&rules, &["--exec", "sleep 300", "--exec-timeout", "600s"]);
    // A port free a moment ago may be taken by a test running beside
    // this one: those that bind fire.
    let held: Vec<TcpListener> = ports
        .iter()
        .filter_map(|p| TcpListener::bind(("127.0.0.1", *p)).ok())
        .collect();
    // Four commands run at once and the worker holds one more: the rest wait.
    assert!(
        held.len() >= 6,
        "only {} of 10 ports could be bound",
        held.len()
    );
    let mut alerts = 0;
    d.expect("an alert per port", Duration::from_secs(20), |v| {
        alerts += usize::from(v["event"] == "alert");
        alerts == held.len()
    });
    let (status, stderr, rest) = d.stop();
    assert!(status.success(), "{status}: {stderr}");
    let said: Vec<&str> = rest
        .iter()
        .filter(|v| v["event"] == "delivery_error")
        .filter_map(|v| v["message"].as_str())
        .collect();
    assert!(
        said.iter()
            .any(|m| m.contains("still queued for exec #1 (sleep) when the daemon stopped")),
        "{said:?}"
    );
    drop(held);
    let _ = fs::remove_dir_all(dir);
}
