//! The host facts `portwatch doctor` judges (see [`crate::doctor`]).

use crate::facts::Facts;

fn sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn read() -> Facts {
    let status = procfs::process::Process::myself()
        .and_then(|me| me.status())
        .ok();
    let mounts = procfs::process::Process::myself()
        .and_then(|me| me.mountinfo())
        .map(|m| m.0)
        .unwrap_or_default();
    let tracefs = mounts
        .iter()
        .find(|m| m.fs_type == "tracefs")
        .map(|m| m.mount_point.display().to_string());
    // "[none] integrity confidentiality": the active one is bracketed.
    let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown")
        .ok()
        .and_then(|t| {
            let start = t.find('[')? + 1;
            let end = t[start..].find(']')? + start;
            Some(t[start..end].to_string())
        });
    // The hard limit: portwatch raises its soft limit up to it.
    let memlock = rustix::process::getrlimit(rustix::process::Resource::Memlock).maximum;
    let securityfs = mounts.iter().any(|m| m.fs_type == "securityfs");
    Facts {
        kernel: rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned(),
        btf: std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
        tracefs,
        cgroup2: super::cgroup::root_dir().map(|p| p.display().to_string()),
        cap_eff: status.map_or(0, |s| s.capeff),
        lockdown: if securityfs {
            lockdown
        } else {
            Some("unknown (securityfs is not mounted)".into())
        },
        perf_event_paranoid: sysctl("/proc/sys/kernel/perf_event_paranoid"),
        unprivileged_bpf_disabled: sysctl("/proc/sys/kernel/unprivileged_bpf_disabled"),
        memlock,
    }
}
