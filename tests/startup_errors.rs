//! Start-up without the needed privileges: one clear sentence, exit 1.

use std::process::{Command, Output};

fn assert_clear_refusal(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "expected one line: {err}");
    assert!(err.contains("needs root"), "{err}");
    assert!(err.contains("sudo"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn unprivileged_user_is_told_to_use_root() {
    use std::os::unix::process::CommandExt as _;
    let out = Command::new(crate::support::BIN)
        .args(["watch", "--json", "--backend", "ebpf"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_clear_refusal(&out);
}

#[test]
fn root_without_capabilities_is_told_to_use_root() {
    // uid 0, but an empty bounding set: exec gives the process no capabilities.
    let out = Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(crate::support::BIN)
        .args(["watch", "--json", "--backend", "ebpf"])
        .output()
        .expect("setpriv (util-linux) is needed by this test");
    assert_clear_refusal(&out);
}

/// Runs `portwatch ARGS` in a private mount namespace without tracefs.
fn without_tracefs(setpriv: &[&str], args: &str) -> Command {
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         test -e /sys/kernel/tracing/events && exit 90; exec {} {} {args}",
        setpriv.join(" "),
        crate::support::BIN
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    cmd
}

#[test]
fn tracefs_is_mounted_when_missing() {
    // The classic tracepoint needs tracefs (tp_btf does not).
    // unshare and sh both exec, so the child process ends up being portwatch.
    let mut child = without_tracefs(&[], "watch --json --hook tracepoint")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first_lines: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .take_while(|l| !l.contains("\"event\":\"ready\""))
        .collect();
    crate::support::signal(child.id(), crate::support::Signal::Term);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err} after {first_lines:?}");
}

#[test]
fn tracefs_that_cannot_be_mounted_is_one_clear_error() {
    // CAP_BPF and CAP_PERFMON pass the privilege check, but mounting tracefs
    // needs CAP_SYS_ADMIN.
    let out = without_tracefs(
        &[
            "setpriv",
            "--bounding-set=-all,+bpf,+perfmon,+dac_read_search,+sys_ptrace",
            "--inh-caps=-all",
            "--",
        ],
        "watch --json --backend ebpf --hook tracepoint",
    )
    .output()
    .unwrap();
    assert_clear_refusal(&out);
}
