//! The settle time: a live open is held until it has lived that long, and
//! one that closes sooner is not reported at all, open or close. Tools
//! that probe a port before they listen on it for real (Vite opens and
//! closes `0.0.0.0` and `::` first) then make no forwarder start and stop.
//! Pure: time is passed in.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

use crate::event::{Change, ListenerKey, PortEvent, Source};

/// Opens waiting out the settle time, oldest first.
#[derive(Debug)]
pub(super) struct Settle {
    delay: Duration,
    held: VecDeque<(Instant, PortEvent)>,
}

impl Settle {
    pub(super) fn new(delay: Duration) -> Self {
        Self {
            delay,
            held: VecDeque::new(),
        }
    }

    /// Takes one port event at `now`; returns what may be reported now
    /// (in order: the event itself, or nothing).
    pub(super) fn offer(&mut self, ev: PortEvent, now: Instant) -> Option<PortEvent> {
        // The baseline and scans' corrections are no probes: at once.
        if matches!(ev.source, Source::Baseline | Source::Resync) {
            return self.pass(ev);
        }
        match ev.change {
            Change::Opened => {
                self.held.push_back((now + self.delay, ev));
                None
            }
            Change::Closed => self.pass(ev),
        }
    }

    /// A close of a held open cancels both; other events pass.
    fn pass(&mut self, ev: PortEvent) -> Option<PortEvent> {
        if ev.change == Change::Closed {
            let key: ListenerKey = ev.listener.key();
            if let Some(i) = self.held.iter().position(|(_, h)| h.listener.key() == key) {
                self.held.remove(i);
                return None;
            }
        }
        Some(ev)
    }

    /// The opens that have lived out the settle time by `now`.
    pub(super) fn release(&mut self, now: Instant) -> Vec<PortEvent> {
        let mut out = Vec::new();
        while self.held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, ev)) = self.held.pop_front() {
                out.push(ev);
            }
        }
        out
    }

    /// When the oldest held open is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.held.front().map(|(due, _)| *due)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::event::{Listener, Proto};

    fn ev(change: Change, port: u16, source: Source) -> PortEvent {
        PortEvent {
            change,
            listener: Listener {
                pid: 1,
                comm: "vite".into(),
                netns: 1,
                ..Listener::new(Proto::Tcp, "0.0.0.0".parse().unwrap(), port)
            },
            ts: DateTime::UNIX_EPOCH,
            source,
        }
    }

    #[test]
    fn a_probe_that_closes_within_the_settle_time_is_not_reported() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Settle::new(ms(50));
        // Vite's probe: open and close at once; then the real listener.
        assert!(
            s.offer(ev(Change::Opened, 5173, Source::Ebpf), t0)
                .is_none()
        );
        assert!(
            s.offer(ev(Change::Closed, 5173, Source::Ebpf), t0 + ms(1))
                .is_none()
        );
        assert!(
            s.offer(ev(Change::Opened, 5173, Source::Ebpf), t0 + ms(2))
                .is_none()
        );
        assert_eq!(s.next_due(), Some(t0 + ms(52)));
        assert!(s.release(t0 + ms(51)).is_empty());
        let out = s.release(t0 + ms(52));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].change, Change::Opened);
        // Its close, later, passes.
        let closed = s.offer(ev(Change::Closed, 5173, Source::Ebpf), t0 + ms(500));
        assert!(closed.is_some());
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn the_baseline_and_resyncs_pass_at_once() {
        let t0 = Instant::now();
        let mut s = Settle::new(Duration::from_secs(1));
        assert!(
            s.offer(ev(Change::Opened, 22, Source::Baseline), t0)
                .is_some()
        );
        assert!(
            s.offer(ev(Change::Opened, 80, Source::Resync), t0)
                .is_some()
        );
        assert!(
            s.offer(ev(Change::Closed, 80, Source::Resync), t0)
                .is_some()
        );
    }
}
