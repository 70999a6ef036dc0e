//! Process-tree bookkeeping: a child forked by a watched process is watched,
//! however it is later reparented; an exited process is forgotten.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};

use crate::maps::{TREE_OFFSETS, WATCHED};

#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    // Runs in the parent: its thread group decides.
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value (the tree's root) is copied out at once.
    let Some(root) = (unsafe { WATCHED.get(parent) }).copied() else {
        return 0;
    };
    // SAFETY: offset from the format file; a failed read skips the child.
    let Ok(child) = (unsafe { ctx.read_at::<i32>(TREE_OFFSETS.load().fork_child_pid as usize) })
    else {
        return 0;
    };
    // A new thread lands here too (its id is forgotten when it exits).
    let _ = WATCHED.insert(child as u32, root, 0);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tid != tgid {
        let _ = WATCHED.remove(tid);
    }
    let group_dead_off = TREE_OFFSETS.load().exit_group_dead;
    let group_dead = if group_dead_off == u32::MAX {
        tid == tgid
    } else {
        // SAFETY: offset from the format file.
        unsafe { ctx.read_at::<u8>(group_dead_off as usize) }.unwrap_or(0) != 0
    };
    if group_dead {
        let _ = WATCHED.remove(tgid);
    }
    0
}
