//! What the engine and the monitor report besides port events: resync
//! summaries, counters, connections and process samples. Plain data,
//! shared by the engine, the rules and the output formats.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use portwatch_common::{UDP_CLASS_EPHEMERAL, UDP_CLASS_OTHER, UDP_CLASS_SYSTEM};

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
    /// Opens the engine could not settle by itself: listeners opened
    /// without `bind()` whose port was not found in /proc (only without
    /// the listen confirmation; a resync reported them), and UDP sockets
    /// bound before their cgroup's release was watched that no look or
    /// resync could find or rule out (their namespace out of reach): they
    /// stay reported open until their release is seen.
    pub unresolved: u64,
    /// UDP binds the aggregate mode's kernel tally had no room for.
    pub binds_full: u64,
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
    /// Opens the engine could not settle by itself: listeners opened
    /// without `bind()` whose port could not be found, or UDP sockets
    /// bound before their release was watched whose namespace could not
    /// be read.
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

// The UDP aggregate mode's tally, as the kernel keeps it (counted by
// interval in `udp_tally`).

/// Which ports a bind took.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PortClass {
    /// Below 1024.
    System,
    /// In the ephemeral range (`net.ipv4.ip_local_port_range` when
    /// portwatch started): what bind() to port 0 hands out.
    Ephemeral,
    /// Any other port.
    Other,
}

impl PortClass {
    /// The class of the kernel's `UDP_CLASS_*` number.
    pub(crate) fn from_kernel(class: u32) -> Option<Self> {
        match class {
            UDP_CLASS_SYSTEM => Some(Self::System),
            UDP_CLASS_EPHEMERAL => Some(Self::Ephemeral),
            UDP_CLASS_OTHER => Some(Self::Other),
            _ => None,
        }
    }

    /// The kernel's `UDP_CLASS_*` number.
    pub(crate) fn kernel(self) -> u32 {
        match self {
            Self::System => UDP_CLASS_SYSTEM,
            Self::Ephemeral => UDP_CLASS_EPHEMERAL,
            Self::Other => UDP_CLASS_OTHER,
        }
    }

    /// The class of `port`, as the kernel judges it.
    pub(crate) fn of(port: u16, ephemeral: &std::ops::RangeInclusive<u16>) -> Self {
        if port < 1024 {
            Self::System
        } else if ephemeral.contains(&port) {
            Self::Ephemeral
        } else {
            Self::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Ephemeral => "ephemeral",
            Self::Other => "other",
        }
    }
}

/// One entry of the kernel's tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BindKey {
    pub pid: u32,
    pub class: PortClass,
}

/// An entry's total: binds since the kernel made it, and the process's
/// name then (raw, not yet made safe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BindCount {
    pub key: BindKey,
    pub binds: u64,
    pub comm: Vec<u8>,
}

/// UDP binds of one process and port class in one settle interval of the
/// aggregate mode (`--udp-aggregate`). Every explicit bind counts, those
/// of sockets reported one by one too: `reported` of them were still
/// open at the interval's end, and were reported as ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpSummary {
    pub pid: u32,
    /// The process's name when it first bound (made safe).
    pub comm: String,
    pub class: PortClass,
    pub binds: u64,
    pub reported: u64,
    /// The interval's length.
    pub interval_ms: u64,
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
