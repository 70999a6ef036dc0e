//! Compiles the eBPF programs (portwatch-ebpf) so the binary can embed them.

use std::{env, path::PathBuf};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("portwatch/ has no parent directory"))?;
    let ebpf_dir = root.join("portwatch-ebpf");
    let common_dir = root.join("portwatch-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());

    // `cargo xtask setup` installs bpf-linker inside the repository; put it
    // first on PATH so the eBPF build finds it without a global install.
    let linker_bin = root.join(".tools/bpf-linker/bin");
    if !linker_bin.join("bpf-linker").exists() {
        return Err(anyhow!(
            "bpf-linker is not installed at {}: run `cargo xtask setup` first",
            linker_bin.display()
        ));
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![linker_bin];
    dirs.extend(env::split_paths(&path));
    let joined = env::join_paths(dirs).context("PATH contains an invalid entry")?;
    // SAFETY: a build script is single-threaded here; nothing else reads the
    // environment concurrently.
    unsafe {
        env::set_var("PATH", joined);
        // aya-build forwards every line the inner cargo prints as a
        // `cargo:warning`, so its progress ("Compiling ...") would reach
        // every build's output as warnings. Quiet, cargo prints only
        // diagnostics: real warnings, and errors in full.
        env::set_var("CARGO_TERM_QUIET", "true");
    }

    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("the repository path is not UTF-8"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "portwatch-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
