//! When the ring buffer's reader looks again without being woken.
//!
//! UDP records wake the reader only when the last record that did so on
//! their CPU is 1 ms old (`portwatch-ebpf/src/udp.rs`): a record sent
//! without a wake-up comes less than 1 ms after one that woke the reader.
//! That one was read by some read (the one its wake-up caused, or one
//! already under way, or a resync's), at or after its commit; or a full
//! ring dropped it, and then the next record on its CPU wakes the reader
//! again, and the drop, once counted, brings a look (`bpf.rs`,
//! `read_counters`). After every
//! read that found UDP records the reader looks again 1 ms later, and
//! keeps looking until two looks in a row found none: the second comes at
//! least 2 ms after that read, past the commit of any record sent within
//! 1 ms of the wake-up. Then an idle monitor sleeps until the next
//! wake-up.
//!
//! A read that found no UDP record (listeners' records, or a wake-up
//! whose record an earlier read took) leaves the looks as they were: a
//! UDP record sent without a wake-up is covered by the looks of the read
//! that found the one before it, and a TCP-only host is not woken twice
//! more after each of its events. (A listener's record behind an unread
//! UDP one wakes no one either, and is read with it.)

/// Looks in a row that found no UDP record before the reader stops.
const EMPTY_LOOKS: u8 = 2;

/// What the reader does about its next look after a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NextLook {
    /// Look again one re-check interval from now.
    Again,
    /// Leave the next look (or none) as it was.
    Unchanged,
    /// No more looks: wait for a wake-up.
    Stop,
}

#[derive(Debug)]
pub(crate) struct Rechecks {
    empty_looks: u8,
}

impl Default for Rechecks {
    /// Idle: nothing read yet, no look due.
    fn default() -> Self {
        Self {
            empty_looks: EMPTY_LOOKS,
        }
    }
}

impl Rechecks {
    /// After a read (`look`: one the re-check timer made; `udp`: it found
    /// UDP records, or records it could not tell apart).
    pub(crate) fn after_read(&mut self, look: bool, udp: bool) -> NextLook {
        if udp {
            self.empty_looks = 0;
            return NextLook::Again;
        }
        if !look {
            return NextLook::Unchanged;
        }
        self.empty_looks = self.empty_looks.saturating_add(1);
        if self.empty_looks < EMPTY_LOOKS {
            NextLook::Again
        } else {
            NextLook::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_records_are_followed_by_two_empty_looks_then_sleep() {
        let mut r = Rechecks::default();
        assert_eq!(r.after_read(false, true), NextLook::Again);
        assert_eq!(
            r.after_read(true, false),
            NextLook::Again,
            "the first empty look is not the last"
        );
        assert_eq!(r.after_read(true, false), NextLook::Stop, "two in a row");
    }

    #[test]
    fn a_read_without_udp_records_leaves_the_looks_alone() {
        // Idle: a listener's record starts no looks.
        let mut r = Rechecks::default();
        assert_eq!(r.after_read(false, false), NextLook::Unchanged);
        // Looking: a listener's record read in between neither counts
        // as an empty look nor moves the next one.
        assert_eq!(r.after_read(false, true), NextLook::Again);
        assert_eq!(r.after_read(false, false), NextLook::Unchanged);
        assert_eq!(r.after_read(true, false), NextLook::Again);
        assert_eq!(r.after_read(false, false), NextLook::Unchanged);
        assert_eq!(r.after_read(true, false), NextLook::Stop);
    }

    #[test]
    fn a_look_that_finds_udp_records_starts_the_count_again() {
        let mut r = Rechecks::default();
        assert_eq!(r.after_read(false, true), NextLook::Again);
        assert_eq!(r.after_read(true, false), NextLook::Again);
        assert_eq!(r.after_read(true, true), NextLook::Again, "found: again");
        assert_eq!(r.after_read(true, false), NextLook::Again);
        assert_eq!(r.after_read(true, false), NextLook::Stop);
        assert_eq!(r.after_read(false, true), NextLook::Again, "starts over");
    }
}
