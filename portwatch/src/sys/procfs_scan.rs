//! The procfs baseline: the sockets of every network namespace that has
//! processes, and the processes owning them.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    mem::MaybeUninit,
    net::SocketAddr,
    os::unix::fs::MetadataExt as _,
};

use procfs::{
    FromRead as _, ProcessCGroups,
    process::{FDTarget, Process, Stat},
};

use super::{
    sock_diag,
    socket_table::{SocketEntry, SocketQuery},
};
use crate::{
    error::{Error, Result},
    event::{Listener, Proto},
    safe_text::safe_str,
};

/// A process that holds a socket open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: u32,
    /// Start time in clock ticks since boot: among several holders of one
    /// socket (a server that forked workers), the oldest is the owner.
    pub start_time: u64,
    pub comm: String,
}

/// The network namespace inode of a process (`/proc/PID/ns/net`).
pub(crate) fn netns_of(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// A process's cgroup v2 path, or empty when it has none.
pub(crate) fn cgroup_of(pid: u32) -> String {
    ProcessCGroups::from_file(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|groups| {
            groups
                .0
                .into_iter()
                .find(|g| g.hierarchy == 0 && g.controllers.is_empty())
        })
        .map(|g| safe_str(&g.pathname))
        .unwrap_or_default()
}

/// Every socket `queries` ask for, in every namespace, with its owner: the
/// oldest process holding it for which `owner_ok` is true. A socket no
/// such process holds is kept with pid 0 only if `owner_ok(0)`.
///
/// The socket tables are read before and after the processes' file
/// descriptors, and only sockets present both times are kept: a socket
/// that exists across the whole scan cannot hide from the descriptor walk,
/// and one that was closed meanwhile is not reported as an orphan. (A
/// table read while it changes may also list a socket twice.)
pub(crate) fn scan_listeners(
    queries: &[SocketQuery],
    owner_ok: &dyn Fn(u32) -> bool,
) -> Result<Vec<Listener>> {
    let before = read_tables(&list_processes()?, queries);
    // Listed again after the first read: whoever created a socket seen in
    // that read existed by then, so the walk below meets its holder.
    let all = list_processes()?;
    let wanted: HashSet<u64> = before.iter().map(|e| e.inode).collect();
    let mut holders: HashMap<u64, Vec<Holder>> = HashMap::new();
    for (pid, _) in &all {
        // Processes come and go while we read: one that vanished is skipped.
        let mut holder = None;
        for inode in socket_inodes(*pid) {
            if !wanted.contains(&inode) {
                continue;
            }
            if holder.is_none() {
                holder = holder_of(*pid);
            }
            if let Some(h) = &holder {
                holders.entry(inode).or_default().push(h.clone());
            }
        }
    }

    let after: HashSet<u64> = read_tables(&all, queries).iter().map(|e| e.inode).collect();
    let mut seen = HashSet::new();
    let entries: Vec<SocketEntry> = before
        .into_iter()
        .filter(|e| after.contains(&e.inode) && seen.insert(e.inode))
        .collect();
    let mut listeners = listeners_with_owners(entries, &holders, owner_ok);
    // One read per owner, not per socket: servers own many.
    let mut cgroups: HashMap<u32, String> = HashMap::new();
    for l in &mut listeners {
        if l.pid != 0 {
            l.cgroup = cgroups
                .entry(l.pid)
                .or_insert_with(|| cgroup_of(l.pid))
                .clone();
        }
    }
    Ok(listeners)
}

/// The socket inodes a process holds: one readlinkat(2) per descriptor,
/// relative to the open fd directory, so the kernel does not walk
/// /proc/PID/fd/N from the root for each one (ss does, and pays for it).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let dir_path = format!("/proc/{pid}/fd");
    let (Ok(dir), Ok(entries)) = (File::open(&dir_path), std::fs::read_dir(&dir_path)) else {
        return Vec::new();
    };
    let mut buf = [MaybeUninit::<u8>::uninit(); 64];
    entries
        .flatten()
        .filter_map(|entry| {
            let (link, _) =
                rustix::fs::readlinkat_raw(&dir, entry.file_name().as_os_str(), &mut buf).ok()?;
            match std::str::from_utf8(link).ok()?.parse::<FDTarget>().ok()? {
                FDTarget::Socket(inode) => Some(inode),
                _ => None,
            }
        })
        .collect()
}

/// Every process (its pid) and its network namespace. Reads the /proc
/// directory only: opening each process is left to whoever needs it.
fn list_processes() -> Result<Vec<(u32, Option<u64>)>> {
    let dir = std::fs::read_dir("/proc").map_err(|source| Error::Io {
        what: "cannot list the processes in /proc",
        source,
    })?;
    Ok(dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| (pid, netns_of(pid)))
        .collect())
}

/// The rows `queries` ask for in every namespace's tables, read through
/// one process of each namespace: by sock_diag, or from /proc/PID/net/*
/// where sock_diag is unavailable (a kernel without it, or a namespace we
/// may not enter).
fn read_tables(all: &[(u32, Option<u64>)], queries: &[SocketQuery]) -> Vec<SocketEntry> {
    let own = netns_of(std::process::id());
    let mut entries = Vec::new();
    let mut done = HashSet::new();
    for &(pid, netns) in all {
        let Some(ns) = netns else { continue };
        if done.contains(&ns) {
            continue;
        }
        // If this process exited, another one of the namespace reads it.
        if let Some(rows) = table_rows(pid, ns, own, queries) {
            done.insert(ns);
            entries.extend(rows);
        }
    }
    entries
}

/// The rows of namespace `ns`, read through process `pid` of it; None if
/// that process is gone.
fn table_rows(
    pid: u32,
    ns: u64,
    own: Option<u64>,
    queries: &[SocketQuery],
) -> Option<Vec<SocketEntry>> {
    let diag = if Some(ns) == own {
        sock_diag::sockets_here(queries, ns)
    } else {
        sock_diag::sockets_in(pid, queries, ns)
    };
    if let Ok(rows) = diag {
        return Some(rows);
    }
    let proc = Process::new(pid as i32).ok()?;
    let mut rows = Vec::new();
    for q in queries {
        let entry = |proto, state, local, remote, uid, inode| SocketEntry {
            proto,
            state,
            local,
            remote,
            uid,
            inode,
            netns: ns,
        };
        // A kernel without IPv6 has no tcp6 or udp6 table: that is no error.
        match q.proto {
            Proto::Tcp => rows.extend(
                proc.tcp()
                    .ok()?
                    .into_iter()
                    .chain(proc.tcp6().unwrap_or_default())
                    .map(|e| {
                        let state = e.state.to_u8();
                        entry(
                            Proto::Tcp,
                            state,
                            e.local_address,
                            e.remote_address,
                            e.uid,
                            e.inode,
                        )
                    })
                    .filter(|e| q.states.contains(e.state)),
            ),
            Proto::Udp => rows.extend(
                proc.udp()
                    .ok()?
                    .into_iter()
                    .chain(proc.udp6().unwrap_or_default())
                    .map(|e| {
                        let state = e.state.to_u8();
                        entry(
                            Proto::Udp,
                            state,
                            e.local_address,
                            e.remote_address,
                            e.uid,
                            e.inode,
                        )
                    })
                    .filter(|e| q.states.contains(e.state)),
            ),
        }
    }
    Some(rows)
}

fn holder_of(pid: u32) -> Option<Holder> {
    let stat = Stat::from_file(format!("/proc/{pid}/stat")).ok()?;
    Some(Holder {
        pid,
        start_time: stat.starttime,
        comm: safe_str(&stat.comm),
    })
}

/// Pure: joins socket entries with the holders of their inodes.
pub(crate) fn listeners_with_owners(
    entries: Vec<SocketEntry>,
    holders: &HashMap<u64, Vec<Holder>>,
    owner_ok: &dyn Fn(u32) -> bool,
) -> Vec<Listener> {
    entries
        .into_iter()
        .filter_map(|e| {
            let candidates = holders.get(&e.inode).map(Vec::as_slice).unwrap_or_default();
            let owner = candidates
                .iter()
                .filter(|h| owner_ok(h.pid))
                .min_by_key(|h| (h.start_time, h.pid));
            if owner.is_none() && !owner_ok(0) {
                return None;
            }
            Some(Listener {
                proto: e.proto,
                address: e.local.ip(),
                port: e.local.port(),
                pid: owner.map_or(0, |h| h.pid),
                comm: owner.map_or_else(String::new, |h| h.comm.clone()),
                uid: e.uid,
                skaddr: None,
                inode: Some(e.inode),
                netns: e.netns,
                cgroup: String::new(),
                opened_at: None,
            })
        })
        .collect()
}

/// The listening TCP sockets a process holds.
pub(crate) fn listening_sockets_of(pid: u32) -> Vec<SocketAddr> {
    let Some(ns) = netns_of(pid) else {
        return Vec::new();
    };
    let held: HashSet<u64> = socket_inodes(pid).into_iter().collect();
    table_rows(
        pid,
        ns,
        netns_of(std::process::id()),
        &[SocketQuery::TCP_LISTEN],
    )
    .unwrap_or_default()
    .into_iter()
    .filter(|r| held.contains(&r.inode))
    .map(|r| r.local)
    .collect()
}

/// (pid, parent pid) of every process.
pub(crate) fn parent_links() -> Result<Vec<(u32, u32)>> {
    Ok(list_processes()?
        .into_iter()
        .filter_map(|(pid, _)| {
            let stat = Stat::from_file(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, u32::try_from(stat.ppid).ok()?))
        })
        .collect())
}

/// Whether a process exists.
pub(crate) fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(local: &str, inode: u64) -> SocketEntry {
        SocketEntry {
            proto: Proto::Tcp,
            state: crate::sys::socket_table::state::LISTEN,
            local: local.parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            uid: 1000,
            inode,
            netns: 7,
        }
    }

    fn holder(pid: u32, start_time: u64, comm: &str) -> Holder {
        Holder {
            pid,
            start_time,
            comm: comm.into(),
        }
    }

    #[test]
    fn joins_entries_with_the_oldest_holder() {
        let mut holders = HashMap::new();
        holders.insert(77, vec![holder(12, 9, "worker"), holder(10, 5, "master")]);
        let all = |_: u32| true;
        let out = listeners_with_owners(
            vec![entry("127.0.0.1:8080", 77), entry("[::]:22", 78)],
            &holders,
            &all,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            (
                out[0].address.to_string(),
                out[0].port,
                out[0].pid,
                out[0].comm.as_str(),
                out[0].uid,
                out[0].netns
            ),
            ("127.0.0.1".to_string(), 8080, 10, "master", 1000, 7)
        );
        assert_eq!(
            (out[1].address.to_string(), out[1].pid, out[1].comm.as_str()),
            ("::".to_string(), 0, "")
        );
    }

    #[test]
    fn a_filter_picks_an_admitted_holder_or_drops_the_socket() {
        let mut holders = HashMap::new();
        holders.insert(77, vec![holder(1, 0, "init"), holder(50, 9, "service")]);
        let only_50 = |pid: u32| pid == 50;
        let out = listeners_with_owners(
            vec![entry("0.0.0.0:80", 77), entry("0.0.0.0:81", 78)],
            &holders,
            &only_50,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pid, 50);
    }
}
