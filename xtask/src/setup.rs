//! Toolchain set-up for the eBPF build, idempotent and project-local.
//!
//! - the nightly toolchain needs `rust-src` (`-Z build-std=core`);
//! - bpf-linker is installed under `.tools/` with `cargo install --root`,
//!   linked against the libLLVM that ships inside the nightly toolchain.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::check;

const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_DEB_VERSION: &str = "3.8.0";

/// cargo-deb, installed under `.tools/` like bpf-linker: what
/// `cargo xtask package` builds the Debian package with.
pub fn ensure_cargo_deb(root: &Path) -> Result<PathBuf> {
    let install_root = root.join(".tools/cargo-deb");
    let bin = install_root.join("bin/cargo-deb");
    let works = Command::new(&bin).arg("--version").output().is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)
    });
    if works {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing cargo-deb {CARGO_DEB_VERSION} into {}",
        install_root.display()
    );
    check(
        crate::cargo()
            .args([
                "install",
                "cargo-deb",
                "--locked",
                "--force",
                "--version",
                CARGO_DEB_VERSION,
            ])
            .arg("--root")
            .arg(&install_root),
        "`cargo install cargo-deb`",
    )?;
    Ok(bin)
}

/// The PyPI packages the tests' helpers import, pinned, installed for
/// Debian's python3 under `.tools/python` (the tests put it on
/// PYTHONPATH): the OTLP receiver decodes requests with the OpenTelemetry
/// project's own protobuf messages.
const PYTHON_PACKAGES: &[&str] = &["opentelemetry-proto==1.39.1", "protobuf==6.33.6"];

pub fn ensure_python_packages(root: &Path) -> Result<()> {
    let target = root.join(".tools/python");
    let stamp = target.join(".installed");
    let wanted = PYTHON_PACKAGES.join("\n");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} into {}",
        PYTHON_PACKAGES.join(", "),
        target.display()
    );
    let _ = fs::remove_dir_all(&target);
    check(
        Command::new("/usr/bin/python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-script-location",
                "--root-user-action=ignore",
                "--target",
            ])
            .arg(&target)
            .args(PYTHON_PACKAGES),
        "`pip install` of the tests' Python packages (Debian: apt install python3-pip)",
    )?;
    fs::write(&stamp, wanted).context("cannot write .tools/python/.installed")?;
    Ok(())
}

pub fn ensure(root: &Path) -> Result<()> {
    let nightly = nightly_info()?;
    ensure_rust_src()?;
    ensure_bpf_linker(root, &nightly)
}

struct Nightly {
    sysroot: PathBuf,
    llvm_major: u32,
}

fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nightly_info() -> Result<Nightly> {
    let vv = output(
        Command::new("rustc").args(["+nightly", "-vV"]),
        "`rustc +nightly -vV`",
    )
    .context(
        "the nightly Rust toolchain is missing; install it with `rustup toolchain install nightly`",
    )?;
    let llvm_major =
        llvm_major(&vv).ok_or_else(|| anyhow!("`rustc +nightly -vV` printed no LLVM version"))?;
    let sysroot = output(
        Command::new("rustc").args(["+nightly", "--print", "sysroot"]),
        "`rustc +nightly --print sysroot`",
    )?;
    Ok(Nightly {
        sysroot: PathBuf::from(sysroot.trim()),
        llvm_major,
    })
}

/// The major version in a `LLVM version: 22.1.4` line.
fn llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next())
        .and_then(|m| m.parse().ok())
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(
        Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]),
        "`rustup component list`",
    )?;
    if installed.lines().any(|l| l.trim().starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for the nightly toolchain");
    check(
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
        "`rustup component add rust-src --toolchain nightly`",
    )
}

fn ensure_bpf_linker(root: &Path, nightly: &Nightly) -> Result<()> {
    let tools = root.join(".tools");
    let install_root = tools.join("bpf-linker");
    let linker = install_root.join("bin/bpf-linker");
    let stamp = install_root.join("stamp");
    let libllvm = find_libllvm(&nightly.sysroot, nightly.llvm_major)?;
    let wanted = format!("{BPF_LINKER_VERSION} {}", libllvm.display());
    let works = Command::new(&linker)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if works && fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(());
    }

    // bpf-linker's build wants LLVM_PREFIX/lib/libLLVM.so; the toolchain
    // ships the library under a versioned name only.
    let prefix = tools.join(format!("llvm-{}", nightly.llvm_major));
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let file_name = libllvm
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", libllvm.display()))?;
    for name in [Path::new("libLLVM.so"), Path::new(file_name)] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }

    eprintln!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} (LLVM {}) into {}",
        nightly.llvm_major,
        install_root.display()
    );
    check(
        crate::cargo()
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{}", nightly.llvm_major),
            ])
            .arg("--root")
            .arg(&install_root)
            .env("LLVM_PREFIX", &prefix),
        "`cargo install bpf-linker`",
    )?;
    fs::write(&stamp, wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

fn find_libllvm(sysroot: &Path, major: u32) -> Result<PathBuf> {
    let lib = sysroot.join("lib");
    let prefix = format!("libLLVM.so.{major}");
    let entries = fs::read_dir(&lib).with_context(|| format!("cannot read {}", lib.display()))?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .ok_or_else(|| {
            anyhow!(
                "the nightly toolchain has no {prefix}* in {}: bpf-linker needs it",
                lib.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_major() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv), Some(22));
        assert_eq!(llvm_major("rustc 1.0"), None);
    }
}
