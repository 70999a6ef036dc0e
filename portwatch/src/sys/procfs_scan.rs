//! The procfs baseline: listening TCP sockets and the processes owning them.

use std::{collections::HashMap, net::SocketAddr};

use procfs::{
    net::{TcpNetEntry, TcpState},
    process::{FDTarget, Process, all_processes},
};

use crate::{
    error::{Error, Result},
    event::{Listener, Proto},
    safe_text::safe_str,
};

/// A process that holds a socket open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Start time in clock ticks since boot: among several holders of one
    /// socket (a server that forked workers), the oldest is the owner.
    pub start_time: u64,
    pub comm: String,
}

/// Every listening TCP socket of this network namespace, with its owner.
/// Sockets no process holds (being torn down) are reported with pid 0.
pub fn scan_listeners() -> Result<Vec<Listener>> {
    let proc_err = |what| move |source| Error::Procfs { what, source };
    let mut entries = procfs::net::tcp().map_err(proc_err("/proc/net/tcp"))?;
    // A kernel without IPv6 has no tcp6 table: that is no error.
    entries.extend(procfs::net::tcp6().unwrap_or_default());
    let listening: Vec<ListenEntry> = entries
        .into_iter()
        .filter(|e| e.state == TcpState::Listen)
        .map(ListenEntry::from)
        .collect();
    let holders = socket_holders(listening.iter().map(|e| e.inode))?;
    Ok(listeners_with_owners(listening, &holders))
}

/// A row of /proc/net/tcp{,6} in the LISTEN state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenEntry {
    pub local: SocketAddr,
    pub uid: u32,
    pub inode: u64,
}

impl From<TcpNetEntry> for ListenEntry {
    fn from(e: TcpNetEntry) -> Self {
        Self {
            local: e.local_address,
            uid: e.uid,
            inode: e.inode,
        }
    }
}

/// Pure: joins listening entries with the holders of their inodes.
pub fn listeners_with_owners(
    entries: Vec<ListenEntry>,
    holders: &HashMap<u64, Holder>,
) -> Vec<Listener> {
    entries
        .into_iter()
        .map(|e| {
            let owner = holders.get(&e.inode);
            Listener {
                proto: Proto::Tcp,
                address: e.local.ip(),
                port: e.local.port(),
                pid: owner.map_or(0, |h| h.pid),
                comm: owner.map_or_else(String::new, |h| h.comm.clone()),
                uid: e.uid,
                skaddr: None,
                inode: Some(e.inode),
            }
        })
        .collect()
}

/// Finds, for each wanted socket inode, the oldest process holding it.
fn socket_holders(wanted: impl Iterator<Item = u64>) -> Result<HashMap<u64, Holder>> {
    let wanted: std::collections::HashSet<u64> = wanted.collect();
    let mut holders: HashMap<u64, Holder> = HashMap::new();
    if wanted.is_empty() {
        return Ok(holders);
    }
    let procs = all_processes().map_err(|source| Error::Procfs {
        what: "the process list",
        source,
    })?;
    // Processes come and go while we read: one that vanished is skipped.
    for proc in procs.flatten() {
        let Ok(fds) = proc.fd() else { continue };
        let mut stat = None;
        for fd in fds.flatten() {
            let FDTarget::Socket(inode) = fd.target else {
                continue;
            };
            if !wanted.contains(&inode) {
                continue;
            }
            let Some(candidate) = holder_of(&proc, &mut stat) else {
                break;
            };
            match holders.get(&inode) {
                Some(h) if (h.start_time, h.pid) <= (candidate.start_time, candidate.pid) => {}
                _ => {
                    holders.insert(inode, candidate);
                }
            }
        }
    }
    Ok(holders)
}

fn holder_of(proc: &Process, stat: &mut Option<Holder>) -> Option<Holder> {
    if stat.is_none() {
        let s = proc.stat().ok()?;
        *stat = Some(Holder {
            pid: u32::try_from(s.pid).ok()?,
            start_time: s.starttime,
            comm: safe_str(&s.comm),
        });
    }
    stat.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(local: &str, inode: u64) -> ListenEntry {
        ListenEntry {
            local: local.parse().unwrap(),
            uid: 1000,
            inode,
        }
    }

    #[test]
    fn joins_entries_with_holders() {
        let mut holders = HashMap::new();
        holders.insert(
            77,
            Holder {
                pid: 10,
                start_time: 5,
                comm: "web".into(),
            },
        );
        let out = listeners_with_owners(
            vec![entry("127.0.0.1:8080", 77), entry("[::]:22", 78)],
            &holders,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            (
                out[0].address.to_string(),
                out[0].port,
                out[0].pid,
                out[0].comm.as_str(),
                out[0].uid
            ),
            ("127.0.0.1".to_string(), 8080, 10, "web", 1000)
        );
        assert_eq!(
            (out[1].address.to_string(), out[1].pid, out[1].comm.as_str()),
            ("::".to_string(), 0, "")
        );
    }
}
