//! The boot-time clock that kernel events are stamped with, and its
//! conversion to wall-clock time.

use chrono::{DateTime, TimeDelta, Utc};
use rustix::time::{ClockId, clock_gettime};

/// Wall-clock time minus boot time, taken once: kernel events carry
/// `bpf_ktime_get_boot_ns()`, which counts from boot and includes suspend.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BootClock {
    realtime_at_zero: DateTime<Utc>,
}

impl BootClock {
    /// From one reading of both clocks, taken together.
    pub fn new(boot_ns: u64, wall: DateTime<Utc>) -> Self {
        let boot = TimeDelta::nanoseconds(i64::try_from(boot_ns).unwrap_or(i64::MAX));
        Self {
            realtime_at_zero: wall - boot,
        }
    }

    /// The wall-clock time of a kernel boot-time timestamp.
    pub fn to_wall(self, boot_ns: u64) -> DateTime<Utc> {
        self.realtime_at_zero + TimeDelta::nanoseconds(i64::try_from(boot_ns).unwrap_or(i64::MAX))
    }
}

/// The current boot-time timestamp, comparable with kernel events.
pub(crate) fn boot_now_ns() -> u64 {
    let ts = clock_gettime(ClockId::Boottime);
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_times_map_to_wall_times() {
        let wall = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let clock = BootClock::new(100_000_000_000, wall);
        assert_eq!(clock.to_wall(100_000_000_000), wall);
        assert_eq!(
            clock.to_wall(99_500_000_000),
            DateTime::from_timestamp(1_700_000_099, 500_000_000).unwrap()
        );
    }
}
