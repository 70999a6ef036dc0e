//! The UDP aggregate mode's arithmetic (`--udp-aggregate`). The kernel
//! counts UDP binds per process and port class, each count since its
//! entry was made; every settle interval the engine turns those totals
//! into the binds of the interval, and forgets the entries of processes
//! that exited. Pure: the engine reads the kernel and /proc.

use std::collections::HashMap;

use crate::report::{BindCount, BindKey};

/// Binds of one process and class in one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeriodBinds {
    pub key: BindKey,
    pub binds: u64,
    pub comm: Vec<u8>,
}

/// What one interval's reading gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Binds in the interval, by key, in key order; none with zero binds.
    pub binds: Vec<PeriodBinds>,
    /// Entries of exited processes, read in full: the kernel's copy can
    /// go.
    pub forget: Vec<BindKey>,
}

/// The totals read last time, by key.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    seen: HashMap<BindKey, u64>,
}

impl Tally {
    /// Turns the kernel's totals into the binds since the last reading.
    /// `alive` says whether a process still exists: an exited one's entry
    /// is forgotten on both sides once read, so that the tally does not
    /// fill with the dead. A total lower than last time is an entry made
    /// again (the old one forgotten): all of it is new.
    pub(crate) fn read(&mut self, totals: &[BindCount], alive: impl Fn(u32) -> bool) -> Reading {
        let mut reading = Reading::default();
        let mut now = HashMap::with_capacity(totals.len());
        for c in totals {
            let before = self.seen.get(&c.key).copied().unwrap_or(0);
            let binds = if c.binds >= before {
                c.binds - before
            } else {
                c.binds
            };
            if binds > 0 {
                reading.binds.push(PeriodBinds {
                    key: c.key,
                    binds,
                    comm: c.comm.clone(),
                });
            }
            if alive(c.key.pid) {
                now.insert(c.key, c.binds);
            } else {
                reading.forget.push(c.key);
            }
        }
        // Entries gone from the kernel's side are gone from ours.
        self.seen = now;
        reading.binds.sort_by_key(|b| b.key);
        reading.forget.sort();
        reading
    }
}

#[cfg(test)]
mod tests {
    use portwatch_common::{UDP_CLASS_EPHEMERAL, UDP_CLASS_OTHER, UDP_CLASS_SYSTEM};

    use super::*;
    use crate::report::PortClass;

    fn count(pid: u32, class: PortClass, binds: u64) -> BindCount {
        BindCount {
            key: BindKey { pid, class },
            binds,
            comm: b"churn".to_vec(),
        }
    }

    fn binds(r: &Reading) -> Vec<(u32, PortClass, u64)> {
        r.binds
            .iter()
            .map(|b| (b.key.pid, b.key.class, b.binds))
            .collect()
    }

    #[test]
    fn intervals_count_what_came_since() {
        let mut t = Tally::default();
        let r = t.read(&[count(7, PortClass::Ephemeral, 10)], |_| true);
        assert_eq!(binds(&r), [(7, PortClass::Ephemeral, 10)]);
        let r = t.read(
            &[
                count(7, PortClass::Ephemeral, 15),
                count(7, PortClass::System, 1),
            ],
            |_| true,
        );
        assert_eq!(
            binds(&r),
            [(7, PortClass::System, 1), (7, PortClass::Ephemeral, 5)]
        );
        // Nothing new: nothing told.
        let r = t.read(
            &[
                count(7, PortClass::Ephemeral, 15),
                count(7, PortClass::System, 1),
            ],
            |_| true,
        );
        assert!(r.binds.is_empty());
        assert!(r.forget.is_empty());
    }

    #[test]
    fn exited_processes_are_read_once_then_forgotten() {
        let mut t = Tally::default();
        t.read(&[count(7, PortClass::Ephemeral, 10)], |_| true);
        let r = t.read(&[count(7, PortClass::Ephemeral, 12)], |_| false);
        assert_eq!(binds(&r), [(7, PortClass::Ephemeral, 2)]);
        assert_eq!(
            r.forget,
            [BindKey {
                pid: 7,
                class: PortClass::Ephemeral
            }]
        );
        // The pid comes back (reused) with an entry made anew: every bind
        // of it is new, none is taken for the old process's.
        let r = t.read(&[count(7, PortClass::Ephemeral, 3)], |_| true);
        assert_eq!(binds(&r), [(7, PortClass::Ephemeral, 3)]);
    }

    #[test]
    fn an_entry_made_again_counts_in_full() {
        let mut t = Tally::default();
        t.read(&[count(9, PortClass::Other, 100)], |_| true);
        let r = t.read(&[count(9, PortClass::Other, 4)], |_| true);
        assert_eq!(binds(&r), [(9, PortClass::Other, 4)]);
    }

    #[test]
    fn classes_follow_the_kernel() {
        let eph = 32768..=60999;
        assert_eq!(PortClass::of(53, &eph), PortClass::System);
        assert_eq!(PortClass::of(1023, &eph), PortClass::System);
        assert_eq!(PortClass::of(1024, &eph), PortClass::Other);
        assert_eq!(PortClass::of(32768, &eph), PortClass::Ephemeral);
        assert_eq!(PortClass::of(60999, &eph), PortClass::Ephemeral);
        assert_eq!(PortClass::of(61000, &eph), PortClass::Other);
        for (n, c) in [
            (UDP_CLASS_SYSTEM, PortClass::System),
            (UDP_CLASS_EPHEMERAL, PortClass::Ephemeral),
            (UDP_CLASS_OTHER, PortClass::Other),
        ] {
            assert_eq!(PortClass::from_kernel(n), Some(c));
            assert_eq!(c.kernel(), n);
        }
        assert_eq!(PortClass::from_kernel(3), None);
    }
}
