//! `inet_sock_set_state` as a BTF tracepoint (tp_btf): the states are plain
//! arguments, so the common path needs no helper call; socket fields are
//! read from `struct sock` at offsets from the kernel's BTF.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_probe_read_kernel, generated::bpf_get_socket_cookie},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use portwatch_common::{FLAG_SOCK_COOKIE, SockOffsets};

use crate::{
    listen::{Transition, event_addr, handle, listen_kind},
    maps::SOCK_OFFSETS,
};

pub struct Sock {
    pub sk: u64,
    pub off: SockOffsets,
    /// The program's context, for the kernel stack (null where none is
    /// read).
    pub ctx: *mut core::ffi::c_void,
}

impl Sock {
    #[inline(always)]
    pub fn read<T: Default>(&self, offset: u32) -> T {
        // SAFETY: a probe read inside `struct sock` at a BTF-derived offset;
        // a failed read yields the zero value, treated as unknown.
        unsafe { bpf_probe_read_kernel((self.sk + offset as u64) as *const T) }.unwrap_or_default()
    }
}

impl Transition for Sock {
    fn skaddr(&self) -> u64 {
        self.sk
    }
    fn sock_id(&self) -> (u64, u8) {
        // SAFETY: `sk` is the tracepoint's typed `struct sock *` argument,
        // which this helper accepts in tracing programs.
        let cookie = unsafe { bpf_get_socket_cookie(self.sk as *mut _) };
        (cookie, FLAG_SOCK_COOKIE)
    }
    fn protocol(&self) -> u16 {
        self.read(self.off.sk_protocol)
    }
    fn family(&self) -> u16 {
        self.read(self.off.skc_family)
    }
    fn port(&self) -> u16 {
        // inet_sport, like the classic tracepoint's `sport`: skc_num is
        // already zero when a listener with a kernel-picked port closes.
        u16::from_be(self.read(self.off.inet_sport))
    }
    fn addr(&self, family: u16) -> [u8; 16] {
        event_addr(
            family,
            || self.read(self.off.skc_rcv_saddr),
            || self.read(self.off.skc_v6_rcv_saddr),
        )
    }
    fn in_listen_syscall(&self) -> bool {
        crate::listen::stack_in_listen_syscall(self.ctx)
    }
    fn was_hashed(&self) -> bool {
        let flags: u64 = self.read(self.off.sk_flags);
        flags & (1u64 << (self.off.sock_rcu_free & 63)) != 0
    }
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let Some(kind) = listen_kind(old, new) else {
        return 0;
    };
    let sk: u64 = ctx.arg(0);
    handle(
        &Sock {
            sk,
            off: SOCK_OFFSETS.load(),
            ctx: ctx.as_ptr(),
        },
        kind,
    );
    0
}
