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
    pub(crate) fn new(boot_ns: u64, wall: DateTime<Utc>) -> Self {
        let boot = TimeDelta::nanoseconds(i64::try_from(boot_ns).unwrap_or(i64::MAX));
        Self {
            realtime_at_zero: wall - boot,
        }
    }

    /// The wall-clock time of a kernel boot-time timestamp.
    pub(crate) fn to_wall(self, boot_ns: u64) -> DateTime<Utc> {
        self.realtime_at_zero + TimeDelta::nanoseconds(i64::try_from(boot_ns).unwrap_or(i64::MAX))
    }
}

/// The current boot-time timestamp, comparable with kernel events: inside
/// a time namespace, `CLOCK_BOOTTIME` runs the namespace's offset ahead
/// of (or behind) the host's, which the kernel's programs read; the offset
/// is taken back out.
pub(crate) fn boot_now_ns() -> u64 {
    let ts = clock_gettime(ClockId::Boottime);
    let ns = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec);
    let host = ns - boottime_offset_ns();
    u64::try_from(host.max(0)).unwrap_or(u64::MAX)
}

/// This process's time namespace's boot-time offset, read once (0 outside
/// one, or when the file is missing: kernels before 5.6).
fn boottime_offset_ns() -> i128 {
    static OFFSET: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::fs::read_to_string("/proc/self/timens_offsets")
            .ok()
            .and_then(|t| parse_boottime_offset(&t))
            .unwrap_or(0)
    })
}

/// The `boottime SECS NSECS` line of `/proc/PID/timens_offsets`, in ns.
fn parse_boottime_offset(text: &str) -> Option<i128> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "boottime" {
            return None;
        }
        let secs: i128 = words.next()?.parse().ok()?;
        let nsecs: i128 = words.next()?.parse().ok()?;
        Some(secs * 1_000_000_000 + nsecs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_namespaces_boottime_offset_is_read() {
        let text = "monotonic           0         0\nboottime        86400       500\n";
        assert_eq!(parse_boottime_offset(text), Some(86_400_000_000_500));
        assert_eq!(
            parse_boottime_offset("boottime -5 0\n"),
            Some(-5_000_000_000)
        );
        assert_eq!(parse_boottime_offset("monotonic 1 0\n"), None);
    }

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
