//! The listen confirmation: an open is reported once `listen()` has
//! returned, with the port final (also for a socket that was never bound).
//! The state change (`listen.rs`) remembered the owner and, when the call
//! is the native `listen()` syscall, left it pending under the calling
//! thread; a `listen()` that failed removed the owner again on its way out
//! (its LISTEN->CLOSE), so an owner still there and still pending is a
//! listener.
//!
//! The hook, `syscalls:sys_exit_listen`, runs only at the exit of
//! `listen()`, never per connection; but a syscall tracepoint makes every
//! syscall of the host take the kernel's traced exit path, a few ns each
//! (BENCHMARKS.md measures it). A `listen()` it cannot see (io_uring's
//! `IORING_OP_LISTEN`, a 32-bit syscall) is sent unconfirmed, and
//! userspace reports it once the socket tables show it listening.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use portwatch_common::{FLAG_OWNER_KNOWN, FLAG_SOCK_COOKIE, LISTEN_CONFIRMED, SockEventKind};

use crate::{
    listen::{Transition as _, new_event, submit, watched_now},
    maps::{OWNERS, PENDING, SOCK_OFFSETS},
    set_state_btf::Sock,
};

#[tracepoint(category = "syscalls", name = "sys_exit_listen")]
pub fn listen_exit(_ctx: TracePointContext) -> u32 {
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
    // The open's time, taken before the owner is read: should the
    // socket's close on another CPU report it in the same instant and
    // reach the ring first, userspace sees this open as older than that
    // close and drops it.
    // SAFETY: a helper without arguments, valid in tracing programs.
    let ts = unsafe { bpf_ktime_get_boot_ns() };
    let _ = PENDING.remove(&tid);
    let Some(owner) = OWNERS.get_ptr_mut(pending.cookie) else {
        // The listen() failed: its LISTEN->CLOSE removed the owner.
        return;
    };
    // SAFETY: a pointer from a successful lookup, valid for this run. A
    // close on another CPU in the same instant may report the open too:
    // see `ts` above.
    let owner = unsafe {
        // Another thread's call (the socket listened again since): not
        // this one's to confirm.
        if (*owner).listening == LISTEN_CONFIRMED || (*owner).tid != tid {
            return;
        }
        (*owner).listening = LISTEN_CONFIRMED;
        *owner
    };
    if !watched_now(&owner) {
        return;
    }
    // The final port, read as the state change reads it (listeners are
    // freed only after an RCU grace period, which a program spans; a
    // failed read yields port 0, which userspace resolves by a scan).
    let sock = Sock {
        sk: pending.sk,
        off: SOCK_OFFSETS.load(),
        ctx: core::ptr::null_mut(),
    };
    let mut ev = new_event(
        SockEventKind::Opened,
        pending.cookie,
        &owner,
        owner.family,
        sock.port(),
        owner.addr,
    );
    ev.ts_ns = ts;
    ev.flags = FLAG_OWNER_KNOWN | FLAG_SOCK_COOKIE;
    submit(&ev);
}
