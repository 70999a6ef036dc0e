//! UDP, which has no state changes to trace: cgroup sock programs at the
//! cgroup v2 root. `post_bind4`/`post_bind6` run in the bind() caller's
//! context once the port is assigned (bind to port 0 shows the real port);
//! `sock_release` runs when a socket is released. A socket is named by its
//! cookie (the release hook cannot read the port): the bind records its
//! owner under the cookie, the release looks it up and forgets it.
//!
//! These programs run for every bind() and every socket release on the
//! host, and one that returned 0 would make the bind() or close fail:
//! every path returns `ALLOW`, whatever happens to the map or the ring.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_socket_cookie},
    macros::cgroup_sock,
    programs::SockContext,
};
use portwatch_common::{
    AF_INET, AF_INET6, COUNTER_OWNERS_FULL, FLAG_OWNER_KNOWN, FLAG_SOCK_COOKIE, IPPROTO_UDP,
    SockEventKind,
};

use crate::{
    listen::{current_task_owner, new_event, submit, watched_now},
    maps::{FILTER_TREE, OWNERS, WATCHED, count},
};

/// What a cgroup sock program returns to let the operation go on.
const ALLOW: i32 = 1;

/// `IPPROTO_UDPLITE`: UDP-Lite sockets bind the same way.
const IPPROTO_UDPLITE: u32 = 136;

#[inline(always)]
fn is_udp(ctx: &SockContext) -> bool {
    // SAFETY: a read of this program's own context.
    let protocol = unsafe { (*ctx.sock).protocol };
    protocol == u32::from(IPPROTO_UDP) || protocol == IPPROTO_UDPLITE
}

/// Records the owner of a bound UDP socket and reports the open.
#[inline(always)]
fn bound(ctx: &SockContext, family: u16, addr: [u8; 16]) {
    // SAFETY: a read of this program's own context (host order).
    let port = unsafe { (*ctx.sock).src_port } as u16;
    // SAFETY: the context is this program's own socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    let mut owner = current_task_owner();
    owner.family = family;
    owner.addr = addr;
    owner.listening = 1;
    // SAFETY: the value is only tested for presence.
    let watched = FILTER_TREE.load() == 0 || unsafe { WATCHED.get(owner.tgid) }.is_some();
    owner.watched = watched as u32;
    if OWNERS.insert(cookie, owner, 0).is_err() {
        count(COUNTER_OWNERS_FULL);
    }
    if watched {
        let mut ev = new_event(SockEventKind::Opened, cookie, &owner, family, port, addr);
        ev.proto = IPPROTO_UDP as u8;
        ev.flags = FLAG_OWNER_KNOWN | FLAG_SOCK_COOKIE;
        submit(&ev);
    }
}

#[cgroup_sock(post_bind4)]
pub fn udp_post_bind4(ctx: SockContext) -> i32 {
    if is_udp(&ctx) {
        // SAFETY: a read of this program's own context; the address is in
        // network order, so its bytes in memory are the address's.
        let ip4 = unsafe { (*ctx.sock).src_ip4 }.to_ne_bytes();
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&ip4);
        bound(&ctx, AF_INET, addr);
    }
    ALLOW
}

#[cgroup_sock(post_bind6)]
pub fn udp_post_bind6(ctx: SockContext) -> i32 {
    if is_udp(&ctx) {
        // SAFETY: reads of this program's own context, one word at a time
        // (the verifier wants each context read at a constant offset).
        let words = unsafe {
            [
                core::ptr::read_volatile(&(*ctx.sock).src_ip6[0]),
                core::ptr::read_volatile(&(*ctx.sock).src_ip6[1]),
                core::ptr::read_volatile(&(*ctx.sock).src_ip6[2]),
                core::ptr::read_volatile(&(*ctx.sock).src_ip6[3]),
            ]
        };
        let mut addr = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        bound(&ctx, AF_INET6, addr);
    }
    ALLOW
}

/// The release of a UDP socket whose bind was recorded (or whose owner
/// userspace seeded from its baseline): reported closed, forgotten.
#[cgroup_sock(sock_release)]
pub fn udp_sock_release(ctx: SockContext) -> i32 {
    if !is_udp(&ctx) {
        return ALLOW;
    }
    // SAFETY: the context is this program's own socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    // SAFETY: the entry is copied out before it is removed.
    let Some(owner) = (unsafe { OWNERS.get(cookie) }).copied() else {
        return ALLOW;
    };
    let _ = OWNERS.remove(cookie);
    if watched_now(&owner) {
        // The release cannot read the port: userspace knows it from the
        // open, by cookie.
        let mut ev = new_event(
            SockEventKind::Closed,
            cookie,
            &owner,
            owner.family,
            0,
            owner.addr,
        );
        ev.proto = IPPROTO_UDP as u8;
        ev.closer_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        ev.flags = FLAG_OWNER_KNOWN | FLAG_SOCK_COOKIE;
        submit(&ev);
    }
    ALLOW
}
