//! Where a kernel function lies in kernel text, from /proc/kallsyms: the
//! listen confirmation tells the native `listen()` syscall from every other
//! way into `inet_listen` by a return address in its handler.

use std::io::BufRead;

use portwatch_common::ListenSyscall;

/// The native `listen()` syscall's handler on this architecture.
#[cfg(target_arch = "x86_64")]
const LISTEN_HANDLER: &str = "__x64_sys_listen";
#[cfg(target_arch = "aarch64")]
const LISTEN_HANDLER: &str = "__arm64_sys_listen";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const LISTEN_HANDLER: &str = "";

/// The handler's range, or zero (every open then goes unconfirmed, which
/// is safe) when /proc/kallsyms hides addresses or lacks it; with the
/// native `listen()` number and where `pt_regs` keeps the caller's
/// (`regs_nr`, from the kernel's BTF, `u32::MAX` when unknown).
pub(crate) fn listen_syscall(regs_nr: Option<u32>) -> ListenSyscall {
    let found = std::fs::File::open("/proc/kallsyms")
        .ok()
        .and_then(|f| symbol_range(std::io::BufReader::new(f), LISTEN_HANDLER));
    match found {
        Some((start, end)) => ListenSyscall {
            start,
            end,
            nr: u32::try_from(libc::SYS_listen).unwrap_or(u32::MAX),
            regs_nr: regs_nr.unwrap_or(u32::MAX),
        },
        None => {
            tracing::warn!(
                "/proc/kallsyms does not show {LISTEN_HANDLER}: every listen() is reported once the socket tables show it, a moment later"
            );
            ListenSyscall::default()
        }
    }
}

/// The address of text symbol `name` and of the next symbol above it (its
/// end), in a kallsyms listing; `None` if absent or hidden (all zeros).
fn symbol_range(listing: impl BufRead, name: &str) -> Option<(u64, u64)> {
    if name.is_empty() {
        return None;
    }
    let mut symbols: Vec<u64> = Vec::new();
    let mut start = None;
    for line in listing.lines().map_while(Result::ok) {
        let mut fields = line.split_whitespace();
        let (Some(addr), Some(_kind), Some(sym)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if sym == name && start.is_none() {
            start = Some(addr);
        }
        symbols.push(addr);
    }
    let start = start.filter(|&a| a != 0)?;
    let end = symbols.into_iter().filter(|&a| a > start).min()?;
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
ffffffff81e803b0 T __pfx___x64_sys_listen
ffffffff81e80400 T __ia32_sys_listen
ffffffff81e803c0 T __x64_sys_listen
ffffffff81e803e0 T __pfx___ia32_sys_listen
ffffffffc0001000 t some_module_fn\t[mod]
";

    #[test]
    fn finds_a_symbol_and_the_next_one_above_it() {
        assert_eq!(
            symbol_range(LISTING.as_bytes(), "__x64_sys_listen"),
            Some((0xffffffff81e803c0, 0xffffffff81e803e0))
        );
    }

    #[test]
    fn hidden_or_missing_symbols_are_none() {
        let hidden = "0000000000000000 T __x64_sys_listen\n0000000000000000 T other\n";
        assert_eq!(symbol_range(hidden.as_bytes(), "__x64_sys_listen"), None);
        assert_eq!(symbol_range(LISTING.as_bytes(), "__x64_sys_nope"), None);
        assert_eq!(symbol_range("garbage\n\n".as_bytes(), "x"), None);
    }
}
