//! The listen confirmation: an open is reported once `listen()` has
//! returned, with the port final (also for a socket that was never bound).
//! The state change (`listen.rs`) remembered the owner and left a pending
//! entry under the calling thread; a `listen()` that failed removed the
//! owner again on its way out (its LISTEN->CLOSE), so an owner still there
//! and still pending is a listener.
//!
//! Two hooks see `listen()` return, and neither runs per connection:
//! - `syscalls:sys_exit_listen`, only at the exit of `listen()` (a syscall
//!   tracepoint makes every syscall of the host take the kernel's traced
//!   exit path, a few ns each: BENCHMARKS.md measures it);
//! - `io_uring:io_uring_complete`, at each io_uring completion, for
//!   `IORING_OP_LISTEN`, which no syscall tracepoint sees: it returns at
//!   once while nothing is pending.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use portwatch_common::{FLAG_OWNER_KNOWN, FLAG_SOCK_COOKIE, LISTEN_CONFIRMED, SockEventKind};

use crate::{
    listen::{new_event, submit, watched_now},
    maps::{OWNERS, PENDING, PENDING_COUNT, SOCK_OFFSETS, pending_added},
};

#[tracepoint(category = "syscalls", name = "sys_exit_listen")]
pub fn listen_exit(_ctx: TracePointContext) -> u32 {
    confirm(bpf_get_current_pid_tgid() as u32);
    0
}

#[btf_tracepoint(function = "io_uring_complete")]
pub fn listen_uring(_ctx: BtfTracePointContext) -> u32 {
    // Every completion of the host comes here: one load while no
    // listen() is pending anywhere.
    if PENDING_COUNT.get(0).is_some_and(|n| *n == 0) {
        return 0;
    }
    confirm(bpf_get_current_pid_tgid() as u32);
    0
}

/// Reports the open left pending by thread `tid`, if its `listen()`
/// succeeded; forgets the pending entry either way.
#[inline(always)]
pub fn confirm(tid: u32) {
    // SAFETY: the entry is copied out before it is removed.
    let Some(pending) = (unsafe { PENDING.get(&tid) }).copied() else {
        return;
    };
    if PENDING.remove(&tid).is_ok() {
        pending_added(u64::MAX);
    }
    let Some(owner) = OWNERS.get_ptr_mut(pending.cookie) else {
        // The listen() failed: its LISTEN->CLOSE removed the owner.
        return;
    };
    // SAFETY: a pointer from a successful lookup, valid for this run. A
    // close on another CPU in the same instant may report the open too;
    // userspace takes an open it already holds once.
    let owner = unsafe {
        if (*owner).listening == LISTEN_CONFIRMED {
            return;
        }
        (*owner).listening = LISTEN_CONFIRMED;
        *owner
    };
    if !watched_now(&owner) {
        return;
    }
    let off = SOCK_OFFSETS.load();
    // SAFETY: a probe read of the socket at a BTF-derived offset; listeners
    // are freed only after an RCU grace period, which a program spans, and
    // a failed read yields port 0, which userspace resolves by a scan.
    let sport =
        unsafe { bpf_probe_read_kernel((pending.sk + off.inet_sport as u64) as *const u16) }
            .unwrap_or(0);
    let mut ev = new_event(
        SockEventKind::Opened,
        pending.cookie,
        &owner,
        owner.family,
        u16::from_be(sport),
        owner.addr,
    );
    ev.flags = FLAG_OWNER_KNOWN | FLAG_SOCK_COOKIE;
    submit(&ev);
}
