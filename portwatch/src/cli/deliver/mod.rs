//! Where the daemon delivers alerts besides its own output: commands
//! (`--exec`), webhooks (`--webhook`) and desktop notifications
//! (`--notify`). Each output has a bounded queue
//! and workers of its own; the monitor loop only ever adds to a queue
//! without waiting, so a failing, hanging or slow output never holds up
//! the monitor or another output. What goes wrong comes back as one
//! sentence per failure, for the daemon to print.

mod exec;
pub mod notify;
mod webhook;

use std::time::Duration;

use tokio::sync::mpsc;

/// Alerts queued per output before more are dropped (and said so).
const QUEUE: usize = 256;

/// How the outputs run.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub exec: Vec<String>,
    pub exec_timeout: Duration,
    pub webhooks: Vec<String>,
    pub webhook_timeout: Duration,
    /// Desktop notifications on the session bus.
    pub notify: bool,
}

struct Output {
    /// What it is called in failure reports, e.g. `exec "notify.sh"`.
    name: String,
    tx: mpsc::Sender<String>,
}

/// Every output, and the failures they report.
pub struct Deliveries {
    outputs: Vec<Output>,
    failures_tx: mpsc::Sender<String>,
    failures: mpsc::Receiver<String>,
}

impl Deliveries {
    /// Starts a worker per output. Needs a tokio runtime.
    pub fn start(config: &DeliveryConfig) -> anyhow::Result<Self> {
        let (failures_tx, failures) = mpsc::channel(QUEUE);
        let mut outputs = Vec::new();
        for cmd in &config.exec {
            let (tx, rx) = mpsc::channel(QUEUE);
            let name = format!("exec {cmd}");
            tokio::spawn(exec::worker(
                cmd.clone(),
                config.exec_timeout,
                name.clone(),
                rx,
                failures_tx.clone(),
            ));
            outputs.push(Output { name, tx });
        }
        for url in &config.webhooks {
            let (tx, rx) = mpsc::channel(QUEUE);
            let name = format!("webhook {}", webhook::shown(url));
            let client = webhook::client(config.webhook_timeout)?;
            tokio::spawn(webhook::worker(
                client,
                url.clone(),
                name.clone(),
                rx,
                failures_tx.clone(),
            ));
            outputs.push(Output { name, tx });
        }
        if config.notify {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(notify::worker(rx, failures_tx.clone()));
            outputs.push(Output {
                name: "notify".into(),
                tx,
            });
        }
        Ok(Self {
            outputs,
            failures_tx,
            failures,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Queues one JSON object (an alert, or the notice that events were
    /// lost) for every output.
    pub fn send(&mut self, json: &str) {
        for o in &self.outputs {
            if o.tx.try_send(json.to_string()).is_err() {
                report(
                    &self.failures_tx,
                    format!(
                        "{}: {QUEUE} alerts wait already; this one is dropped",
                        o.name
                    ),
                );
            }
        }
    }

    /// The next failure to report. Cancel-safe.
    pub async fn next_failure(&mut self) -> Option<String> {
        self.failures.recv().await
    }
}

/// Reports a failure without waiting: when even the failure queue is
/// full, the daemon has a backlog of them to print already. The message
/// quotes commands, URLs and what a command printed: made safe here, once.
fn report(failures: &mpsc::Sender<String>, message: String) {
    let _ = failures.try_send(portwatch::safe_text::safe_str(&message));
}
