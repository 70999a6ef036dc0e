//! When the ring buffer's reader looks again without being woken.
//!
//! UDP records wake the reader only when the last record that did so on
//! their CPU is 1 ms old (`portwatch-ebpf/src/udp.rs`): a record sent
//! without a wake-up comes less than 1 ms after one that woke the reader,
//! and so after a read that wake-up caused (or one already under way).
//! After every such read the reader looks again 1 ms later, and keeps
//! looking until two looks in a row found nothing: the second comes at
//! least 2 ms after the read, past the commit of any record sent within
//! 1 ms of its wake-up. Then an idle monitor sleeps until the next wake-up.

/// Looks in a row that found nothing before the reader stops looking.
const EMPTY_LOOKS: u8 = 2;

#[derive(Debug, Default)]
pub(crate) struct Rechecks {
    empty_looks: u8,
}

impl Rechecks {
    /// After a read (`woken`: one a wake-up caused; `bytes`: what it
    /// read): whether to look again.
    pub(crate) fn after_read(&mut self, woken: bool, bytes: u64) -> bool {
        if woken || bytes > 0 {
            self.empty_looks = 0;
            return true;
        }
        self.empty_looks = self.empty_looks.saturating_add(1);
        self.empty_looks < EMPTY_LOOKS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_followed_by_two_empty_looks_then_sleep() {
        let mut r = Rechecks::default();
        assert!(r.after_read(true, 128));
        assert!(
            r.after_read(false, 0),
            "the first empty look is not the last"
        );
        assert!(!r.after_read(false, 0), "two in a row: sleep");
    }

    #[test]
    fn a_wake_up_that_found_nothing_still_looks_again() {
        // Its record was read by an earlier read; one sent within 1 ms
        // after it, without a wake-up, must still be found.
        let mut r = Rechecks::default();
        assert!(r.after_read(true, 0));
        assert!(r.after_read(false, 0));
        assert!(!r.after_read(false, 0));
    }

    #[test]
    fn a_look_that_finds_records_starts_the_count_again() {
        let mut r = Rechecks::default();
        assert!(r.after_read(true, 128));
        assert!(r.after_read(false, 0));
        assert!(r.after_read(false, 256), "records found: look again");
        assert!(r.after_read(false, 0));
        assert!(!r.after_read(false, 0));
        assert!(r.after_read(true, 128), "a new wake-up starts over");
    }
}
