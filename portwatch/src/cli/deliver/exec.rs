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

/// Runs `cmd` with `json` on stdin; Err says how it failed.
async fn run(cmd: &str, json: &str, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let mut stdin = child.stdin.take();
    let mut stderr = child.stderr.take();
    let work = async {
        if let Some(stdin) = stdin.as_mut() {
            // A command that does not read its input is no failure.
            let _ = stdin.write_all(json.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        drop(stdin.take());
        let mut err = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(4096).read_to_end(&mut err).await;
        }
        (child.wait().await, err)
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(format!("still running after {timeout:?}; killed")),
        Ok((Err(e), _)) => Err(format!("cannot wait for it: {e}")),
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), err)) => {
            let first = String::from_utf8_lossy(&err)
                .lines()
                .next()
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            Err(format!("{status}{first}"))
        }
    }
}
