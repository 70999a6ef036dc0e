//! Converts kernel boot-time timestamps to wall-clock time.

use chrono::{DateTime, TimeDelta, Utc};

/// Wall-clock time minus boot time, taken once: kernel events carry
/// `bpf_ktime_get_boot_ns()`, which counts from boot and includes suspend.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    realtime_at_zero: DateTime<Utc>,
}

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist on every
    // Linux kernel portwatch supports, so the call cannot fail.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl BootClock {
    pub fn new() -> Self {
        let boot = now_ns(libc::CLOCK_BOOTTIME);
        let real = now_ns(libc::CLOCK_REALTIME);
        let offset = i64::try_from(real - boot).unwrap_or(0);
        Self {
            realtime_at_zero: DateTime::from_timestamp_nanos(offset),
        }
    }

    /// The wall-clock time of a kernel boot-time timestamp.
    pub fn to_wall(&self, boot_ns: u64) -> DateTime<Utc> {
        self.realtime_at_zero + TimeDelta::nanoseconds(i64::try_from(boot_ns).unwrap_or(i64::MAX))
    }

    /// The current boot-time timestamp, comparable with kernel events.
    pub fn boot_now_ns() -> u64 {
        u64::try_from(now_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}
