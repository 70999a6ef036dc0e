//! `list --json`: one JSON array of the listeners open now.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{container::Container, event::Listener, event::Proto};

/// One element of `list --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "portwatch list entry")]
pub struct ListEntry {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    /// The owner; 0 when no process could be named.
    pub pid: u32,
    pub comm: String,
    pub uid: u32,
    /// The socket's inode, where the table shows it.
    pub inode: Option<u64>,
    pub netns: u64,
    pub cgroup: String,
    pub container: Option<Container>,
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
        }
    }
}

/// The whole list, as `list --json` prints it.
pub fn to_json(listeners: &[Listener]) -> String {
    let rows: Vec<ListEntry> = listeners.iter().map(ListEntry::from).collect();
    super::to_json(&rows)
}
