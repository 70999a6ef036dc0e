//! What /proc says about a listener's owner, for its story
//! ([`crate::owner`]): its ancestry as it is now, its terminal, login
//! session, a few environment variables, working directory and
//! executable. Each read is of the process's own /proc entries; the git
//! work tree is found through the working directory's fd, never by name.

use std::os::unix::fs::MetadataExt as _;

use super::{git, procfs_scan, slow_reads::SlowReads, users::Users};
use crate::{
    owner::{Ancestor, AncestorMemo, Forebear, OwnerFacts, Remembered, capped, names_a_story},
    safe_text::safe_text,
};

/// Ancestors followed at most (a loop cannot happen, but a deep chain can).
const MAX_ANCESTRY: usize = 64;
/// Of the environment, the first bytes read: enough for the variables
/// wanted, bounded against a process that made its environment huge.
const MAX_ENVIRON: u64 = 256 * 1024;

/// The start time of `pid`, in clock ticks since boot; None when gone.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    procfs_scan::read_full_stat(pid).map(|s| s.start_time)
}

/// The (device, inode) of the file `pid` runs: to tell it from another
/// at the same path, and an `execve` since.
pub(crate) fn exe_id(pid: u32) -> Option<(u64, u64)> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, makedev, statx};
    // The attributes the kernel holds, not asked again of the file's
    // filesystem: a FUSE or network server (another user's) could hold a
    // fresh getattr for as long as it likes, and this runs on the event
    // loop.
    let st = statx(
        CWD,
        format!("/proc/{pid}/exe"),
        AtFlags::STATX_DONT_SYNC,
        StatxFlags::INO,
    )
    .ok()?;
    Some((makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino))
}

/// Everything /proc says about `pid` for its story; None when it is
/// gone.
/// What the slow reads are asked: the process, its working directory
/// and its real uid.
pub(crate) struct SlowQuery {
    pid: u32,
    cwd: Option<String>,
    uid: Option<u32>,
}

/// What they answer: the environment's hints, the arguments, and the git
/// work tree.
pub(crate) struct SlowAnswer {
    tmux_pane: Option<String>,
    ssh_env: bool,
    git: Option<crate::owner::GitCheckout>,
    cmdline: Option<String>,
}

/// The reads another user can make block, on their own thread.
pub(crate) type Slow = SlowReads<SlowQuery, SlowAnswer>;

pub(crate) fn slow_reads() -> Slow {
    SlowReads::new(|q: SlowQuery| {
        let (tmux_pane, ssh_env) = environment(q.pid);
        // A read of its memory too, as the environment. Never portwatch's
        // own: its arguments hold its outputs' URLs, which may carry a
        // secret, and it reports its own metrics listener.
        let cmdline = (q.pid != std::process::id())
            .then(|| procfs_scan::cmdline(q.pid).map(capped))
            .flatten();
        let git = q
            .cwd
            .as_deref()
            .zip(q.uid)
            .and_then(|(cwd, uid)| git::checkout(q.pid, cwd, uid));
        SlowAnswer {
            tmux_pane,
            ssh_env,
            git,
            cmdline,
        }
    })
}

pub(crate) fn read(
    pid: u32,
    users: &mut Users,
    memo: &mut AncestorMemo,
    slow: &mut Slow,
) -> Option<OwnerFacts> {
    let (mut facts, query) = read_fast(pid, users, memo)?;
    finish(&mut facts, slow.ask(query));
    Some(facts)
}

/// [`read`] of several processes, their slow reads asked all at once
/// (one wait for the thread, not one per process).
pub(crate) fn read_all(
    pids: &[u32],
    users: &mut Users,
    memo: &mut AncestorMemo,
    slow: &mut Slow,
) -> Vec<Option<OwnerFacts>> {
    let mut read: Vec<Option<OwnerFacts>> = Vec::with_capacity(pids.len());
    let mut queries = Vec::new();
    for &pid in pids {
        match read_fast(pid, users, memo) {
            Some((facts, query)) => {
                read.push(Some(facts));
                queries.push(query);
            }
            None => read.push(None),
        }
    }
    let mut answers = slow.ask_all(queries).into_iter();
    for facts in read.iter_mut().flatten() {
        finish(facts, answers.next().flatten());
    }
    read
}

/// The slow reads' answer in `facts`; none (stuck, or another is): no
/// hints, no work tree.
fn finish(facts: &mut OwnerFacts, answer: Option<SlowAnswer>) {
    if let Some(a) = answer {
        facts.tmux_pane = a.tmux_pane;
        facts.ssh_env = a.ssh_env;
        facts.git = a.git;
        facts.cmdline = a.cmdline;
    }
}

/// All but the slow reads, and what to ask them.
fn read_fast(
    pid: u32,
    users: &mut Users,
    memo: &mut AncestorMemo,
) -> Option<(OwnerFacts, SlowQuery)> {
    let stat = procfs_scan::read_full_stat(pid)?;
    let own_cgroup = procfs_scan::cgroup_of(pid);
    let owner_uids = procfs_scan::uids(pid);
    // A process in portwatch's own pid namespace (the host's, as a rule)
    // has all its ancestors there: no namespace to stop at.
    let own_pidns = pidns(pid);
    let foreign = own_pidns != pidns(std::process::id());
    let mut ancestry = vec![Forebear {
        ancestor: Ancestor {
            pid,
            comm: stat.comm.clone(),
        },
        cgroup: own_cgroup.clone(),
        root: owner_uids == Some((0, 0)),
    }];
    // Ancestors' cgroups are read while they are the owner's: only those
    // tell which ancestors share its unit (see `OwnerFacts::origin`).
    let mut same_cgroup = true;
    let mut parent = stat.ppid;
    while parent > 0 && ancestry.len() < MAX_ANCESTRY {
        // The init of the owner's pid namespace is its last ancestor: its
        // parent (a container's shim) is another namespace's story.
        if foreign && pidns(parent) != own_pidns {
            break;
        }
        let entry = match memo.0.entry(parent) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let Some(p) = procfs_scan::read_full_stat(parent) else {
                    break;
                };
                // Only a name that tells a story needs root to be
                // believed (see `OwnerFacts::origin`).
                let root = names_a_story(&p.comm) && is_root(parent);
                v.insert(Remembered {
                    comm: p.comm,
                    ppid: p.ppid,
                    root,
                    cgroup: None,
                })
            }
        };
        let cg = if same_cgroup {
            entry
                .cgroup
                .get_or_insert_with(|| procfs_scan::cgroup_of(parent))
                .clone()
        } else {
            String::new()
        };
        same_cgroup = cg == own_cgroup;
        ancestry.push(Forebear {
            ancestor: Ancestor {
                pid: parent,
                comm: entry.comm.clone(),
            },
            cgroup: cg,
            root: entry.root,
        });
        parent = entry.ppid;
    }
    let login_uid = read_number(pid, "loginuid").filter(|&u| u != u64::from(u32::MAX));
    let session = read_number(pid, "sessionid")
        .filter(|&s| s != u64::from(u32::MAX))
        .and_then(|s| u32::try_from(s).ok());
    let (exe, exe_deleted) = match procfs_scan::link(pid, "exe") {
        Some(e) => match e.strip_suffix(" (deleted)") {
            Some(path) => (Some(capped(path.to_string())), true),
            None => (Some(capped(e)), false),
        },
        None => (None, false),
    };
    let exe_id = exe_id(pid);
    let cwd = procfs_scan::link(pid, "cwd").map(capped);
    let query = SlowQuery {
        pid,
        cwd: cwd.clone(),
        uid: owner_uids.map(|(real, _)| real),
    };
    let facts = OwnerFacts {
        start_time: stat.start_time,
        ancestry,
        tty: tty_name(stat.tty_nr),
        login_user: login_uid
            .and_then(|u| u32::try_from(u).ok())
            .map(|u| users.name(u)),
        session,
        tmux_pane: None,
        ssh_env: false,
        cwd,
        git: None,
        exe,
        exe_id,
        exe_deleted,
        // The slow reads' (see [`slow_reads`]).
        cmdline: None,
    };
    Some((facts, query))
}

/// Whether `pid` runs as root: real and effective uid 0 (the `Uid:` line
/// of its status; the owner of /proc/PID says nothing of a process that
/// made itself undumpable).
fn is_root(pid: u32) -> bool {
    procfs_scan::uids(pid) == Some((0, 0))
}

fn pidns(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

fn read_number(pid: u32, what: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{what}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `TMUX_PANE` (when `TMUX` is set too) and whether `SSH_CONNECTION` is
/// set, from the first [`MAX_ENVIRON`] bytes of the environment.
fn environment(pid: u32) -> (Option<String>, bool) {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    if let Ok(f) = std::fs::File::open(format!("/proc/{pid}/environ")) {
        let _ = f.take(MAX_ENVIRON).read_to_end(&mut bytes);
    }
    let mut tmux = false;
    let mut pane = None;
    let mut ssh = false;
    for var in bytes.split(|&b| b == 0) {
        if var.starts_with(b"TMUX=") {
            tmux = true;
        } else if let Some(p) = var.strip_prefix(b"TMUX_PANE=") {
            // `%3`, as tmux names panes; anything else is no pane.
            let digits = p.strip_prefix(b"%").unwrap_or_default();
            if (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) {
                pane = Some(safe_text(p));
            }
        } else if var.starts_with(b"SSH_CONNECTION=") {
            ssh = true;
        }
    }
    (pane.filter(|_| tmux), ssh)
}

/// The name of a controlling terminal from its device number
/// (`tty_nr` of /proc/PID/stat): `pts/N`, `ttyN`, `ttySN`.
pub(crate) fn tty_name(tty_nr: u32) -> Option<String> {
    if tty_nr == 0 {
        return None;
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    Some(match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => format!("tty {major}:{minor}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_are_named_as_ps_names_them() {
        assert_eq!(tty_name(0), None);
        assert_eq!(tty_name(136 << 8 | 3).as_deref(), Some("pts/3"));
        assert_eq!(tty_name(137 << 8 | 1).as_deref(), Some("pts/257"));
        assert_eq!(tty_name(4 << 8 | 1).as_deref(), Some("tty1"));
        assert_eq!(tty_name(4 << 8 | 65).as_deref(), Some("ttyS1"));
    }

    #[test]
    fn this_process_has_a_story() {
        let mut users = Users::default();
        let f = read(
            std::process::id(),
            &mut users,
            &mut AncestorMemo::default(),
            &mut slow_reads(),
        )
        .unwrap();
        assert_eq!(f.ancestry[0].ancestor.pid, std::process::id());
        // Tests run as root.
        assert!(f.ancestry[0].root);
        assert!(f.exe.is_some() && !f.exe_deleted);
        assert!(f.start_time > 0);
        assert_eq!(start_time(std::process::id()), Some(f.start_time));
    }
}
