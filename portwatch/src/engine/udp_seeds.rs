//! The owners of UDP sockets a scan found (the baseline, a resync, the
//! aggregate mode's look), told to the kernel only where the release
//! program watches, so that their release is reported like that of a
//! socket bound since.

use std::collections::HashSet;

use crate::{event::Listener, sys::EventSource};

/// The UDP sockets of `listeners` whose release the release program
/// watches, attached to their cgroups first: only those may have their
/// owners recorded (one recorded elsewhere would never be taken). Without
/// the UDP programs there are none; a cgroup that cannot be covered is
/// warned of, its sockets' closes left to a resync.
pub(super) fn covered(source: &mut dyn EventSource, listeners: &[Listener]) -> Vec<Listener> {
    if listeners.is_empty() || source.udp_missing().is_some() {
        return Vec::new();
    }
    // Only a socket with a cookie can have its owner recorded.
    let listeners: Vec<&Listener> = listeners.iter().filter(|l| l.cookie.is_some()).collect();
    let mut cgroups: Vec<u64> = listeners.iter().map(|l| l.socket_cgroup).collect();
    cgroups.sort_unstable();
    cgroups.dedup();
    let mut failed = HashSet::new();
    for cgroup in cgroups {
        if let Err(e) = source.cover_release(cgroup) {
            tracing::warn!("the release of UDP sockets in cgroup {cgroup} cannot be watched: {e}");
            failed.insert(cgroup);
        }
    }
    listeners
        .into_iter()
        .filter(|l| !failed.contains(&l.socket_cgroup))
        .cloned()
        .collect()
}
