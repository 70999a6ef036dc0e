//! The kernel's run counters of this process's own BPF programs, from
//! /proc/self/fdinfo (counted while `kernel.bpf_stats_enabled` is 1).

use std::collections::HashMap;

/// One program's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// Its name as the kernel keeps it (15 bytes at most).
    pub name: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Every BPF program this process holds, summed by name (a program
/// attached twice shows once).
pub(crate) fn own_programs() -> Vec<ProgramStats> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return Vec::new();
    };
    let mut by_id: HashMap<u32, (u64, u64)> = HashMap::new();
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(t), Some(n)) =
            (get("prog_id:"), get("run_time_ns:"), get("run_cnt:"))
            && let Ok(id) = u32::try_from(id)
        {
            by_id.insert(id, (t, n));
        }
    }
    let mut by_name: HashMap<String, (u64, u64)> = HashMap::new();
    for info in aya::programs::loaded_programs().flatten() {
        if let Some(&(t, n)) = by_id.get(&info.id()) {
            let name = crate::safe_text::safe_text(info.name());
            let e = by_name.entry(name).or_default();
            e.0 += t;
            e.1 += n;
        }
    }
    let mut out: Vec<ProgramStats> = by_name
        .into_iter()
        .map(|(name, (run_time_ns, run_count))| ProgramStats {
            name,
            run_time_ns,
            run_count,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
