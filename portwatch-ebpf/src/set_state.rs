//! `sock:inet_sock_set_state`: listen and close of TCP listeners.

use aya_ebpf::{
    Global,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    },
    macros::{map, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use aya_log_ebpf::debug;
use portwatch_common::{AF_INET, IPPROTO_TCP, ListenEvent, ListenKind, SetStateOffsets, tcp_state};

/// Listen events for userspace. The size given here is a default that the
/// loader always overrides with `--ring-buffer`.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Events lost because the ring buffer was full, one counter per CPU.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Record field offsets from the tracepoint's format file, set at load time.
#[unsafe(no_mangle)]
static SET_STATE_OFFSETS: Global<SetStateOffsets> = Global::new(SetStateOffsets::DEFAULT);

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let off = SET_STATE_OFFSETS.load();
    // SAFETY: the offsets come from the format file of this very tracepoint,
    // and a failed read only returns an error.
    let states = unsafe {
        (
            ctx.read_at::<i32>(off.oldstate as usize),
            ctx.read_at::<i32>(off.newstate as usize),
        )
    };
    let (Ok(old), Ok(new)) = states else {
        return 0;
    };
    let kind = if old == tcp_state::CLOSE && new == tcp_state::LISTEN {
        ListenKind::Opened
    } else if old == tcp_state::LISTEN && new == tcp_state::CLOSE {
        ListenKind::Closed
    } else {
        return 0;
    };
    // Only listen transitions get here: the rest is off the hot path.
    emit(&ctx, &off, kind);
    0
}

#[inline(always)]
fn emit(ctx: &TracePointContext, off: &SetStateOffsets, kind: ListenKind) {
    // SAFETY: as above, offsets from the format file; failures are handled.
    let protocol = unsafe { ctx.read_at::<u16>(off.protocol as usize) }.unwrap_or(0);
    if protocol != IPPROTO_TCP {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<ListenEvent>(0) else {
        count_drop();
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: plain helper calls without arguments, valid in tracepoints.
    let (ts_ns, cgroup_id) = unsafe { (bpf_ktime_get_boot_ns(), bpf_get_current_cgroup_id()) };
    // SAFETY: every field is read from the record with offsets from its format
    // file; a failed read leaves a zero that userspace treats as unknown.
    let (skaddr, family, port) = unsafe {
        (
            ctx.read_at::<u64>(off.skaddr as usize).unwrap_or(0),
            ctx.read_at::<u16>(off.family as usize).unwrap_or(0),
            ctx.read_at::<u16>(off.sport as usize).unwrap_or(0),
        )
    };
    let mut addr = [0u8; 16];
    // SAFETY: as above.
    unsafe {
        if family == AF_INET {
            if let Ok(v4) = ctx.read_at::<[u8; 4]>(off.saddr as usize) {
                addr[..4].copy_from_slice(&v4);
            }
        } else if let Ok(v6) = ctx.read_at::<[u8; 16]>(off.saddr_v6 as usize) {
            addr = v6;
        }
    }
    entry.write(ListenEvent {
        ts_ns,
        skaddr,
        cgroup_id,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        kind: kind as u8,
        _pad: 0,
        family,
        port,
        _pad2: [0; 6],
        addr,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(0);
    debug!(ctx, "listen event kind={} port={}", kind as u8, port);
}

#[inline(always)]
fn count_drop() {
    if let Some(counter) = DROPS.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and
        // the pointer comes from a successful map lookup.
        unsafe { *counter += 1 };
    }
}
