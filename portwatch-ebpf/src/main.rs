//! portwatch kernel programs.
//!
//! `inet_sock_set_state` runs on every TCP state change on the host, so its
//! common path is two small reads and a return: only the exact CLOSE->LISTEN
//! and LISTEN->CLOSE transitions of TCP sockets go any further.
#![no_std]
#![no_main]

mod set_state;

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
