//! What the engine and the monitor report besides port events: resync
//! summaries, counters, connections and process samples. Plain data,
//! shared by the engine, the rules and the output formats.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};

/// Counters a caller can read at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Kernel events received.
    pub events: u64,
    /// Events the kernel dropped because the ring buffer was full.
    pub drops: u64,
    /// Listeners whose owner the kernel could not remember (map full).
    pub owners_full: u64,
    /// procfs resynchronisations done (polls, for the procfs backend).
    pub resyncs: u64,
    /// Ring buffer records that did not decode (only a kernel object that
    /// does not match this binary sends them).
    pub malformed: u64,
    /// Listeners opened without `bind()` whose port was not found in
    /// /proc (only without the listen callback); a resync reported them.
    pub unresolved: u64,
}

/// Why a resynchronisation ran.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResyncReason {
    /// The kernel dropped events.
    Drops,
    /// `resync_interval` elapsed.
    Interval,
    /// Someone asked for one ([`crate::Engine::request_resync`]).
    Requested,
    /// Listeners opened without `bind()` whose port could not be found.
    Unresolved,
}

impl ResyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Drops => "drops",
            ResyncReason::Interval => "interval",
            ResyncReason::Requested => "requested",
            ResyncReason::Unresolved => "unresolved",
        }
    }
}

/// What a resynchronisation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResyncSummary {
    pub reason: ResyncReason,
    pub opened: usize,
    pub closed: usize,
    pub drops: u64,
    pub ts: DateTime<Utc>,
}

/// A TCP connection made (outbound, at connect time) or accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub pid: u32,
    pub comm: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub outbound: bool,
    pub ts: DateTime<Utc>,
}

/// Resource use of a process that owns listening sockets.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSample {
    pub pid: u32,
    pub comm: String,
    /// CPU time over the last interval, as a percentage of one CPU.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub ts: DateTime<Utc>,
}
