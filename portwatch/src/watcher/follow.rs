//! The daemon's lines, one at a time, into what a connected watcher
//! reports: a baseline (after connecting, or after a `lost` line) is
//! gathered until its `ready` line and reconciled with what was reported
//! before; live opens and closes are reported as they come. Plain logic:
//! no socket.

use super::{PortChange, view::View};
use crate::{
    event::{Change, Listener},
    monitor::MonitorEvent,
    safe_text::safe_str,
    wire::Line,
};

/// What one line means to the watcher's user.
#[derive(Debug)]
pub(crate) enum Step {
    Change(PortChange),
    /// A baseline was reconciled and reported: live from here.
    Ready,
    /// The daemon said this client missed that many events; its fresh
    /// baseline follows.
    Missed(u64),
    /// A line of a newer daemon's that this version cannot read (a value
    /// it does not know): skipped, never guessed at. Reconnecting would
    /// not help, as the daemon would say it again.
    Skipped(String),
}

/// Why the connection cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The daemon's refusal, made safe.
    Refused(String),
    /// A line that is no JSON object: whatever sent it, its next lines
    /// cannot be trusted to be in step.
    Malformed(String),
}

/// The most sockets a daemon may say are open (in a baseline, or live):
/// a peer that says more is no portwatch daemon, and is not believed
/// further (each is memory here).
pub(crate) const MAX_OPEN: usize = 1 << 18;

pub(crate) struct Follower {
    view: View,
    /// The baseline read so far, until its ready line; None while live.
    baseline: Option<Vec<Listener>>,
}

impl Follower {
    pub(crate) fn new() -> Self {
        Self {
            view: View::default(),
            baseline: Some(Vec::new()),
        }
    }

    /// A new connection: a baseline comes first.
    pub(crate) fn connected(&mut self) {
        self.baseline = Some(Vec::new());
    }

    /// Reads one line, adding what it means to `out`.
    /// Reads one line of the daemon's.
    pub(crate) fn line(&mut self, text: &str, out: &mut Vec<Step>) -> Result<(), Stop> {
        let line = match Line::parse(text) {
            Ok(line) => line,
            Err(why) if is_json_object(text) => {
                out.push(Step::Skipped(why));
                return Ok(());
            }
            Err(why) => return Err(Stop::Malformed(why)),
        };
        match line {
            Line::Error(refusal) => return Err(Stop::Refused(safe_str(&refusal.message))),
            Line::Lost(lost) => {
                self.baseline = Some(Vec::new());
                out.push(Step::Missed(lost.events));
            }
            // A ready line while live says nothing new.
            Line::Ready(_) => {
                if let Some(baseline) = self.baseline.take() {
                    out.extend(self.view.reconcile(baseline).into_iter().map(Step::Change));
                    out.push(Step::Ready);
                }
            }
            line @ (Line::Opened(_) | Line::Closed(_)) => {
                let Some(MonitorEvent::Port(ev)) = line.into_monitor_event() else {
                    return Ok(());
                };
                // More sockets than a host holds: no daemon of ours.
                let held = self.baseline.as_ref().map_or(self.view.keys(), Vec::len);
                if ev.change == Change::Opened && held >= MAX_OPEN {
                    return Err(Stop::Malformed(format!(
                        "it says more than {MAX_OPEN} sockets are open"
                    )));
                }
                match (&mut self.baseline, ev.change) {
                    (Some(baseline), Change::Opened) => baseline.push(ev.listener),
                    (Some(baseline), Change::Closed) => {
                        let l = &ev.listener;
                        let same = |b: &Listener| b.key() == l.key();
                        if let Some(i) = baseline
                            .iter()
                            .position(|b| same(b) && b.pid == l.pid)
                            .or_else(|| baseline.iter().position(same))
                        {
                            baseline.swap_remove(i);
                        }
                    }
                    (None, Change::Opened) => out.push(Step::Change(self.view.opened(ev.listener))),
                    (None, Change::Closed) => {
                        if let Some(change) = self.view.closed(&ev.listener) {
                            out.push(Step::Change(change));
                        }
                    }
                }
            }
            // Resyncs, alerts, notices, exposure changes, events this
            // version does not know: no port opened or closed.
            _ => {}
        }
        Ok(())
    }
}

/// Whether `text` is one JSON object, whatever its fields.
fn is_json_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{PortEvent, Proto, Source},
        watcher::view::tests::{listener, said},
    };

    fn opened(port: u16, pid: u32, source: Source) -> String {
        Line::from(&PortEvent {
            change: Change::Opened,
            listener: listener(Proto::Tcp, port, pid),
            ts: chrono::DateTime::UNIX_EPOCH,
            source,
        })
        .to_json()
    }

    fn closed(port: u16, pid: u32) -> String {
        Line::from(&PortEvent {
            change: Change::Closed,
            listener: listener(Proto::Tcp, port, pid),
            ts: chrono::DateTime::UNIX_EPOCH,
            source: Source::Ebpf,
        })
        .to_json()
    }

    const READY: &str =
        r#"{"event":"ready","backend":"ebpf","listeners":1,"ts":"2026-12-01T10:00:00.123456Z"}"#;

    /// Feeds lines; what they meant, in short.
    fn feed(f: &mut Follower, lines: &[String]) -> Result<Vec<String>, Stop> {
        let mut out = Vec::new();
        for l in lines {
            f.line(l, &mut out)?;
        }
        Ok(out
            .iter()
            .map(|s| match s {
                Step::Change(c) => said(c),
                Step::Ready => "ready".into(),
                Step::Missed(n) => format!("missed {n}"),
                Step::Skipped(_) => "skipped".into(),
            })
            .collect())
    }

    #[test]
    fn a_baseline_is_reported_at_its_ready_line_then_live_lines_as_they_come() {
        let mut f = Follower::new();
        let b = Source::Baseline;
        assert_eq!(
            feed(&mut f, &[opened(80, 1, b), opened(81, 1, b)]).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            feed(
                &mut f,
                &[
                    READY.into(),
                    opened(82, 1, Source::Ebpf),
                    closed(80, 1),
                    // A close of what was never reported: nothing.
                    closed(99, 1),
                ]
            )
            .unwrap(),
            [
                "opened tcp 80 pid 1",
                "opened tcp 81 pid 1",
                "ready",
                "opened tcp 82 pid 1",
                "closed tcp 80 pid 1",
            ]
        );
        // The daemon said this client missed events: its fresh baseline
        // is reconciled, not reported again whole.
        assert_eq!(
            feed(
                &mut f,
                &[
                    Line::lost(7, chrono::DateTime::UNIX_EPOCH).to_json(),
                    opened(82, 1, b),
                    opened(83, 1, b),
                    READY.into(),
                ]
            )
            .unwrap(),
            [
                "missed 7",
                "closed tcp 81 pid 1",
                "opened tcp 83 pid 1",
                "ready"
            ]
        );
        // A reconnection: the same.
        f.connected();
        assert_eq!(
            feed(&mut f, &[opened(83, 1, b), READY.into()]).unwrap(),
            ["closed tcp 82 pid 1", "ready"]
        );
    }

    #[test]
    fn other_lines_are_skipped_and_a_refusal_ends_the_connection() {
        let mut f = Follower::new();
        let said = feed(
            &mut f,
            &[
                r#"{"event":"something_new","x":1}"#.into(),
                r#"{"event":"warning","message":"m","ts":"2026-12-01T10:00:00.123456Z"}"#.into(),
                READY.into(),
                // A newer daemon's value: skipped, said.
                r#"{"event":"opened","proto":"sctp","address":"::1","port":1,"pid":1,"comm":"c","uid":0,"netns":1,"cgroup":"/","container":null,"ts":"2026-12-01T10:00:00.123456Z","source":"ebpf"}"#.into(),
            ],
        )
        .unwrap();
        assert_eq!(said, ["ready", "skipped"]);
        let refusal = r#"{"event":"error","message":"process 1 belongs to another user: only root may watch it\u001b[2J"}"#;
        assert_eq!(
            feed(&mut f, &[refusal.into()]),
            Err(Stop::Refused(
                "process 1 belongs to another user: only root may watch it\\x1b[2J".into()
            ))
        );
    }

    #[test]
    fn a_line_that_is_no_json_object_ends_the_connection() {
        for bad in ["not json", "{\"event\":", "[1,2]", "42"] {
            let mut f = Follower::new();
            match feed(&mut f, &[bad.into()]) {
                Err(Stop::Malformed(why)) => assert!(why.contains("cannot read"), "{why}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
