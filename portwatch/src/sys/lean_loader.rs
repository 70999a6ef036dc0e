//! An aya loader that does not parse the kernel's BTF.
//!
//! aya 0.14's `EbpfLoader::new()` parses all of `/sys/kernel/btf/vmlinux`
//! (over 100,000 types, an 18 MiB rise of the start-up peak) before
//! anything can tell it not to, and its API has no constructor without it
//! (fixed upstream in releases that need a newer rustc). portwatch's
//! programs need none of it: their offsets come from `btf.rs`, and the BTF
//! tracepoints get a stand-in (`btf::typedef_stand_in`). So the loader is
//! made on a thread of its own that Landlock first forbids to read any
//! file: aya's read of the BTF then fails at once, which it takes as "no
//! BTF". Landlock restricts the calling thread alone, and only ever
//! takes access away; the thread ends with the loader made.
//!
//! Where Landlock is missing (kernels before 5.13, or not enabled) or a
//! seccomp filter refuses its calls, the loader is made as usual: the
//! same programs, a larger peak, and one line at the info level.

use aya::EbpfLoader;
use landlock::{ABI, AccessFs, Ruleset, RulesetAttr, RulesetStatus};

/// A loader with no kernel BTF, made without parsing it where possible.
pub(super) fn loader<'a>() -> EbpfLoader<'a> {
    let made = std::thread::Builder::new()
        .name("portwatch-loader".into())
        .spawn(|| {
            forbid_file_reads()?;
            Ok::<_, String>(EbpfLoader::new())
        })
        .map_err(|e| format!("cannot start its thread: {e}"))
        .and_then(|t| t.join().map_err(|_| "its thread panicked".to_string()));
    let mut loader = match made {
        Ok(Ok(loader)) => loader,
        Ok(Err(e)) | Err(e) => {
            tracing::info!(
                "the eBPF loader parses the whole kernel BTF, about 18 MiB more at start ({e})"
            );
            EbpfLoader::new()
        }
    };
    // Whichever way it was made, the programs load without it (they have
    // no CO-RE relocation: a test checks).
    loader.btf(None);
    loader
}

/// Forbids this thread, for the rest of its life, to read any file or
/// list any directory.
fn forbid_file_reads() -> Result<(), String> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_read(ABI::V1))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("Landlock: {e}"))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(()),
        other => Err(format!("Landlock did not forbid the reads ({other:?})")),
    }
}
