//! When to rescan procfs: after lost events (spaced, and once more when
//! keys changed during the scan), on an interval, and on request. Pure:
//! the caller passes the time.

use std::time::Duration;

use tokio::time::Instant;

use crate::report::ResyncReason;

/// Minimum spacing of resyncs triggered by drops, so that a storm that
/// keeps overflowing the ring buffer does not turn into a scan loop.
pub(super) const DROP_RESYNC_SPACING: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub(super) struct ResyncSchedule {
    interval: Option<Duration>,
    /// The kernel's drop counter at its last read.
    seen_drops: u64,
    last_start: Option<Instant>,
    due: Option<(Instant, ResyncReason)>,
    /// The due resync is the follow-up of one whose scan raced with
    /// changes after lost events; it schedules no further follow-up.
    follow_up_due: bool,
}

impl ResyncSchedule {
    pub(super) fn new(interval: Option<Duration>, now: Instant) -> Self {
        let mut s = Self {
            interval,
            seen_drops: 0,
            last_start: None,
            due: None,
            follow_up_due: false,
        };
        s.schedule_interval(now);
        s
    }

    /// The next resync and why, if one is scheduled.
    pub(super) fn due(&self) -> Option<(Instant, ResyncReason)> {
        self.due
    }

    /// The kernel's drop counter as last read.
    pub(super) fn drops(&self) -> u64 {
        self.seen_drops
    }

    /// The kernel's drop counter reads `total`: new drops bring a resync,
    /// no sooner than the spacing after the last one started.
    pub(super) fn drops_counted(&mut self, total: u64, now: Instant) {
        if total <= self.seen_drops {
            return;
        }
        self.seen_drops = total;
        // New losses: the resync they bring is no follow-up.
        self.follow_up_due = false;
        let earliest = self
            .last_start
            .map_or(now, |t| t + DROP_RESYNC_SPACING)
            .max(now);
        self.bring_forward(earliest, ResyncReason::Drops);
    }

    /// Opens could not be settled (a listener's port not found, a UDP
    /// socket not looked for): a resync settles them, spaced like those
    /// after drops.
    pub(super) fn unresolved(&mut self, now: Instant) {
        let earliest = self
            .last_start
            .map_or(now, |t| t + DROP_RESYNC_SPACING)
            .max(now);
        self.bring_forward(earliest, ResyncReason::Unresolved);
    }

    /// A resync as soon as possible. One already due for drops keeps its
    /// reason (and its follow-up), only sooner.
    pub(super) fn request(&mut self, now: Instant) {
        let reason = match self.due {
            Some((_, ResyncReason::Drops)) => ResyncReason::Drops,
            _ => ResyncReason::Requested,
        };
        self.due = Some((now, reason));
    }

    /// A resync starts now.
    pub(super) fn start(&mut self, now: Instant) {
        self.due = None;
        self.last_start = Some(now);
    }

    /// The resync is done. `disagreements`: keys that changed while it
    /// scanned and on which table and scan still disagree.
    pub(super) fn finish(&mut self, reason: ResyncReason, disagreements: usize, now: Instant) {
        let was_follow_up = std::mem::take(&mut self.follow_up_due);
        if reason == ResyncReason::Drops && !was_follow_up && disagreements > 0 {
            let before = self.due;
            self.bring_forward(now + DROP_RESYNC_SPACING, ResyncReason::Drops);
            self.follow_up_due = self.due != before;
        }
        self.schedule_interval(now);
    }

    /// Schedules a resync at `at`, unless one is due sooner.
    fn bring_forward(&mut self, at: Instant, reason: ResyncReason) {
        if self.due.is_none_or(|(d, _)| d > at) {
            self.due = Some((at, reason));
        }
    }

    fn schedule_interval(&mut self, now: Instant) {
        if let Some(every) = self.interval
            && self.due.is_none()
        {
            self.due = Some((now + every, ResyncReason::Interval));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn interval_resyncs_follow_each_other() {
        let t0 = Instant::now();
        let mut s = ResyncSchedule::new(Some(60 * 1000 * MS), t0);
        assert_eq!(s.due(), Some((t0 + 60_000 * MS, ResyncReason::Interval)));
        s.start(t0 + 60_000 * MS);
        s.finish(ResyncReason::Interval, 0, t0 + 60_001 * MS);
        assert_eq!(s.due(), Some((t0 + 120_001 * MS, ResyncReason::Interval)));
        assert_eq!(ResyncSchedule::new(None, t0).due(), None);
    }

    #[test]
    fn drops_bring_a_spaced_resync() {
        let t0 = Instant::now();
        let mut s = ResyncSchedule::new(Some(60_000 * MS), t0);
        s.drops_counted(0, t0);
        assert_eq!(s.due().map(|d| d.1), Some(ResyncReason::Interval));
        s.drops_counted(5, t0 + MS);
        assert_eq!(s.due(), Some((t0 + MS, ResyncReason::Drops)));
        s.start(t0 + MS);
        s.finish(ResyncReason::Drops, 0, t0 + 2 * MS);
        // More drops right after: not before the spacing.
        s.drops_counted(9, t0 + 3 * MS);
        assert_eq!(
            s.due(),
            Some((t0 + MS + DROP_RESYNC_SPACING, ResyncReason::Drops))
        );
        assert_eq!(s.drops(), 9);
        // The same count again is nothing new.
        s.drops_counted(9, t0 + 4 * MS);
        assert_eq!(
            s.due(),
            Some((t0 + MS + DROP_RESYNC_SPACING, ResyncReason::Drops))
        );
    }

    #[test]
    fn one_follow_up_after_an_unsettled_drop_resync() {
        let t0 = Instant::now();
        let mut s = ResyncSchedule::new(None, t0);
        s.drops_counted(1, t0);
        s.start(t0);
        s.finish(ResyncReason::Drops, 2, t0 + MS);
        assert_eq!(
            s.due(),
            Some((t0 + MS + DROP_RESYNC_SPACING, ResyncReason::Drops))
        );
        // The follow-up, still unsettled, schedules no other.
        let t1 = t0 + MS + DROP_RESYNC_SPACING;
        s.start(t1);
        s.finish(ResyncReason::Drops, 2, t1 + MS);
        assert_eq!(s.due(), None);
        // An interval resync never schedules a follow-up.
        s.start(t1 + 2 * MS);
        s.finish(ResyncReason::Interval, 3, t1 + 3 * MS);
        assert_eq!(s.due(), None);
    }

    #[test]
    fn new_drops_during_a_follow_up_allow_another() {
        let t0 = Instant::now();
        let mut s = ResyncSchedule::new(None, t0);
        s.drops_counted(1, t0);
        s.start(t0);
        s.finish(ResyncReason::Drops, 1, t0);
        let t1 = t0 + DROP_RESYNC_SPACING;
        s.start(t1);
        s.drops_counted(2, t1);
        // Due again for the new drops (spaced), and not a follow-up.
        assert_eq!(
            s.due(),
            Some((t1 + DROP_RESYNC_SPACING, ResyncReason::Drops))
        );
        s.finish(ResyncReason::Drops, 1, t1 + MS);
        s.start(t1 + DROP_RESYNC_SPACING);
        s.finish(ResyncReason::Drops, 1, t1 + DROP_RESYNC_SPACING);
        assert_eq!(
            s.due().map(|d| d.1),
            Some(ResyncReason::Drops),
            "a follow-up of the resync the new drops brought"
        );
    }

    #[test]
    fn a_request_is_due_now_and_keeps_a_drops_reason() {
        let t0 = Instant::now();
        let mut s = ResyncSchedule::new(Some(60_000 * MS), t0);
        s.request(t0 + MS);
        assert_eq!(s.due(), Some((t0 + MS, ResyncReason::Requested)));
        s.start(t0 + MS);
        s.finish(ResyncReason::Requested, 0, t0 + MS);
        assert_eq!(s.due().map(|d| d.1), Some(ResyncReason::Interval));
        s.drops_counted(3, t0 + 2 * MS);
        s.request(t0 + 3 * MS);
        assert_eq!(s.due(), Some((t0 + 3 * MS, ResyncReason::Drops)));
    }
}
