//! portwatch kernel programs.
//!
//! - `set_state` / `set_state_btf`: the same listen/close logic on the
//!   classic and the BTF tracepoint of `inet_sock_set_state`; userspace
//!   attaches one of them. It runs on every TCP state change on the host, so
//!   its common path is two reads and a return.
//! - `listen`: what happens on the rare listen transitions.
//! - `listen_confirm`: reports an open once `listen()` returned, with the
//!   final port (at its syscall's exit).
//! - `udp`: UDP binds and releases (cgroup sock programs), attached when
//!   UDP is watched.
//! - `tree`: fork/exit bookkeeping for the process-tree filter, attached
//!   only when a filter is set.
#![no_std]
#![no_main]
// `atomic_xadd`: the BPF target has no compare-and-swap, so core's atomic
// types lack `fetch_add`, but the kernel's atomic add is there.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod conn;
mod listen;
mod listen_confirm;
mod maps;
mod set_state;
mod set_state_btf;
mod tree;
mod udp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic, so this is
    // never called; it only satisfies `no_std`.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
