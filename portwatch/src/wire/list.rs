//! `list --json`: one JSON array of the listeners open now, and of the
//! ports DNAT rules publish that no listener is behind.

use std::net::{IpAddr, SocketAddr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    container::Container,
    event::{Listener, Proto},
    exposure::{Exposure, Published},
    listing::{Listing, Unbacked},
    owner::OwnerContext,
};

/// One element of `list --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "portwatch list entry")]
pub struct ListEntry {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    /// The owner; 0 when no process could be named (and on a published
    /// port no listener is behind).
    pub pid: u32,
    pub comm: String,
    pub uid: u32,
    /// The socket's inode, where the table shows it.
    pub inode: Option<u64>,
    pub netns: u64,
    pub cgroup: String,
    pub container: Option<Container>,
    /// Who can reach it: `exposure` with `reachable_via` or `why`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    /// DNAT rules that send connections to it, each with its exposure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_as: Vec<Published>,
    /// Only on a port a DNAT rule publishes with no listener behind it:
    /// where the rule sends connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnat_to: Option<SocketAddr>,
    /// Why its owner is there (see `docs/why.md`); with `list --hash`,
    /// its `exe_sha256` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<OwnerContext>,
}

impl From<&Listener> for ListEntry {
    fn from(l: &Listener) -> ListEntry {
        ListEntry {
            proto: l.proto,
            address: l.address,
            port: l.port,
            pid: l.pid,
            comm: l.comm.clone(),
            uid: l.uid,
            inode: l.inode,
            netns: l.netns,
            cgroup: l.cgroup.clone(),
            container: l.container.clone(),
            exposure: l.exposure.clone(),
            published_as: l.published_as.clone(),
            dnat_to: None,
            context: l.context.as_deref().cloned(),
        }
    }
}

impl From<&Unbacked> for ListEntry {
    fn from(u: &Unbacked) -> ListEntry {
        let p = &u.published;
        ListEntry {
            proto: p.proto,
            address: p.address,
            port: p.port,
            pid: 0,
            comm: String::new(),
            uid: 0,
            inode: None,
            netns: p.netns,
            cgroup: String::new(),
            container: None,
            exposure: Some(p.exposure.clone()),
            published_as: Vec::new(),
            dnat_to: Some(u.to),
            context: None,
        }
    }
}

/// The whole list, as `list --json` prints it.
pub fn to_json(listing: &Listing) -> String {
    let rows: Vec<ListEntry> = listing
        .listeners
        .iter()
        .map(ListEntry::from)
        .chain(listing.unbacked.iter().map(ListEntry::from))
        .collect();
    super::to_json(&rows)
}
