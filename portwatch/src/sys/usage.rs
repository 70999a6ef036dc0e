//! CPU and memory of the processes that own listeners, from procfs.

use std::{collections::HashMap, time::Instant};

use chrono::Utc;

use crate::rules::eval::ProcessSample;

/// Keeps the previous CPU time of each process, so that each sample gives
/// the CPU used since the last one.
pub struct Sampler {
    prev: HashMap<u32, (u64, Instant)>,
    ticks_per_second: u64,
    page_size: u64,
}

impl Sampler {
    pub fn new() -> Self {
        Self {
            prev: HashMap::new(),
            ticks_per_second: procfs::ticks_per_second().max(1),
            page_size: procfs::page_size(),
        }
    }

    /// One sample per live process in `pids` (pid, name). A process seen
    /// for the first time reports 0% CPU: there is no interval yet.
    pub fn sample(&mut self, pids: &[(u32, String)]) -> Vec<ProcessSample> {
        let now = Instant::now();
        let mut next = HashMap::new();
        let mut out = Vec::new();
        for (pid, comm) in pids {
            let Ok(stat) = procfs::process::Process::new(*pid as i32).and_then(|p| p.stat()) else {
                continue;
            };
            let ticks = stat.utime + stat.stime;
            let cpu_percent = match self.prev.get(pid) {
                Some(&(before, at)) => cpu_percent(
                    before,
                    ticks,
                    now.duration_since(at).as_secs_f64(),
                    self.ticks_per_second,
                ),
                None => 0.0,
            };
            next.insert(*pid, (ticks, now));
            out.push(ProcessSample {
                pid: *pid,
                comm: comm.clone(),
                cpu_percent,
                rss_bytes: stat.rss * self.page_size,
                ts: Utc::now(),
            });
        }
        self.prev = next;
        out
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// CPU use over an interval, in percent of one CPU.
pub fn cpu_percent(ticks_before: u64, ticks_now: u64, seconds: f64, ticks_per_second: u64) -> f64 {
    if seconds <= 0.0 {
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
