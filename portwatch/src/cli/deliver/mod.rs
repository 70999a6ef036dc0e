//! Where the daemon delivers alerts besides its own output: commands
//! (`--exec`), webhooks (`--webhook`) and desktop notifications
//! (`--notify`). Each output has a bounded queue
//! and workers of its own; the monitor loop only ever adds to a queue
//! without waiting, so a failing, hanging or slow output never holds up
//! the monitor or another output. What goes wrong comes back as one
//! sentence per failure, for the daemon to print.
//!
//! No alert is lost without a word: an alert dropped because its
//! output's queue is full is counted, and so is a failure report that
//! finds the daemon's own queue of them full; the daemon prints the
//! counts, and each alert is in exactly one of them.

mod cgroup;
mod exec;
pub mod notify;
pub(crate) mod webhook;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use portwatch::wire::Line;
use tokio::sync::mpsc;

/// Alerts queued per output before more are dropped (and said so).
const QUEUE: usize = 256;

/// How the outputs run.
#[derive(Clone)]
pub struct DeliveryConfig {
    pub exec: Vec<String>,
    pub exec_timeout: Duration,
    pub webhooks: Vec<String>,
    pub webhook_timeout: Duration,
    /// Desktop notifications on the session bus.
    pub notify: bool,
}

/// Without the webhooks' secrets.
impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let webhooks: Vec<String> = self.webhooks.iter().map(|u| webhook::shown(u)).collect();
        f.debug_struct("DeliveryConfig")
            .field("exec", &self.exec)
            .field("exec_timeout", &self.exec_timeout)
            .field("webhooks", &webhooks)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("notify", &self.notify)
            .finish()
    }
}

/// One line for the outputs: typed for those that read it (desktop
/// notifications), and its JSON, written once, for those that pass it on.
pub struct Delivery {
    pub line: Line,
    pub json: String,
}

struct Output {
    /// What it is called in failure reports, e.g. `exec notify.sh`.
    name: String,
    tx: mpsc::Sender<Arc<Delivery>>,
    /// Alerts dropped since `dropped_since` and not yet reported. Only
    /// the daemon's loop adds to it ([`Deliveries::send`]) and takes it
    /// ([`Deliveries::next_failure`]).
    dropped: u64,
    dropped_since: Option<chrono::DateTime<chrono::Utc>>,
    /// The same for drifts, which may take half the queue only.
    drifts_dropped: u64,
    drifts_dropped_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Its failure reports that found the queue of them full.
    unshown: Arc<AtomicU64>,
}

/// How an output's workers report a failure.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<String>,
    unshown: Arc<AtomicU64>,
}

impl Reporter {
    /// Queues a failure without waiting: when the queue of them is full
    /// (the daemon has a backlog to print already), it is counted
    /// instead, and the count printed. The message quotes commands,
    /// URLs and what a command printed: made safe here, once.
    pub fn report(&self, message: String) {
        let message = portwatch::safe_text::safe_str(&message);
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(message) {
            self.unshown.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How an `--exec` output is named in reports: its place and its program,
/// not the whole command, which may carry a token
/// (`curl -H 'Authorization: ...'`).
fn exec_name(index: usize, cmd: &str) -> String {
    let program: String = cmd
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .chars()
        .take(40)
        .collect();
    format!("exec #{} ({program})", index + 1)
}

/// Reports a failure: see [`Reporter::report`].
fn report(failures: &Reporter, message: String) {
    failures.report(message);
}

/// Every output, and the failures they report.
pub struct Deliveries {
    outputs: Vec<Output>,
    failures_tx: mpsc::Sender<String>,
    failures: mpsc::Receiver<String>,
    /// The output whose counts are looked at first next time, so that
    /// each is reported in turn.
    next_count: usize,
}

impl Deliveries {
    /// Starts a worker per output. Needs a tokio runtime.
    pub fn start(config: &DeliveryConfig) -> anyhow::Result<Self> {
        let (failures_tx, failures) = mpsc::channel(QUEUE);
        let mut this = Self {
            outputs: Vec::new(),
            failures_tx,
            failures,
            next_count: 0,
        };
        let cgroups = if config.exec.is_empty() {
            None
        } else {
            match cgroup::Parent::find() {
                Ok(parent) => Some(parent),
                Err(why) => {
                    crate::log::warn(&portwatch::safe_text::safe_str(&format!(
                        "--exec commands get no cgroup of their own ({why}), so a command's child that leaves its process group is not killed with it"
                    )));
                    None
                }
            }
        };
        for (i, cmd) in config.exec.iter().enumerate() {
            let (name, rx, reporter) = this.add(exec_name(i, cmd));
            tokio::spawn(exec::worker(
                cmd.clone(),
                config.exec_timeout,
                cgroups.clone(),
                name,
                rx,
                reporter,
            ));
        }
        for url in &config.webhooks {
            let client = webhook::client(config.webhook_timeout)?;
            let (name, rx, reporter) = this.add(format!("webhook {}", webhook::shown(url)));
            tokio::spawn(webhook::worker(client, url.clone(), name, rx, reporter));
        }
        if config.notify {
            let (_, rx, reporter) = this.add("notify".into());
            tokio::spawn(notify::worker(rx, reporter));
        }
        Ok(this)
    }

    /// A new output's queue and reporter.
    fn add(&mut self, name: String) -> (String, mpsc::Receiver<Arc<Delivery>>, Reporter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let unshown = Arc::new(AtomicU64::new(0));
        self.outputs.push(Output {
            name: name.clone(),
            tx,
            dropped: 0,
            dropped_since: None,
            drifts_dropped: 0,
            drifts_dropped_since: None,
            unshown: unshown.clone(),
        });
        let reporter = Reporter {
            tx: self.failures_tx.clone(),
            unshown,
        };
        (name, rx, reporter)
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Queues one line (an alert, or the notice that events were lost)
    /// for every output; where the queue is full, it is counted.
    pub fn send(&mut self, line: Line) {
        let delivery = Arc::new(Delivery {
            json: line.to_json(),
            line,
        });
        for o in &mut self.outputs {
            if o.tx.try_send(delivery.clone()).is_err() {
                o.dropped += 1;
                o.dropped_since.get_or_insert_with(chrono::Utc::now);
            }
        }
    }

    /// Queues a drift for every output whose queue is less than half
    /// full: a user who opens listeners against the policy must not crowd
    /// alerts out. Where it is not queued, it is counted.
    pub fn send_drift(&mut self, line: Line) {
        let delivery = Arc::new(Delivery {
            json: line.to_json(),
            line,
        });
        for o in &mut self.outputs {
            if o.tx.capacity() <= o.tx.max_capacity() / 2
                || o.tx.try_send(delivery.clone()).is_err()
            {
                o.drifts_dropped += 1;
                o.drifts_dropped_since.get_or_insert_with(chrono::Utc::now);
            }
        }
    }

    /// The next failure to report: the counts of dropped alerts and of
    /// failures not queued first (taken, and so reset, here), then the
    /// queued failures. Cancel-safe. Drops are counted by this same loop
    /// ([`Self::send`]) between two calls; a failure is counted only when
    /// the queue is full, so that `recv` returns at once and the next
    /// call takes the count: no count waits for a wake-up.
    pub async fn next_failure(&mut self) -> Option<String> {
        if let Some(counted) = self.take_count() {
            return Some(counted);
        }
        self.failures.recv().await
    }

    /// At stop: every report not yet taken (counts, queued failures), and
    /// for each output the alerts still waiting in its queue, which will
    /// not be delivered now.
    pub fn remaining(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(counted) = self.take_count() {
            out.push(counted);
        }
        while let Ok(failure) = self.failures.try_recv() {
            out.push(failure);
        }
        for o in &self.outputs {
            let waiting = o.tx.max_capacity() - o.tx.capacity();
            if waiting > 0 {
                out.push(portwatch::safe_text::safe_str(&format!(
                    "{waiting} {} still queued for {} when the daemon stopped: not delivered",
                    if waiting == 1 { "alert" } else { "alerts" },
                    o.name
                )));
            }
        }
        out
    }

    /// One output's count, as a sentence, and that count reset.
    fn take_count(&mut self) -> Option<String> {
        let n = self.outputs.len();
        for i in 0..n {
            let k = (self.next_count + i) % n;
            let Some(o) = self.outputs.get_mut(k) else {
                continue;
            };
            let message = if o.drifts_dropped > 0 {
                let count = std::mem::take(&mut o.drifts_dropped);
                let since = o.drifts_dropped_since.take().map_or_else(String::new, |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                });
                format!(
                    "{count} {} not delivered to {} since {since} (drifts may take half its queue of {QUEUE}; the rest is kept for alerts)",
                    if count == 1 { "drift" } else { "drifts" },
                    o.name
                )
            } else if o.dropped > 0 {
                let count = std::mem::take(&mut o.dropped);
                let since = o.dropped_since.take().map_or_else(String::new, |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                });
                format!(
                    "{count} {} not delivered to {} since {since} (its queue of {QUEUE} was full)",
                    if count == 1 { "alert" } else { "alerts" },
                    o.name
                )
            } else {
                match o.unshown.swap(0, Ordering::Relaxed) {
                    0 => continue,
                    1 => format!("1 more failure of {} not shown", o.name),
                    count => format!("{count} more failures of {} not shown", o.name),
                }
            };
            self.next_count = (k + 1) % n;
            return Some(portwatch::safe_text::safe_str(&message));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Deliveries {
        let (failures_tx, failures) = mpsc::channel(QUEUE);
        Deliveries {
            outputs: Vec::new(),
            failures_tx,
            failures,
            next_count: 0,
        }
    }

    #[tokio::test]
    async fn drops_are_counted_and_the_count_taken_when_reported() {
        let mut d = empty();
        let (_, _rx, _) = d.add("exec a".into());
        for _ in 0..QUEUE + 44 {
            d.send(Line::refusal("x"));
        }
        let first = d.next_failure().await.unwrap_or_default();
        assert!(
            first.starts_with("44 alerts not delivered to exec a since ")
                && first.ends_with(" (its queue of 256 was full)"),
            "{first}"
        );
        d.send(Line::refusal("x"));
        assert_eq!(
            d.next_failure()
                .await
                .unwrap_or_default()
                .split(" since ")
                .next(),
            Some("1 alert not delivered to exec a")
        );
    }

    #[tokio::test]
    async fn drifts_take_half_the_queue_and_leave_the_rest_to_alerts() {
        let mut d = empty();
        let (_, _rx, _) = d.add("webhook w".into());
        for _ in 0..QUEUE {
            d.send_drift(Line::refusal("drift"));
        }
        let told = d.next_failure().await.unwrap_or_default();
        assert!(
            told.starts_with(&format!(
                "{} drifts not delivered to webhook w since ",
                QUEUE / 2
            )),
            "{told}"
        );
        // Every alert still finds room.
        for _ in 0..QUEUE / 2 {
            d.send(Line::refusal("alert"));
        }
        assert!(d.take_count().is_none());
    }

    #[tokio::test]
    async fn failures_that_find_the_queue_full_are_counted() {
        let mut d = empty();
        let (_, _rx, reporter) = d.add("webhook x".into());
        for i in 0..QUEUE + 3 {
            reporter.report(format!("failure {i}"));
        }
        assert_eq!(
            d.next_failure().await.as_deref(),
            Some("3 more failures of webhook x not shown")
        );
        assert_eq!(d.next_failure().await.as_deref(), Some("failure 0"));
    }
}
