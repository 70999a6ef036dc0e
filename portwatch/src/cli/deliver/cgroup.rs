//! A cgroup v2 of its own for each `--exec` command. A process group is
//! no container: a command's child can call `setsid()` (a daemonising
//! script does) and outlive a kill of the group. A cgroup holds every
//! process the command starts, whatever it does, and `cgroup.kill` ends
//! them all at once. portwatch runs as root, so a command it starts is
//! root's too: nothing it leaves behind may outlive it.
//!
//! Each command's cgroup is made under portwatch's own cgroup, with a
//! name nobody can guess in advance; the command moves itself into it
//! between fork and exec, so even its first instruction runs inside.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

/// Where the commands' cgroups are made: portwatch's own cgroup, in the
/// cgroup v2 hierarchy.
#[derive(Clone, Debug)]
pub struct Parent {
    dir: PathBuf,
}

/// How long the processes of a killed cgroup are waited for before the
/// cgroup is left behind (a process in uninterruptible sleep dies late).
const EMPTY_WAIT: Duration = Duration::from_secs(5);
/// How often `cgroup.events` is read meanwhile.
const EMPTY_POLL: Duration = Duration::from_millis(5);
/// Tries to remove a cgroup dropped without [`Cgroup::close`].
const DROP_TRIES: usize = 20;

impl Parent {
    /// portwatch's own cgroup, once a cgroup made under it has been
    /// shown to take a process and to be removed again. Err says why
    /// not (no cgroup v2, a read-only mount, no right to write there).
    pub fn find() -> Result<Self, String> {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let own = cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("portwatch is in no cgroup v2")?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let dir = v2_dir(&mountinfo, own).ok_or("no cgroup v2 hierarchy is mounted here")?;
        let parent = Self { dir };
        parent.probe()?;
        Ok(parent)
    }

    /// A new, empty cgroup for one command.
    pub fn create(&self) -> io::Result<Cgroup> {
        let mut random = [0u8; 8];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = self.dir.join(format!("{PREFIX}{hex}"));
        std::fs::create_dir(&dir)?;
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            // A path read from the kernel and a hex name hold no NUL.
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(Cgroup {
            dir: Some(dir),
            procs,
        })
    }

    /// Runs `sh -c :` in a cgroup and removes it: what every command
    /// will do, tried once at start so that a host where it cannot work
    /// is told then, not at the first alert.
    fn probe(&self) -> Result<(), String> {
        use std::os::unix::process::CommandExt as _;
        let cgroup = self
            .create()
            .map_err(|e| format!("cannot make a cgroup in {}: {e}", self.dir.display()))?;
        let procs = cgroup.procs.clone();
        let mut sh = std::process::Command::new("sh");
        sh.args(["-c", ":"]);
        // SAFETY: the closure runs between fork and exec and only opens,
        // writes and closes a file (`join`), all async-signal-safe, with
        // nothing allocated.
        unsafe {
            sh.pre_exec(move || join(&procs));
        }
        let status = sh
            .status()
            .map_err(|e| format!("cannot move a process into a cgroup: {e}"))?;
        if !status.success() {
            return Err(format!("a probe command failed ({status})"));
        }
        cgroup
            .remove_now()
            .map_err(|e| format!("cannot remove a cgroup: {e}"))
    }
}

/// The start of every command cgroup's name.
const PREFIX: &str = "portwatch-exec-";

/// The directory of the cgroup v2 `own` (a `/proc/self/cgroup` path) in
/// the first cgroup2 mount that shows it.
fn v2_dir(mountinfo: &str, own: &str) -> Option<PathBuf> {
    let own = own.trim_end();
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split(' ');
        let root = unescape(fields.nth(3)?);
        let mount = unescape(fields.next()?);
        // A mount of a subtree shows the cgroups below its root only.
        let rel = if root == "/" {
            own.strip_prefix('/')?
        } else {
            let rest = own.strip_prefix(root.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest.trim_start_matches('/')
        };
        Some(if rel.is_empty() {
            PathBuf::from(mount)
        } else {
            Path::new(&mount).join(rel)
        })
    })
}

/// A mountinfo field: spaces, tabs, newlines and backslashes are octal
/// escapes there.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = bytes
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is
/// `procs`. Called between fork and exec: only async-signal-safe system
/// calls, no allocation (an `Errno` becomes an `io::Error` without one).
pub fn join(procs: &std::ffi::CStr) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(procs, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    // "0" is the writer itself.
    rustix::io::write(&fd, b"0")?;
    Ok(())
}

/// One command's cgroup. Dropped without [`Cgroup::close`] (a spawn that
/// failed, a runtime shutting down), it is killed and removed as far as
/// that can be done without waiting.
pub struct Cgroup {
    /// None once removed.
    dir: Option<PathBuf>,
    procs: CString,
}

impl Cgroup {
    /// Its `cgroup.procs`, for [`join`].
    pub fn procs(&self) -> CString {
        self.procs.clone()
    }

    /// Kills every process in it.
    pub fn kill(&self) {
        let Some(dir) = &self.dir else { return };
        // cgroup.kill (Linux 5.14) kills all at once, forks in flight
        // included.
        if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        // Before it: freeze, so that nothing forks or exits (and frees its
        // pid for reuse) meanwhile, then kill each process it holds.
        let _ = std::fs::write(dir.join("cgroup.freeze"), "1");
        for _ in 0..100 {
            let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let mut any = false;
            for pid in pids
                .lines()
                .filter_map(|p| p.trim().parse::<i32>().ok())
                .filter_map(rustix::process::Pid::from_raw)
            {
                any = true;
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::Kill);
            }
            if !any {
                break;
            }
        }
    }

    /// Whether a process is still in it.
    fn populated(dir: &Path) -> bool {
        std::fs::read_to_string(dir.join("cgroup.events"))
            .map(|events| events.lines().any(|l| l == "populated 1"))
            .unwrap_or(false)
    }

    /// Kills what is left in it, waits (bounded) until it is empty and
    /// removes it. Err: it could not be removed, and is left behind.
    pub async fn close(mut self) -> io::Result<()> {
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        if Self::populated(&dir) {
            self.kill();
            let deadline = tokio::time::Instant::now() + EMPTY_WAIT;
            while Self::populated(&dir) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(EMPTY_POLL).await;
            }
        }
        self.dir = None;
        std::fs::remove_dir(&dir)
    }

    /// Removes it, empty as it must be by now.
    fn remove_now(mut self) -> io::Result<()> {
        match self.dir.take() {
            Some(dir) => std::fs::remove_dir(dir),
            None => Ok(()),
        }
    }

    /// Its name, for a report.
    pub fn name(&self) -> String {
        self.dir
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.clone() {
            self.kill();
            // Fails while the killed processes are still exiting: a few
            // tries, briefly (this is a shutdown or a failed start).
            for _ in 0..DROP_TRIES {
                if std::fs::remove_dir(&dir).is_ok() {
                    return;
                }
                std::thread::sleep(EMPTY_POLL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup_in_the_v2_mount() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_dir(info, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            v2_dir(info, "/system.slice/portwatch.service\n"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/system.slice/portwatch.service"
            ))
        );
        // A container's mount of its own subtree, with an escaped space.
        let sub = "50 1 0:38 /a\\040b /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_dir(sub, "/a b/c"),
            Some(PathBuf::from("/sys/fs/cgroup/c"))
        );
        assert_eq!(v2_dir(sub, "/a bc"), None);
        assert_eq!(v2_dir("41 31 0:38 / /x rw - cgroup cgroup rw\n", "/"), None);
    }
}
