//! What a host offers portwatch, as `portwatch doctor` reads it: plain
//! data, judged by [`crate::doctor`], read by the OS boundary.

/// What the checks look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// `uname -r`.
    pub kernel: String,
    pub btf: bool,
    /// Where tracefs is mounted, if it is.
    pub tracefs: Option<String>,
    /// The cgroup v2 root, if mounted.
    pub cgroup2: Option<String>,
    /// This process's effective capabilities.
    pub cap_eff: u64,
    /// The active lockdown mode (`none`, `integrity`, `confidentiality`),
    /// when the kernel has lockdown.
    pub lockdown: Option<String>,
    pub perf_event_paranoid: Option<i64>,
    pub unprivileged_bpf_disabled: Option<i64>,
    /// RLIMIT_MEMLOCK's hard limit, bytes (None: unlimited): portwatch
    /// raises its soft limit up to it.
    pub memlock: Option<u64>,
}
