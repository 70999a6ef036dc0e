//! Checks, before touching the kernel, that this process may load eBPF.

use crate::error::{Error, Result};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Whether an effective capability set allows loading and attaching
/// tracepoint programs and reading every process's sockets.
pub(crate) fn caps_allow_ebpf(cap_eff: u64) -> bool {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// Fails with [`Error::NotPermitted`] when this process lacks the capabilities.
pub(crate) fn require_ebpf_privileges() -> Result<()> {
    let status = procfs::process::Process::myself()
        .and_then(|me| me.status())
        .map_err(|source| Error::Procfs {
            what: "this process's capabilities",
            source,
        })?;
    if caps_allow_ebpf(status.capeff) {
        Ok(())
    } else {
        Err(Error::NotPermitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        assert!(caps_allow_ebpf(u64::MAX));
        assert!(caps_allow_ebpf(1 << CAP_SYS_ADMIN));
        assert!(caps_allow_ebpf((1 << CAP_BPF) | (1 << CAP_PERFMON)));
        assert!(!caps_allow_ebpf(1 << CAP_BPF));
        assert!(!caps_allow_ebpf(0));
    }
}
