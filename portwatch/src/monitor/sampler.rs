//! CPU and memory samples of the processes that own listeners: CPU use is
//! the CPU time used since the previous sample. Pure apart from the host.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::{report::ProcessSample, sys::Host};

/// Keeps the previous CPU time of each process.
#[derive(Default)]
pub(crate) struct Sampler {
    prev: HashMap<u32, (u64, Instant)>,
}

impl Sampler {
    /// One sample per live process in `pids` (pid, name). A process seen
    /// for the first time reports 0% CPU: there is no interval yet.
    pub(super) fn sample(
        &mut self,
        host: &dyn Host,
        pids: &[(u32, String)],
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Vec<ProcessSample> {
        let mut next = HashMap::new();
        let mut out = Vec::new();
        for (pid, comm) in pids {
            let Some(usage) = host.process_usage(*pid) else {
                continue;
            };
            let cpu_percent = match self.prev.get(pid) {
                Some(&(before, at)) => cpu_percent(
                    before,
                    usage.cpu_ticks,
                    now.duration_since(at).as_secs_f64(),
                    host.ticks_per_second(),
                ),
                None => 0.0,
            };
            next.insert(*pid, (usage.cpu_ticks, now));
            out.push(ProcessSample {
                pid: *pid,
                comm: comm.clone(),
                cpu_percent,
                rss_bytes: usage.rss_bytes,
                ts: wall,
            });
        }
        self.prev = next;
        out
    }
}

/// CPU use over an interval, in percent of one CPU.
pub(crate) fn cpu_percent(
    ticks_before: u64,
    ticks_now: u64,
    seconds: f64,
    ticks_per_second: u64,
) -> f64 {
    if seconds <= 0.0 || ticks_per_second == 0 {
        return 0.0;
    }
    let used = ticks_now.saturating_sub(ticks_before) as f64 / ticks_per_second as f64;
    used / seconds * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_ticks() {
        assert_eq!(cpu_percent(100, 150, 1.0, 100), 50.0);
        assert_eq!(cpu_percent(0, 400, 2.0, 100), 200.0, "two busy CPUs");
        assert_eq!(
            cpu_percent(10, 5, 1.0, 100),
            0.0,
            "a counter never goes back"
        );
        assert_eq!(cpu_percent(0, 10, 0.0, 100), 0.0);
    }
}
