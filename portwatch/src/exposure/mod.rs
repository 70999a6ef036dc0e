//! Exposure: whether a packet from outside a listener's network namespace
//! can open a connection to it, judged from that namespace's own state
//! (its interfaces and their addresses, and its netfilter input path).
//! Pure: the facts are plain data (`model`), read from the kernel
//! elsewhere; `judge` decides.
//!
//! The verdict is one of four, never a confident wrong answer:
//! - `loopback`: bound to a loopback address; only the namespace itself
//!   reaches it;
//! - `filtered`: every non-loopback interface drops or rejects a new
//!   connection to it;
//! - `reachable`: at least one non-loopback interface accepts one (they are
//!   named);
//! - `unknown`: a rule on the way cannot be judged soundly (it is named).

mod judge;
mod model;
pub(crate) mod nft;
mod proxy;
mod published;

pub use judge::{judge, judge_published};
pub use model::{Chain, CtState, Dnat, Hook, Interface, Match, NetnsFacts, Packet, Rule, Verdict};
pub use proxy::{DOCKER_PROXY, Proxied, docker_proxy_target, is_trusted_proxy, proxied_to};
pub use published::{Published, forwards_to, published_as};

use serde::{Deserialize, Serialize};

/// Who can reach a listener, as judged for its own network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "exposure", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Exposure {
    /// Bound to a loopback address.
    Loopback,
    /// No non-loopback interface lets a new connection through.
    Filtered,
    /// These non-loopback interfaces let a new connection through.
    Reachable { reachable_via: Vec<String> },
    /// A rule on the way cannot be judged soundly: which, in its own words.
    Unknown { why: String },
}

impl Exposure {
    /// The verdict's name: `loopback`, `filtered`, `reachable`, `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Exposure::Loopback => "loopback",
            Exposure::Filtered => "filtered",
            Exposure::Reachable { .. } => "reachable",
            Exposure::Unknown { .. } => "unknown",
        }
    }
}
