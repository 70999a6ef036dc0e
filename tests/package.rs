//! The Debian package (`cargo xtask package`, which `cargo xtask test`
//! runs first): installed with dpkg, its files and group in place, the
//! installed binary runs, and a purge leaves nothing behind.

use std::{path::Path, process::Command};

fn dpkg(args: &[&str]) {
    let out = Command::new("dpkg").args(args).output().expect("dpkg");
    assert!(
        out.status.success(),
        "dpkg {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn has_group() -> bool {
    Command::new("getent")
        .args(["group", "portwatch"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Purges the package however the test ends, so the machine keeps no
/// package and no `portwatch` group.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "portwatch"]).output();
    }
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "portwatch"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(" installed"))
}

#[test]
fn the_package_installs_runs_and_purges_cleanly() {
    // A portwatch installed here is someone's: not replaced by a test.
    assert!(
        !installed(),
        "the portwatch package is installed on this machine; remove it to run this test"
    );
    let deb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/debian/portwatch.deb"
    );
    assert!(
        Path::new(deb).exists(),
        "{deb} is missing: `cargo xtask package` builds it (`cargo xtask test` does first)"
    );
    let _purge = Purge;
    dpkg(&["-i", deb]);
    for file in [
        "/usr/bin/portwatch",
        "/usr/lib/systemd/system/portwatch.service",
        "/etc/portwatch/alerts.json",
        "/usr/share/doc/portwatch/README.md",
        "/usr/share/doc/portwatch/schema/event-line.v1.json",
        "/usr/share/man/man1/portwatch.1.gz",
        "/usr/share/man/man1/portwatch-watch.1.gz",
        "/usr/share/bash-completion/completions/portwatch",
        "/usr/share/zsh/vendor-completions/_portwatch",
        "/usr/share/fish/vendor_completions.d/portwatch.fish",
    ] {
        assert!(Path::new(file).exists(), "{file} is not installed");
    }
    // man finds the installed pages by name.
    let found = Command::new("man")
        .args(["-w", "portwatch-daemon"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        "/usr/share/man/man1/portwatch-daemon.1.gz"
    );
    assert!(has_group(), "the portwatch group was not created");
    // The installed binary validates the installed rules.
    let out = Command::new("/usr/bin/portwatch")
        .args(["alerts", "validate", "/etc/portwatch/alerts.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dpkg(&["--purge", "portwatch"]);
    for file in [
        "/usr/bin/portwatch",
        "/usr/lib/systemd/system/portwatch.service",
        "/etc/portwatch",
        "/usr/share/man/man1/portwatch.1.gz",
        "/usr/share/bash-completion/completions/portwatch",
    ] {
        assert!(!Path::new(file).exists(), "{file} is left after a purge");
    }
    assert!(!has_group(), "the portwatch group is left after a purge");
}

/// This portwatch succeeds 0.1.8: `--version` and the package say 0.2.0,
/// which a package manager sees as an upgrade.
#[test]
fn the_version_follows_0_1_8() {
    let out = Command::new(crate::support::BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "portwatch 0.2.0"
    );
    let deb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/debian/portwatch.deb"
    );
    let field = Command::new("dpkg-deb")
        .args(["-f", deb, "Version"])
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&field.stdout).trim().to_string();
    let newer = Command::new("dpkg")
        .args(["--compare-versions", &version, "gt", "0.1.8"])
        .status()
        .unwrap();
    assert!(newer.success(), "the package's version {version:?}");
}
