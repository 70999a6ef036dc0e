//! Connection events for ExternalConnection rules. Attached only while
//! such a rule is enabled, so the connection path pays nothing otherwise.

use aya_ebpf::{EbpfContext as _, macros::btf_tracepoint, programs::BtfTracePointContext};
use portwatch_common::{IPPROTO_TCP, SockEventKind, tcp_state};

use crate::{
    listen::{Transition, current_owner, event_addr, new_event, submit},
    maps::SOCK_OFFSETS,
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
        SockEventKind::Connect
    } else if old == tcp_state::SYN_RECV && new == tcp_state::ESTABLISHED {
        SockEventKind::Accept
    } else {
        return 0;
    };
    let sock = Sock {
        sk: ctx.arg(0),
        off: SOCK_OFFSETS.load(),
        ctx: ctx.as_ptr(),
    };
    if sock.protocol() != IPPROTO_TCP {
        return 0;
    }
    let family = sock.family();
    let mut owner = current_owner(sock.sk);
    if kind == SockEventKind::Accept {
        owner.tgid = 0;
        owner.tid = 0;
        owner.comm = [0; 16];
    }
    // The local port: skc_num is set for both directions by now.
    let port = sock.read(sock.off.skc_num);
    // Connections need no identity: 0.
    let mut ev = new_event(kind, 0, &owner, family, port, sock.addr(family));
    ev.raddr = event_addr(
        family,
        || sock.read(sock.off.skc_daddr),
        || sock.read(sock.off.skc_v6_daddr),
    );
    ev.rport = u16::from_be(sock.read(sock.off.skc_dport));
    submit(&ev);
    0
}
