//! `sock:inet_sock_set_state` as a classic tracepoint: fields come from the
//! trace record, at offsets read from its format file.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use portwatch_common::SetStateOffsets;

use crate::{
    listen::{Transition, event_addr, handle, listen_kind},
    maps::SET_STATE_OFFSETS,
};

struct Record<'a> {
    ctx: &'a TracePointContext,
    off: SetStateOffsets,
}

impl Record<'_> {
    #[inline(always)]
    fn read<T: Default>(&self, offset: u32) -> T {
        // SAFETY: the offset comes from this tracepoint's format file; a
        // failed read yields the zero value, treated as unknown.
        unsafe { self.ctx.read_at::<T>(offset as usize) }.unwrap_or_default()
    }
}

impl Transition for Record<'_> {
    fn skaddr(&self) -> u64 {
        self.read(self.off.skaddr)
    }
    fn sock_id(&self) -> (u64, u8) {
        // A classic tracepoint cannot ask for the socket's cookie.
        (self.skaddr(), 0)
    }
    fn protocol(&self) -> u16 {
        self.read(self.off.protocol)
    }
    fn family(&self) -> u16 {
        self.read(self.off.family)
    }
    fn port(&self) -> u16 {
        self.read(self.off.sport)
    }
    fn addr(&self, family: u16) -> [u8; 16] {
        event_addr(
            family,
            || self.read(self.off.saddr),
            || self.read(self.off.saddr_v6),
        )
    }
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let off = SET_STATE_OFFSETS.load();
    // SAFETY: offsets from the format file; failed reads are handled.
    let states = unsafe {
        (
            ctx.read_at::<i32>(off.oldstate as usize),
            ctx.read_at::<i32>(off.newstate as usize),
        )
    };
    let (Ok(old), Ok(new)) = states else {
        return 0;
    };
    let Some(kind) = listen_kind(old, new) else {
        return 0;
    };
    handle(&Record { ctx: &ctx, off }, kind);
    0
}
