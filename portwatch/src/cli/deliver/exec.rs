//! `--exec CMD`: CMD runs (through `sh -c`) once per alert with the alert
//! as one JSON line on its stdin; at most [`CONCURRENT`] at once, each
//! killed after the timeout.
//!
//! Each run is like a systemd oneshot's control group: the command runs
//! in a cgroup of its own ([`super::cgroup`]), and when it ends, by
//! itself or killed at the timeout, whatever it started and left running
//! is killed too. A background child would otherwise run on as root for
//! as long as it likes, and one that keeps the command's stderr would
//! cost the daemon a descriptor all that while. Where no cgroup can be
//! made, the command's process group stands in for it (said once at
//! start): a child that leaves the group then escapes.

use std::{process::Stdio, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    process::Command,
    sync::{Semaphore, mpsc},
};

use super::{Delivery, Reporter, cgroup};

/// Commands running at once per `--exec`.
const CONCURRENT: usize = 4;

pub async fn worker(
    cmd: String,
    timeout: Duration,
    cgroups: Option<cgroup::Parent>,
    name: String,
    mut rx: mpsc::Receiver<Arc<Delivery>>,
    failures: Reporter,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let (cmd, name, cgroups) = (Arc::new(cmd), Arc::new(name), Arc::new(cgroups));
    while let Some(json) = rx.recv().await {
        // The semaphore is never closed.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (cmd, name, failures, cgroups) =
            (cmd.clone(), name.clone(), failures.clone(), cgroups.clone());
        tokio::spawn(async move {
            if let Err(why) = run(&cmd, &json.json, timeout, cgroups.as_ref().as_ref()).await {
                failures.report(format!("{name}: {why}"));
            }
            drop(permit);
        });
    }
}

/// How long what a finished command wrote to stderr is waited for; then
/// the pipe is closed, whoever still holds its other end.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// Runs `cmd` with `json` on stdin; Err says how it failed.
async fn run(
    cmd: &str,
    json: &str,
    timeout: Duration,
    cgroups: Option<&cgroup::Parent>,
) -> Result<(), String> {
    let cgroup = cgroups
        .map(cgroup::Parent::create)
        .transpose()
        .map_err(|e| format!("cannot make a cgroup for it: {e}"))?;
    let mut command = Command::new("sh");
    command
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group as well: no signal from a terminal
        // reaches it, and without a cgroup this is what is killed.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(&(current, maximum)) = crate::ORIGINAL_NOFILE.get() {
        // SAFETY: between fork and exec, one setrlimit(2) with values
        // copied before the fork: async-signal-safe, nothing allocated.
        unsafe {
            command.pre_exec(move || {
                let limit = rustix::process::Rlimit { current, maximum };
                let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, limit);
                Ok(())
            });
        }
    }
    if let Some(cg) = &cgroup {
        let procs = cg.procs();
        // SAFETY: the closure runs between fork and exec and only opens,
        // writes and closes a file (`cgroup::join`), all
        // async-signal-safe, with nothing allocated.
        unsafe {
            command.pre_exec(move || cgroup::join(&procs));
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let group = child
        .id()
        .and_then(|g| i32::try_from(g).ok())
        .and_then(rustix::process::Pid::from_raw);
    let mut stderr = child.stderr.take().map(|mut s| {
        tokio::spawn(async move {
            let mut err = Vec::new();
            let _ = (&mut s).take(4096).read_to_end(&mut err).await;
            err
        })
    });
    let stdin = child.stdin.take();
    let ran = tokio::time::timeout(timeout, async {
        if let Some(mut stdin) = stdin {
            // A command that does not read its input is no failure.
            let _ = stdin.write_all(json.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        child.wait().await
    })
    .await;
    let timed_out = ran.is_err();
    // What it left running goes with it.
    match &cgroup {
        Some(cg) => cg.kill(),
        None => {
            // Timed out, the group is killed before the command is
            // reaped, so its id names it still. Finished, the command is
            // reaped already; a group id stays taken while the group has
            // a member, so this reaches only what the command left in it
            // (or nothing).
            if let Some(pgid) = group {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::Kill);
            }
        }
    }
    if timed_out {
        // Killed above; reaped here.
        let _ = child.wait().await;
    }
    let err = match &mut stderr {
        Some(task) => tokio::time::timeout(STDERR_GRACE, task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    // The pipe closes with the task, whether or not it had read to the end.
    if let Some(task) = stderr {
        task.abort();
    }
    let left = match cgroup {
        Some(cg) => {
            let name = cg.name();
            cg.close()
                .await
                .err()
                .map(|e| format!("; its cgroup {name} is left behind: {e}"))
        }
        None => None,
    }
    .unwrap_or_default();
    let status = match ran {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("cannot wait for it: {e}{left}")),
        Err(_) => return Err(format!("still running after {timeout:?}; killed{left}")),
    };
    if status.success() {
        return if left.is_empty() {
            Ok(())
        } else {
            Err(format!("it ran{left}"))
        };
    }
    let first = String::from_utf8_lossy(&err)
        .lines()
        .next()
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    Err(format!("{status}{first}{left}"))
}
