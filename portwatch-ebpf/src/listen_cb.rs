//! The listen callback: a sock_ops program at the cgroup v2 root. The
//! kernel calls it with `BPF_SOCK_OPS_TCP_LISTEN_CB` only after a
//! `listen()` succeeded, with the port final (also for a socket that was
//! never bound), so an open reported from here is a real listener. The
//! state change (`listen.rs`) remembered the owner a moment earlier, in
//! the same task.
//!
//! The kernel calls sock_ops programs at several points of every TCP
//! connection; for all but the listen callback this returns at once.

use aya_ebpf::{
    bindings::BPF_SOCK_OPS_TCP_LISTEN_CB, helpers::generated::bpf_get_socket_cookie,
    macros::sock_ops, programs::SockOpsContext,
};
use portwatch_common::{FLAG_OWNER_KNOWN, FLAG_SOCK_COOKIE, SockEventKind};

use crate::{
    listen::{new_event, submit, watched_now},
    maps::OWNERS,
};

/// What a sock_ops program returns to let the operation go on.
const ALLOW: u32 = 1;

#[sock_ops]
pub fn sock_ops_listen(ctx: SockOpsContext) -> u32 {
    if ctx.op() != BPF_SOCK_OPS_TCP_LISTEN_CB {
        return ALLOW;
    }
    // SAFETY: the context is this program's own sock_ops context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    let Some(owner) = OWNERS.get_ptr_mut(cookie) else {
        // No owner remembered: the state change reported the open itself
        // (its map was full), or ran before it was attached (the baseline
        // scan covers that socket).
        return ALLOW;
    };
    // SAFETY: a pointer from a successful lookup; only this socket's two
    // transitions, serialised by the socket lock, touch its entry.
    let owner = unsafe {
        (*owner).listening = 1;
        *owner
    };
    if !watched_now(&owner) {
        return ALLOW;
    }
    // The port is final now (host order); the address is the one the
    // state change recorded: listen() does not change it.
    let port = ctx.local_port() as u16;
    let mut ev = new_event(
        SockEventKind::Opened,
        cookie,
        &owner,
        owner.family,
        port,
        owner.addr,
    );
    ev.flags = FLAG_OWNER_KNOWN | FLAG_SOCK_COOKIE;
    submit(&ev);
    ALLOW
}
