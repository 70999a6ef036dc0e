//! A process's details from /proc, every text made safe from its bytes;
//! and a process pinned by a pidfd, so that a signal meant for it never
//! reaches another process that reuses its pid.

use std::os::fd::OwnedFd;

use chrono::{DateTime, TimeDelta, Utc};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use super::{exe_hash, netns, procfs_scan};
use crate::{
    error::{Error, Result},
    process::{ProcessBrief, ProcessInfo, shown_env_value},
    safe_text::safe_text,
};

fn link(pid: u32, what: &str) -> String {
    procfs_scan::link(pid, what).unwrap_or_default()
}

fn nul_separated(pid: u32, what: &str) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/{what}"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn cmdline(pid: u32) -> String {
    nul_separated(pid, "cmdline")
        .iter()
        .map(|a| safe_text(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parent, grandparent, ... of a process whose parent is `parent`.
fn ancestry(mut parent: u32) -> Vec<(u32, String)> {
    let mut chain = Vec::new();
    while parent > 0 && chain.len() < 64 {
        let Some(p) = procfs_scan::read_full_stat(parent) else {
            break;
        };
        chain.push((parent, p.comm));
        parent = p.ppid;
    }
    chain
}

/// Executable, command line and ancestry of `pid`.
pub(crate) fn brief(pid: u32) -> Option<ProcessBrief> {
    let stat = procfs_scan::read_full_stat(pid)?;
    Some(ProcessBrief {
        exe: link(pid, "exe"),
        cmdline: cmdline(pid),
        ancestry: ancestry(stat.ppid),
    })
}

/// Everything /proc shows about `pid`; None when it is gone. Without the
/// right to read a field (another user's process, unprivileged) the field
/// stays empty.
pub(crate) fn read(pid: u32) -> Option<ProcessInfo> {
    let stat = procfs_scan::read_full_stat(pid)?;
    let environ = nul_separated(pid, "environ")
        .iter()
        .map(|kv| {
            let (k, v) = match kv.iter().position(|&b| b == b'=') {
                Some(i) => (&kv[..i], &kv[i + 1..]),
                None => (&kv[..], &[][..]),
            };
            let name = safe_text(k);
            let value = shown_env_value(&name, &safe_text(v));
            (name, value)
        })
        .collect();
    let ticks = procfs::ticks_per_second().max(1);
    let start_time = boot_time().map(|boot| {
        boot + TimeDelta::milliseconds(
            i64::try_from(stat.start_time.saturating_mul(1000) / ticks).unwrap_or(i64::MAX),
        )
    });
    let children = procfs_scan::children_of(pid);
    let cgroup = procfs_scan::cgroup_of(pid);
    Some(ProcessInfo {
        pid,
        ppid: stat.ppid,
        comm: stat.comm,
        exe: link(pid, "exe"),
        cwd: link(pid, "cwd"),
        cmdline: cmdline(pid),
        uid: procfs_scan::uids(pid).map_or(0, |(real, _)| real),
        start_time,
        rss_bytes: stat.rss_pages.saturating_mul(procfs::page_size()),
        cpu_ticks: stat.cpu_ticks,
        ticks_per_second: ticks,
        threads: stat.threads,
        environ,
        ancestry: ancestry(stat.ppid),
        children,
        container: crate::container::Container::classify(&cgroup),
        cgroup,
        netns: netns::of_process(pid),
        exe_sha256: exe_hash::of(pid),
    })
}

/// When the system booted (`btime` of /proc/stat).
fn boot_time() -> Option<DateTime<Utc>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    DateTime::from_timestamp(secs, 0)
}

/// A process held by a pidfd.
#[derive(Debug)]
pub(crate) struct Pinned {
    pub pid: u32,
    fd: OwnedFd,
}

impl Pinned {
    /// Pins `pid`. Refuses pid 1 and portwatch itself.
    pub(crate) fn new(pid: u32) -> Result<Self> {
        if pid <= 1 {
            return Err(Error::Refused(format!(
                "portwatch does not signal pid {pid}"
            )));
        }
        if pid == std::process::id() {
            return Err(Error::Refused("portwatch does not signal itself".into()));
        }
        let p = Pid::from_raw(i32::try_from(pid).map_err(|_| Error::NoSuchProcess(pid))?)
            .ok_or(Error::NoSuchProcess(pid))?;
        let fd = pidfd_open(p, PidfdFlags::empty()).map_err(|_| Error::NoSuchProcess(pid))?;
        Ok(Self { pid, fd })
    }

    /// Whether the pinned process is still alive: its pidfd turns readable
    /// when it exits, so a pid read after pinning is still its own.
    pub(crate) fn alive(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::IN,
        )];
        matches!(rustix::event::poll(&mut fds, 0), Ok(0))
    }

    /// Sends SIGTERM (`kill` false) or SIGKILL to the pinned process; an
    /// error if it has exited meanwhile (its pid may belong to another
    /// process by now, which is never signalled).
    pub(crate) fn signal(&self, kill: bool) -> Result<()> {
        let sig = if kill { Signal::Kill } else { Signal::Term };
        pidfd_send_signal(&self.fd, sig).map_err(|e| match e {
            rustix::io::Errno::SRCH => Error::ProcessExited(self.pid),
            other => Error::Io {
                what: "cannot signal the process",
                source: other.into(),
            },
        })
    }
}
