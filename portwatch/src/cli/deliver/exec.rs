//! `--exec CMD`: CMD runs (through `sh -c`) once per alert with the alert
//! as one JSON line on its stdin; at most [`CONCURRENT`] at once, each
//! killed after the timeout.

use std::{process::Stdio, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    process::Command,
    sync::{Semaphore, mpsc},
};

use super::report;

/// Commands running at once per `--exec`.
const CONCURRENT: usize = 4;

pub async fn worker(
    cmd: String,
    timeout: Duration,
    name: String,
    mut rx: mpsc::Receiver<String>,
    failures: mpsc::Sender<String>,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let (cmd, name) = (Arc::new(cmd), Arc::new(name));
    while let Some(json) = rx.recv().await {
        // The semaphore is never closed.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (cmd, name, failures) = (cmd.clone(), name.clone(), failures.clone());
        tokio::spawn(async move {
            if let Err(why) = run(&cmd, &json, timeout).await {
                report(&failures, format!("{name}: {why}"));
            }
            drop(permit);
        });
    }
}

/// How long what a finished command wrote to stderr is waited for: a
/// child it left in the background may hold stderr open.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// Runs `cmd` with `json` on stdin; Err says how it failed. The command
/// gets a process group of its own, so a timeout kills what it started
/// too.
async fn run(cmd: &str, json: &str, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let group = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is no failure.
        let _ = stdin.write_all(json.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    let stderr = child.stderr.take().map(|mut s| {
        tokio::spawn(async move {
            let mut err = Vec::new();
            let _ = (&mut s).take(4096).read_to_end(&mut err).await;
            err
        })
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("cannot wait for it: {e}")),
        Err(_) => {
            if let Some(pgid) = group
                .and_then(|g| i32::try_from(g).ok())
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::Kill);
            }
            return Err(format!("still running after {timeout:?}; killed"));
        }
    };
    if status.success() {
        return Ok(());
    }
    let err = match stderr {
        Some(task) => tokio::time::timeout(STDERR_GRACE, task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let first = String::from_utf8_lossy(&err)
        .lines()
        .next()
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    Err(format!("{status}{first}"))
}
