//! Files portwatch writes as root (`watch --output`, the rules file and its
//! backup) where another user can add names: user nobody plants links and
//! files, and portwatch must neither write through them nor to them.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::{BIN, Killed, Signal, file_until, nobody_sh, signal};

/// A scratch directory for one test, and a root-only file in a root-only
/// directory beside it: what an attacker would like root to overwrite.
struct Scene {
    root: PathBuf,
    secret: PathBuf,
}

const SECRET: &str = "root's secret, unchanged\n";

impl Scene {
    fn new(tag: &str) -> Scene {
        let root =
            std::env::temp_dir().join(format!("portwatch-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("private")).unwrap();
        fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
        let secret = root.join("private/secret");
        fs::write(&secret, SECRET).unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        Scene { root, secret }
    }

    /// A directory of `mode` (root's), inside the scene.
    fn dir(&self, name: &str, mode: u32) -> PathBuf {
        let d = self.root.join(name);
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
        // The scene's root must let nobody through to it.
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn assert_secret_untouched(&self) {
        assert_eq!(fs::read_to_string(&self.secret).unwrap(), SECRET);
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// `portwatch ARGS`, which must refuse to start: its stderr, one sentence.
/// One that runs anyway (or has written its ready line to `file`) is
/// stopped and the test fails.
fn refused(args: &[&std::ffi::OsStr], file: Option<&Path>) -> String {
    let mut child = Killed(
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read as _;
            child
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(!status.success(), "{err}");
            assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
            return err;
        }
        // A watch that got as far as its ready line wrote through the name.
        let written = file.map(|f| fs::read_to_string(f).unwrap_or_default());
        assert!(
            !written.is_some_and(|w| w.contains("\"event\":\"ready\"")),
            "portwatch started writing to {file:?}"
        );
        assert!(Instant::now() < deadline, "portwatch {args:?} runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `portwatch watch --json --output FILE`, which must refuse to start.
fn output_refused(file: &Path) -> String {
    refused(
        &[
            "watch".as_ref(),
            "--json".as_ref(),
            "--output".as_ref(),
            file.as_os_str(),
        ],
        Some(file),
    )
}

/// A link nobody planted where `--output` points, in a world-writable
/// sticky directory (like /tmp): refused, and its target untouched.
#[test]
fn output_refuses_a_planted_link() {
    let s = Scene::new("link");
    let d = s.dir("shared", 0o1777);
    let out = d.join("events.jsonl");
    nobody_sh(&format!("ln -s {} {}", s.secret.display(), out.display()));
    let err = output_refused(&out);
    assert!(err.contains("symbolic link"), "{err}");
    s.assert_secret_untouched();
}

/// A file nobody created first where `--output` points: not root's to
/// append to.
#[test]
fn output_refuses_another_users_file() {
    let s = Scene::new("theirs");
    let d = s.dir("shared", 0o1777);
    let out = d.join("events.jsonl");
    nobody_sh(&format!("echo planted > {}", out.display()));
    let err = output_refused(&out);
    assert!(err.contains("belongs to user nobody"), "{err}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "planted\n");
}

/// A directory anybody may rename files in (no sticky bit): refused
/// before anything is written in it.
#[test]
fn output_refuses_a_directory_others_can_write() {
    let s = Scene::new("open");
    let d = s.dir("open", 0o777);
    let out = d.join("events.jsonl");
    let err = output_refused(&out);
    assert!(err.contains("writable by other users"), "{err}");
    assert!(!out.exists());
}

/// After a rotation moved the file away and before SIGHUP, nobody plants
/// a link at the name: the reopen refuses it, says so, and the lines keep
/// going to the file open before.
#[test]
fn reopen_after_rotation_refuses_a_planted_link() {
    let s = Scene::new("rotate");
    let d = s.dir("shared", 0o1777);
    let out = d.join("events.jsonl");
    let mut watch = Killed(
        Command::new(BIN)
            .args(["watch", "--json", "--output"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    file_until(&out, "ready line", |t| t.contains("\"event\":\"ready\""));
    let rotated = d.join("events.jsonl.1");
    fs::rename(&out, &rotated).unwrap();
    nobody_sh(&format!("ln -s {} {}", s.secret.display(), out.display()));
    signal(watch.0.id(), Signal::Hup);
    // The warning is the fence: the reopen has been tried.
    let stderr = watch.0.stderr.take().unwrap();
    let (tx, warnings) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("cannot open the output file again") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = warnings
        .recv_timeout(Duration::from_secs(30))
        .expect("a warning about the planted link");
    assert!(line.contains("symbolic link"), "{line}");
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    file_until(&rotated, "the next event in the file open before", |t| {
        t.contains(&format!("\"port\":{port},"))
    });
    s.assert_secret_untouched();
    assert!(fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
}

/// The rules directory (`$XDG_CONFIG_HOME/portwatch`) for `portwatch
/// alerts init --force`, with root's alerts.json in it.
fn rules_dir(s: &Scene, mode: u32) -> (PathBuf, PathBuf) {
    let config = s.dir("config", 0o755);
    let dir = config.join("portwatch");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
    let rules = dir.join("alerts.json");
    fs::write(&rules, "{\"rules\": []}\n").unwrap();
    (config, rules)
}

fn alerts_init(config: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["alerts", "init", "--force"])
        .env("XDG_CONFIG_HOME", config)
        .output()
        .unwrap()
}

/// nobody plants `alerts.json.bak` as a link to a root-only file: the
/// save replaces the link with the backup and never writes through it.
#[test]
fn rules_save_never_writes_through_a_planted_backup_name() {
    let s = Scene::new("bak");
    let (config, rules) = rules_dir(&s, 0o1777);
    let bak = rules.with_file_name("alerts.json.bak");
    nobody_sh(&format!("ln -s {} {}", s.secret.display(), bak.display()));
    let out = alerts_init(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.assert_secret_untouched();
    let meta = fs::symlink_metadata(&bak).unwrap();
    assert!(meta.is_file() && meta.uid() == 0);
    assert_eq!(fs::read_to_string(&bak).unwrap(), "{\"rules\": []}\n");
}

/// nobody plants links at every temporary name the save could pick from
/// its pid: the save's temporary file is not one of them.
#[test]
fn rules_save_never_writes_through_a_guessed_temporary_name() {
    let s = Scene::new("tmp");
    let (config, rules) = rules_dir(&s, 0o1777);
    let last: u32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // One process (no fork per link), so the pids after it stay free.
    let script = format!(
        "import os\nfor p in range({}, {}):\n    os.symlink('{}', '{}/.alerts.json.tmp-%d' % p)\n",
        last + 1,
        last + 3000,
        s.secret.display(),
        rules.parent().unwrap().display(),
    );
    let out = crate::support::as_nobody("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = alerts_init(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.assert_secret_untouched();
    let meta = fs::symlink_metadata(&rules).unwrap();
    assert!(meta.is_file() && meta.uid() == 0, "alerts.json is {meta:?}");
}

/// A rules directory another user owns: that user could swap the file
/// (or plant names) at will, so nothing is written there.
#[test]
fn rules_save_refuses_a_directory_another_user_owns() {
    let s = Scene::new("owned");
    let (config, rules) = rules_dir(&s, 0o755);
    let dir = rules.parent().unwrap();
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let uid: u32 = String::from_utf8_lossy(&nobody.stdout)
        .trim()
        .parse()
        .unwrap();
    std::os::unix::fs::chown(dir, Some(uid), None).unwrap();
    let bak = rules.with_file_name("alerts.json.bak");
    nobody_sh(&format!("ln -s {} {}", s.secret.display(), bak.display()));
    let out = alerts_init(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("belongs to user nobody"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    s.assert_secret_untouched();
}

/// `alerts.json` is root's own link to a file elsewhere (a dotfiles
/// repository): a save updates the target and keeps the link, instead of
/// replacing the link with a copy and leaving the target stale.
#[test]
fn rules_save_through_roots_own_link_updates_its_target() {
    let s = Scene::new("ownlink");
    let (config, rules) = rules_dir(&s, 0o755);
    let dotfiles = s.dir("dotfiles", 0o755);
    let target = dotfiles.join("alerts.json");
    fs::rename(&rules, &target).unwrap();
    std::os::unix::fs::symlink(&target, &rules).unwrap();
    let out = alerts_init(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::symlink_metadata(&rules)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let written = fs::read_to_string(&target).unwrap();
    assert!(written.contains("\"rules\""), "{written}");
    assert_ne!(written, "{\"rules\": []}\n", "the target was left stale");
}

/// A link another user made on the way to the rules (their
/// `~/.config`, pointing at a root-only tree, with root's `HOME` still
/// theirs): the walk does not follow it, so root's rules there stay.
#[test]
fn a_link_another_user_owns_on_the_way_is_not_followed() {
    let s = Scene::new("waylink");
    let (etc, rules) = rules_dir(&s, 0o755);
    let home = s.dir("home", 0o755);
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let uid: u32 = String::from_utf8_lossy(&nobody.stdout)
        .trim()
        .parse()
        .unwrap();
    std::os::unix::fs::chown(&home, Some(uid), None).unwrap();
    let config = home.join("config");
    nobody_sh(&format!("ln -s {} {}", etc.display(), config.display()));
    let before = fs::read_to_string(&rules).unwrap();
    let out = alerts_init(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "root wrote through nobody's link");
    assert!(err.contains("belongs to user nobody"), "{err}");
    assert_eq!(fs::read_to_string(&rules).unwrap(), before);
}

/// nobody plants `alerts.json` in a shared (sticky) rules directory before
/// root has one: the daemon does not run nobody's rules (their `--exec`
/// would run as root), it says why.
#[test]
fn rules_another_user_planted_are_not_used() {
    let s = Scene::new("plantedrules");
    let d = s.dir("shared", 0o1777);
    let rules = d.join("alerts.json");
    nobody_sh(&format!("echo '{{\"rules\": []}}' > {}", rules.display()));
    let err = refused(
        &[
            "daemon".as_ref(),
            "--json".as_ref(),
            "--alerts".as_ref(),
            rules.as_os_str(),
        ],
        None,
    );
    assert!(err.contains("belongs to user nobody"), "{err}");
}
