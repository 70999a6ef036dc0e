//! CPU time and resident memory of a process, from /proc/PID/stat.

/// What one read of a process's stat gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcessUsage {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_bytes: u64,
}

pub(crate) struct UsageReader {
    ticks_per_second: u64,
    page_size: u64,
}

impl UsageReader {
    pub(crate) fn new() -> Self {
        Self {
            ticks_per_second: procfs::ticks_per_second().max(1),
            page_size: procfs::page_size(),
        }
    }

    pub(crate) fn ticks_per_second(&self) -> u64 {
        self.ticks_per_second
    }

    /// `None` when the process is gone.
    pub(crate) fn read(&self, pid: u32) -> Option<ProcessUsage> {
        let stat = procfs::process::Process::new(i32::try_from(pid).ok()?)
            .and_then(|p| p.stat())
            .ok()?;
        Some(ProcessUsage {
            cpu_ticks: stat.utime + stat.stime,
            rss_bytes: stat.rss.saturating_mul(self.page_size),
        })
    }
}
