//! UDP, which has no state changes to trace: cgroup sock programs.
//! `post_bind4`/`post_bind6`, at the cgroup v2 root, run in the bind()
//! caller's context once the port is assigned (bind to port 0 shows the
//! real port); `sock_release` runs when a socket is released. A socket is
//! named by its cookie (the release hook cannot read the port): the bind
//! records its owner under the cookie, the release looks it up and
//! forgets it.
//!
//! The release program runs for every socket released under the cgroups
//! it is attached to, TCP connections included, so userspace attaches it
//! only to the cgroups of the UDP sockets it reports (`RELEASE_CGROUPS`),
//! or at the root (`RELEASE_EVERYWHERE`). A bind in a cgroup it does not
//! run for records no owner (none would be taken) and says so in its
//! event, with the socket's cgroup: userspace covers it and records the
//! owner itself.
//!
//! A UDP churn sends hundreds of thousands of records a second, and a
//! reader that has caught up would be woken for each one: UDP records
//! wake it only when the last wake-up on this CPU is `WAKE_AFTER_NS` old
//! or the ring is filling; the reader looks again shortly after each
//! read for what came in between (`portwatch/src/sys/ring_recheck.rs`).
//!
//! In the aggregate mode (`--udp-aggregate`) a bind is only counted, per
//! process and port class and per CPU, in `UDP_BINDS`: userspace reads
//! the tally now and then and finds the sockets that lived on. The
//! release then reports only the sockets userspace seeded the owner map
//! with.
//!
//! The bind programs run for every bind() on the host, the release
//! program for every socket release where it is attached, and one that
//! returned 0 would make the bind() or close fail: every path returns
//! `ALLOW`, whatever happens to the map or the ring.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::bpf_get_socket_cookie,
    },
    macros::cgroup_sock,
    programs::SockContext,
};
use portwatch_common::{
    AF_INET, AF_INET6, COUNTER_BINDS_FULL, COUNTER_OWNERS_FULL, FLAG_OWNER_KNOWN,
    FLAG_RELEASE_UNSEEN, FLAG_SOCK_COOKIE, IPPROTO_UDP, SockEvent, SockEventKind,
    UDP_CLASS_EPHEMERAL, UDP_CLASS_OTHER, UDP_CLASS_SYSTEM, UDP_STAGE_OWNER, UDP_STAGE_RETURN,
    UdpAggregate, UdpBindKey, UdpBindTally,
};

use crate::{
    listen::{current_task_owner, new_event, submit_with, watched_now},
    maps::{
        EVENTS, FILTER_TREE, LAST_WAKE, OWNERS, RELEASE_CGROUPS, RELEASE_EVERYWHERE, SOCK_OFFSETS,
        UDP_AGGREGATE, UDP_BINDS, UDP_STAGE, WAKE_BYTES, WATCHED, count,
    },
};

/// What a cgroup sock program returns to let the operation go on.
const ALLOW: i32 = 1;

/// `IPPROTO_UDPLITE`: UDP-Lite sockets bind the same way.
const IPPROTO_UDPLITE: u32 = 136;

/// A UDP record wakes the reader if the last one that did on this CPU is
/// this old: an isolated bind is read at once, a churn wakes the reader
/// about 1,000 times a second per CPU. Shorter intervals cost the churn
/// dearly here (BENCHMARKS.md, "UDP"): each wake-up is a switch to the
/// reader on a busy core.
const WAKE_AFTER_NS: u64 = 1_000_000;

/// Whether this is a UDP socket the programs work on: at the benchmark's
/// first stage, none is.
#[inline(always)]
fn is_udp(ctx: &SockContext) -> bool {
    // SAFETY: a read of this program's own context.
    let protocol = unsafe { (*ctx.sock).protocol };
    (protocol == u32::from(IPPROTO_UDP) || protocol == IPPROTO_UDPLITE)
        && UDP_STAGE.load() != UDP_STAGE_RETURN
}

/// Whether events are sent: not at the benchmark's owner-only stage.
#[inline(always)]
fn sends() -> bool {
    UDP_STAGE.load() != UDP_STAGE_OWNER
}

/// Records the owner of a bound UDP socket and reports the open.
#[inline(always)]
fn bound(ctx: &SockContext, family: u16, addr: [u8; 16]) {
    // SAFETY: a read of this program's own context (host order).
    let port = unsafe { (*ctx.sock).src_port } as u16;
    let aggregate = UDP_AGGREGATE.load();
    // A bind the tally has no room for (another user can fill it with
    // processes) is reported one by one, as without the mode.
    if aggregate.on != 0 && tally(port, &aggregate) {
        return;
    }
    // SAFETY: the context is this program's own socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock.cast()) };
    let mut owner = current_task_owner(socket_net(ctx));
    owner.family = family;
    owner.addr = addr;
    owner.listening = 1;
    // SAFETY: the value is only tested for presence.
    let watched = FILTER_TREE.load() == 0 || unsafe { WATCHED.get(owner.tgid) }.is_some();
    owner.watched = watched as u32;
    // Where no release program runs, an owner recorded here would never
    // be removed: userspace records it once the program is attached. The
    // socket's cgroup is read only then.
    let unseen = unseen_cgroup(ctx);
    if unseen.is_none() && OWNERS.insert(cookie, owner, 0).is_err() {
        count(COUNTER_OWNERS_FULL);
    }
    if watched && sends() {
        let mut ev = new_event(SockEventKind::Opened, cookie, &owner, family, port, addr);
        ev.proto = IPPROTO_UDP as u8;
        ev.flags = FLAG_OWNER_KNOWN | FLAG_SOCK_COOKIE;
        if let Some(cgroup) = unseen {
            ev.flags |= FLAG_RELEASE_UNSEEN;
            ev.sock_cgroup = cgroup;
        }
        submit(&ev);
    }
}

/// The socket's cgroup v2 id: its creator's at socket(), whose programs
/// run at its release (`sk->sk_cgrp_data.cgroup->kn->id`; cgroup sock
/// programs have no helper for it). 0 when unknown.
#[inline(always)]
fn socket_cgroup(ctx: &SockContext) -> u64 {
    let off = SOCK_OFFSETS.load();
    if off.valid == 0 || off.sk_cgrp_data == 0 {
        return 0;
    }
    // SAFETY: probe reads at BTF-derived offsets, from the socket (the
    // context, as in `socket_net`) through its cgroup to the cgroup's
    // kernfs node; a failed read is 0, unknown.
    unsafe {
        let sk = ctx.sock as u64;
        let Ok(cgroup) = bpf_probe_read_kernel((sk + u64::from(off.sk_cgrp_data)) as *const u64)
        else {
            return 0;
        };
        let Ok(kn) = bpf_probe_read_kernel((cgroup + u64::from(off.cgroup_kn)) as *const u64)
        else {
            return 0;
        };
        bpf_probe_read_kernel((kn + u64::from(off.kernfs_node_id)) as *const u64).unwrap_or(0)
    }
}

/// None when a release program runs for this socket (attached at the
/// root, or at its cgroup); else the cgroup to attach it to, 0 when
/// unknown (which only the root covers).
#[inline(always)]
fn unseen_cgroup(ctx: &SockContext) -> Option<u64> {
    if RELEASE_EVERYWHERE.get(0).is_some_and(|on| *on != 0) {
        return None;
    }
    let cgroup = socket_cgroup(ctx);
    // SAFETY: the value is only tested for presence.
    if cgroup != 0 && unsafe { RELEASE_CGROUPS.get(&cgroup) }.is_some() {
        None
    } else {
        Some(cgroup)
    }
}

/// The address of the `struct net` the socket lives in, which its port is
/// bound in: its creator's at socket(), not necessarily the binder's. 0
/// when unknown.
#[inline(always)]
fn socket_net(ctx: &SockContext) -> u64 {
    let off = SOCK_OFFSETS.load();
    if off.valid == 0 {
        return 0;
    }
    // SAFETY: a probe read inside the socket at a BTF-derived offset: the
    // context is the socket's `struct sock` (cgroup sock programs run on
    // it), and a root loader may hand its address to a probe read. A
    // failed read is 0, unknown.
    unsafe { bpf_probe_read_kernel((ctx.sock as u64 + u64::from(off.skc_net)) as *const u64) }
        .unwrap_or(0)
}

/// Counts a bind in the aggregate mode's tally: one lookup and an add on
/// this CPU's count, an entry made once per process and class. False
/// when the tally is full: the bind is then the caller's to report.
#[inline(always)]
fn tally(port: u16, aggregate: &UdpAggregate) -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is only tested for presence.
    if FILTER_TREE.load() != 0 && unsafe { WATCHED.get(tgid) }.is_none() {
        return true;
    }
    let class = if port < 1024 {
        UDP_CLASS_SYSTEM
    } else if (aggregate.ephemeral_lo..=aggregate.ephemeral_hi).contains(&port) {
        UDP_CLASS_EPHEMERAL
    } else {
        UDP_CLASS_OTHER
    };
    let key = UdpBindKey { tgid, class };
    if add_one(&key) {
        return true;
    }
    let tally = UdpBindTally {
        binds: 1,
        comm: bpf_get_current_comm().unwrap_or_default(),
    };
    // BPF_NOEXIST: another CPU may have made the entry meanwhile, and
    // then this bind adds to it.
    if UDP_BINDS.insert(key, tally, u64::from(BPF_NOEXIST)).is_ok() || add_one(&key) {
        return true;
    }
    count(COUNTER_BINDS_FULL);
    false
}

/// Adds one to this CPU's count of `key`, if the entry exists.
#[inline(always)]
fn add_one(key: &UdpBindKey) -> bool {
    match UDP_BINDS.get_ptr_mut(key) {
        Some(tally) => {
            // SAFETY: this CPU's slot, from a successful lookup. Atomic:
            // a program preempted on this CPU by another bind's must not
            // lose a count.
            unsafe {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*tally).binds, 1)
            };
            true
        }
        None => false,
    }
}

/// Sends a UDP record; wakes the reader only when it is due (see the
/// module's notes), or counts the record lost when the ring is full.
#[inline(always)]
fn submit(ev: &SockEvent) {
    let wake = wake_due(ev.ts_ns);
    let flags = if wake {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if !submit_with(ev, u64::from(flags)) && wake {
        // A full ring took no record and woke no one: the next record
        // on this CPU must not count on this one's wake-up (the reader's
        // looks follow the reads of UDP records, `sys/ring_recheck.rs`).
        forget_wake();
    }
}

/// Makes the next UDP record on this CPU wake the reader.
#[inline(always)]
fn forget_wake() {
    if let Some(last) = LAST_WAKE.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, touched only by programs on this CPU,
        // from a successful lookup.
        unsafe { *last = 0 };
    }
}

#[inline(always)]
fn wake_due(now: u64) -> bool {
    let Some(last) = LAST_WAKE.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: a per-CPU slot, touched only by programs on this CPU, from
    // a successful lookup.
    unsafe {
        if now.wrapping_sub(*last) >= WAKE_AFTER_NS
            || EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= WAKE_BYTES.load()
        {
            *last = now;
            true
        } else {
            false
        }
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
    if watched_now(&owner) && sends() {
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
