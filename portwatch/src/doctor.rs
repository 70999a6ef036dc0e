//! `portwatch doctor`: what this host offers, checked in order, and the
//! first thing that stops portwatch named with its fix. Pure: the facts
//! are gathered elsewhere ([`crate::host::doctor_facts`]).

use serde::Serialize;

pub use crate::facts::Facts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    Ok,
    /// Works, with less.
    Warn,
    /// portwatch cannot watch with eBPF until this is fixed.
    Fail,
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do, when it is not ok.
    pub fix: Option<String>,
}

/// The capabilities portwatch needs, all of them: what a unit or a pod
/// grants it (the packaging's test checks they name each).
pub const CAPABILITIES: &[&str] = &[
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_NET_ADMIN",
    "CAP_SYS_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_DAC_READ_SEARCH",
];

/// The host's paths the checks below look at: the kernel's BTF, tracefs,
/// the cgroup v2 hierarchy.
pub const HOST_PATHS: &[&str] = &["/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup"];

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn check(check: &'static str, status: Status, detail: String, fix: Option<&str>) -> Check {
    Check {
        check,
        status,
        detail,
        fix: fix.map(String::from),
    }
}

/// (major, minor) of a kernel release such as `6.18.44-fc`.
fn version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Every check, in order.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    use Status::{Fail, Ok, Warn};
    let mut out = Vec::new();
    let v = version(&f.kernel);
    out.push(match v {
        Some(v) if v >= (5, 8) => check(
            "kernel",
            Ok,
            format!("{} (ring buffers need 5.8)", f.kernel),
            None,
        ),
        _ => check(
            "kernel",
            Fail,
            format!(
                "{} is older than 5.8, which BPF ring buffers need",
                f.kernel
            ),
            Some("run a kernel of 5.8 or newer, or use --backend procfs"),
        ),
    });
    out.push(if f.btf {
        check("btf", Ok, "/sys/kernel/btf/vmlinux".into(), None)
    } else {
        check(
            "btf",
            Warn,
            "no kernel BTF: the classic tracepoint is used, without socket cookies or namespaces"
                .into(),
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
        )
    });
    out.push(match &f.tracefs {
        Some(p) => check("tracefs", Ok, p.clone(), None),
        None => check(
            "tracefs",
            Warn,
            "not mounted: --pid and --hook tracepoint need it (portwatch mounts it when it may)"
                .into(),
            Some("mount -t tracefs nodev /sys/kernel/tracing"),
        ),
    });
    out.push(match &f.cgroup2 {
        Some(p) => check("cgroup2", Ok, p.clone(), None),
        None => check(
            "cgroup2",
            Warn,
            "no cgroup v2 root mounted: UDP is not watched".into(),
            Some("mount -t cgroup2 none /sys/fs/cgroup/unified"),
        ),
    });
    let has = |cap: u32| f.cap_eff & (1u64 << cap) != 0;
    let can_load = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
    let missing: Vec<&str> = [
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
        (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
    ]
    .into_iter()
    .filter(|(c, _)| !has(*c))
    .map(|(_, n)| n)
    .collect();
    out.push(if !can_load {
        check(
            "capabilities",
            Fail,
            format!("missing {}: the programs cannot be loaded", missing.join(", ")),
            Some("run as root (sudo), or grant CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN"),
        )
    } else if missing.is_empty() {
        check(
            "capabilities",
            Ok,
            "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH".into(),
            None,
        )
    } else {
        check(
            "capabilities",
            Warn,
            format!(
                "missing {}: no UDP without CAP_NET_ADMIN, no other namespaces without CAP_SYS_ADMIN, other users' sockets without owners without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH",
                missing.join(", ")
            ),
            Some("grant the capabilities listed"),
        )
    });
    out.push(match f.lockdown.as_deref() {
        Some("confidentiality") => check(
            "lockdown",
            Fail,
            "confidentiality: the kernel refuses the programs' reads of kernel memory".into(),
            Some("boot with lockdown=integrity or none"),
        ),
        Some(mode) => check("lockdown", Ok, mode.to_string(), None),
        None => check("lockdown", Ok, "not built in".into(), None),
    });
    out.push(match f.perf_event_paranoid {
        Some(p) if p > 2 && !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) => check(
            "perf_event_paranoid",
            Fail,
            format!("{p}, and no CAP_PERFMON: tracepoints cannot be attached"),
            Some("grant CAP_PERFMON (or run as root)"),
        ),
        Some(p) => check("perf_event_paranoid", Ok, p.to_string(), None),
        None => check("perf_event_paranoid", Ok, "not present".into(), None),
    });
    out.push(match f.unprivileged_bpf_disabled {
        Some(v) if v != 0 && !can_load => check(
            "unprivileged_bpf_disabled",
            Fail,
            format!("{v}: without capabilities, bpf() is refused"),
            Some("run as root (sudo)"),
        ),
        Some(v) => check("unprivileged_bpf_disabled", Ok, v.to_string(), None),
        None => check("unprivileged_bpf_disabled", Ok, "not present".into(), None),
    });
    let memcg = v.is_some_and(|v| v >= (5, 11));
    out.push(match f.memlock {
        Some(b) if !memcg && b < 64 << 20 => check(
            "memlock",
            Fail,
            format!("{} KiB; before 5.11 BPF maps count against it", b >> 10),
            Some("raise it: ulimit -l unlimited, or LimitMEMLOCK=infinity in the unit"),
        ),
        Some(b) => check(
            "memlock",
            Ok,
            format!(
                "{} KiB{}",
                b >> 10,
                if memcg {
                    " (not used for BPF since 5.11)"
                } else {
                    ""
                }
            ),
            None,
        ),
        None => check("memlock", Ok, "unlimited".into(), None),
    });
    out
}

/// The first check that stops portwatch, if any.
pub fn blocker(checks: &[Check]) -> Option<&Check> {
    checks.iter().find(|c| c.status == Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Facts {
        Facts {
            kernel: "6.18.44-fc".into(),
            btf: true,
            tracefs: Some("/sys/kernel/tracing".into()),
            cgroup2: Some("/sys/fs/cgroup".into()),
            cap_eff: (1 << CAP_BPF)
                | (1 << CAP_PERFMON)
                | (1 << CAP_SYS_PTRACE)
                | (1 << CAP_DAC_READ_SEARCH)
                | (1 << CAP_NET_ADMIN)
                | (1 << CAP_SYS_ADMIN),
            lockdown: Some("none".into()),
            perf_event_paranoid: Some(2),
            unprivileged_bpf_disabled: Some(2),
            memlock: Some(8 << 20),
        }
    }

    #[test]
    fn a_good_host_has_no_blocker() {
        let checks = evaluate(&good());
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
        assert!(blocker(&checks).is_none());
    }

    #[test]
    fn each_fault_is_named_with_its_fix_and_the_first_one_blocks() {
        let cases: [(Facts, &str); 5] = [
            (
                Facts {
                    cap_eff: 0,
                    ..good()
                },
                "capabilities",
            ),
            (
                Facts {
                    kernel: "4.19.0".into(),
                    ..good()
                },
                "kernel",
            ),
            (
                Facts {
                    lockdown: Some("confidentiality".into()),
                    ..good()
                },
                "lockdown",
            ),
            (
                Facts {
                    kernel: "5.10.0".into(),
                    memlock: Some(64 << 10),
                    ..good()
                },
                "memlock",
            ),
            (
                Facts {
                    cap_eff: 0,
                    kernel: "4.9".into(),
                    ..good()
                },
                "kernel",
            ),
        ];
        for (facts, expected) in cases {
            let checks = evaluate(&facts);
            let b = blocker(&checks).unwrap();
            assert_eq!(b.check, expected, "{checks:?}");
            assert!(b.fix.is_some());
        }
        // Missing tracefs or cgroup2: warnings, no blocker.
        let checks = evaluate(&Facts {
            tracefs: None,
            cgroup2: None,
            ..good()
        });
        assert!(blocker(&checks).is_none());
        assert_eq!(
            checks.iter().filter(|c| c.status == Status::Warn).count(),
            2
        );
    }
}
