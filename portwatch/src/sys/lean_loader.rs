//! An aya loader that does not parse the kernel's BTF.
//!
//! aya 0.14's `EbpfLoader::new()` parses all of `/sys/kernel/btf/vmlinux`
//! (over 100,000 types, a 24 MiB peak) before anything can tell it not
//! to, and its API has no constructor without it (fixed upstream in
//! releases that need a newer rustc). portwatch's programs need none of
//! it: their offsets come from `btf.rs`, and the BTF tracepoints get a
//! stand-in (`btf::typedef_stand_in`). So the loader is made on a thread of
//! its own, in a private mount namespace where that path reads empty;
//! aya's parse then fails at once, which it takes as "no BTF". The rest
//! of the process keeps the host's mounts, and the namespace goes with
//! the thread.
//!
//! Where the namespace cannot be made (no CAP_SYS_ADMIN, a seccomp
//! filter), the loader is made as usual: the same programs, a larger peak.

use aya::EbpfLoader;
use rustix::{
    mount::{MountPropagationFlags, mount_bind, mount_change},
    thread::{UnshareFlags, unshare},
};

/// Where aya looks for the kernel's BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// A loader with no kernel BTF, made without parsing it where possible.
pub(super) fn loader<'a>() -> EbpfLoader<'a> {
    let made = std::thread::Builder::new()
        .name("portwatch-loader".into())
        .spawn(|| {
            hide_kernel_btf()?;
            Ok::<_, rustix::io::Errno>(EbpfLoader::new())
        })
        .map_err(|e| e.to_string())
        .and_then(|t| {
            t.join()
                .map_err(|_| "the loader thread panicked".to_string())
        });
    let mut loader = match made {
        Ok(Ok(loader)) => loader,
        Ok(Err(e)) => {
            tracing::debug!("cannot hide the kernel BTF from aya's loader ({e}): it parses it");
            EbpfLoader::new()
        }
        Err(e) => {
            tracing::debug!("cannot start the loader thread ({e})");
            EbpfLoader::new()
        }
    };
    // Whichever way it was made, the programs load without it.
    loader.btf(None);
    loader
}

/// Gives this thread its own mount namespace in which `VMLINUX_BTF` is
/// `/dev/null`. Only the calling thread: `CLONE_FS` first, since a mount
/// namespace cannot be left while the filesystem context is shared.
fn hide_kernel_btf() -> rustix::io::Result<()> {
    unshare(UnshareFlags::FS | UnshareFlags::NEWNS)?;
    // Private first, so the bind below never propagates to the host's
    // namespace.
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )?;
    mount_bind("/dev/null", VMLINUX_BTF)
}
