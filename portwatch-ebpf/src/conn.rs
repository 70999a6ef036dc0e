//! Connection events for ExternalConnection rules. Attached only while
//! such a rule is enabled, so the connection path pays nothing otherwise.

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use portwatch_common::{COUNTER_RING_FULL, IPPROTO_TCP, ListenEvent, ListenKind, tcp_state};

use crate::{
    listen::{Transition, current_owner, event_addr, netns_of},
    maps::{EVENTS, SOCK_OFFSETS, count},
    set_state_btf::Sock,
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_conn(ctx: BtfTracePointContext) -> u32 {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    // connect() runs in the caller's context: its pid is reliable. The
    // passive side completes in softirq, where the current task is
    // arbitrary: userspace names the listener's owner instead.
    let kind = if old == tcp_state::CLOSE && new == tcp_state::SYN_SENT {
        ListenKind::Connect
    } else if old == tcp_state::SYN_RECV && new == tcp_state::ESTABLISHED {
        ListenKind::Accept
    } else {
        return 0;
    };
    let sock = Sock {
        sk: ctx.arg(0),
        off: SOCK_OFFSETS.load(),
    };
    if sock.protocol() != IPPROTO_TCP {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<ListenEvent>(0) else {
        count(COUNTER_RING_FULL);
        return 0;
    };
    let family = sock.family();
    let mut owner = current_owner(netns_of(sock.sk));
    if kind == ListenKind::Accept {
        owner.tgid = 0;
        owner.tid = 0;
        owner.comm = [0; 16];
    }
    let raddr = event_addr(
        family,
        || sock.read(sock.off.skc_daddr),
        || sock.read(sock.off.skc_v6_daddr),
    );
    entry.write(ListenEvent {
        // SAFETY: a helper without arguments, valid in tracing programs.
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        skaddr: sock.sk,
        cgroup_id: owner.cgroup_id,
        tgid: owner.tgid,
        tid: owner.tid,
        uid: owner.uid,
        closer_tgid: 0,
        netns: owner.netns,
        kind: kind as u8,
        flags: 0,
        family,
        // The local port: skc_num is set for both directions by now.
        port: sock.read(sock.off.skc_num),
        _pad: [0; 6],
        addr: sock.addr(family),
        comm: owner.comm,
        raddr,
        rport: u16::from_be(sock.read(sock.off.skc_dport)),
        _pad2: [0; 6],
    });
    entry.submit(0);
    0
}
