//! The listen transitions: remember the owner at LISTEN, name it at CLOSE.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
};
use portwatch_common::{
    AF_INET, COUNTER_OWNERS_FULL, COUNTER_RING_FULL, FLAG_OWNER_KNOWN, IPPROTO_TCP, Owner,
    SockEvent, SockEventKind, tcp_state,
};

use crate::maps::{EVENTS, FILTER_TREE, OWNERS, SOCK_OFFSETS, WATCHED, count};

/// The fields of one state change, however the hook reads them.
pub trait Transition {
    fn skaddr(&self) -> u64;
    fn protocol(&self) -> u16;
    fn family(&self) -> u16;
    fn port(&self) -> u16;
    /// Local address: 4 bytes for AF_INET, 16 for AF_INET6.
    fn addr(&self, family: u16) -> [u8; 16];
}

/// An address as the event carries it: the 4 bytes of an AF_INET address
/// at the front, or all 16 of any other family's.
#[inline(always)]
pub fn event_addr(
    family: u16,
    v4: impl FnOnce() -> [u8; 4],
    v6: impl FnOnce() -> [u8; 16],
) -> [u8; 16] {
    if family == AF_INET {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&v4());
        addr
    } else {
        v6()
    }
}

/// Which listen transition the TCP state change `old -> new` is: a
/// listener opened, a listener closed, or neither (every other change).
#[inline(always)]
pub fn listen_kind(old: i32, new: i32) -> Option<SockEventKind> {
    if old == tcp_state::CLOSE && new == tcp_state::LISTEN {
        Some(SockEventKind::Opened)
    } else if old == tcp_state::LISTEN && new == tcp_state::CLOSE {
        Some(SockEventKind::Closed)
    } else {
        None
    }
}

#[inline(always)]
pub fn handle(t: &impl Transition, kind: SockEventKind) {
    if t.protocol() != IPPROTO_TCP {
        return;
    }
    let skaddr = t.skaddr();
    match kind {
        SockEventKind::Opened => {
            let mut owner = current_owner(netns_of(skaddr));
            let tgid = owner.tgid;
            // SAFETY: the value is only tested for presence.
            let watched = FILTER_TREE.load() == 0 || unsafe { WATCHED.get(tgid) }.is_some();
            owner.watched = watched as u32;
            if OWNERS.insert(skaddr, owner, 0).is_err() {
                count(COUNTER_OWNERS_FULL);
            }
            if watched {
                emit(t, kind, &owner, 0, FLAG_OWNER_KNOWN);
            }
        }
        SockEventKind::Closed => {
            let closer = (bpf_get_current_pid_tgid() >> 32) as u32;
            // SAFETY: the entry is copied out before it is removed.
            match unsafe { OWNERS.get(skaddr) }.copied() {
                Some(owner) => {
                    // Socket addresses are reused: always forget the key.
                    let _ = OWNERS.remove(skaddr);
                    if owner.watched != 0 {
                        emit(t, kind, &owner, closer, FLAG_OWNER_KNOWN);
                    }
                }
                // Opened before portwatch started (or the map was full):
                // userspace matches it against its baseline.
                None => emit(t, kind, &current_owner(netns_of(skaddr)), closer, 0),
            }
        }
        // Connection kinds come from the connection program only.
        SockEventKind::Connect | SockEventKind::Accept => {}
    }
}

#[inline(always)]
pub fn current_owner(netns: u32) -> Owner {
    let pid_tgid = bpf_get_current_pid_tgid();
    Owner {
        // SAFETY: a helper without arguments, valid in tracing programs.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        netns,
        watched: 1,
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// `sk->__sk_common.skc_net.net->ns.inum`, or 0 without BTF offsets.
#[inline(always)]
pub fn netns_of(skaddr: u64) -> u32 {
    let off = SOCK_OFFSETS.load();
    if off.valid == 0 {
        return 0;
    }
    // SAFETY: probe reads of kernel memory at BTF-derived offsets; a
    // failed read returns an error, mapped to "unknown".
    unsafe {
        let Ok(net) = bpf_probe_read_kernel((skaddr + off.skc_net as u64) as *const u64) else {
            return 0;
        };
        bpf_probe_read_kernel((net + off.net_ns_inum as u64) as *const u32).unwrap_or(0)
    }
}

#[inline(always)]
fn emit(t: &impl Transition, kind: SockEventKind, owner: &Owner, closer: u32, flags: u8) {
    let family = t.family();
    let mut ev = new_event(kind, t.skaddr(), owner, family, t.port(), t.addr(family));
    ev.closer_tgid = closer;
    ev.flags = flags;
    submit(&ev);
}

/// A TCP event with its owner's fields and no peer; callers set the rest.
#[inline(always)]
pub fn new_event(
    kind: SockEventKind,
    skaddr: u64,
    owner: &Owner,
    family: u16,
    port: u16,
    addr: [u8; 16],
) -> SockEvent {
    SockEvent {
        // SAFETY: a helper without arguments, valid in tracing programs.
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        skaddr,
        cgroup_id: owner.cgroup_id,
        tgid: owner.tgid,
        tid: owner.tid,
        uid: owner.uid,
        closer_tgid: 0,
        netns: owner.netns,
        kind: kind as u8,
        flags: 0,
        family,
        port,
        proto: IPPROTO_TCP as u8,
        _pad: [0; 5],
        addr,
        comm: owner.comm,
        raddr: [0; 16],
        rport: 0,
        _pad2: [0; 6],
    }
}

/// Copies an event into the ring buffer, or counts it lost when full.
#[inline(always)]
pub fn submit(ev: &SockEvent) {
    if EVENTS.output::<SockEvent>(ev, 0).is_err() {
        count(COUNTER_RING_FULL);
    }
}
