//! The daemon's local event socket: one privileged monitor serving its
//! events, as JSON lines, to unprivileged clients of a group. A client
//! sends one request line (its filter), gets its baseline and a ready
//! line, then live events; one that falls behind gets a `lost` line and a
//! fresh baseline.

mod hub;
mod server;

pub use crate::wire::request::{
    MAX_REQUEST_BYTES, Request, Subscription, parse_request, parse_subscription, request_line,
};
pub use hub::{Hub, InTree, Join};
pub use server::{Server, SocketConfig, group_id};

/// Where the daemon serves by default.
pub const DEFAULT_SOCKET: &str = "/run/portwatch/portwatch.sock";

/// Whether `pid` is `root` or below it, now (from /proc).
pub fn is_descendant(pid: u32, root: u32) -> bool {
    crate::sys::local_socket::is_descendant(pid, root)
}
