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
pub(crate) mod nft;
mod proxy;
mod published;

pub use crate::{
    event::{Exposure, Published},
    netns_facts::{
        Chain, CtState, Dnat, Hook, Interface, Match, NetnsFacts, Packet, RawFacts, Rule, Verdict,
    },
};
pub use judge::{judge, judge_published};
pub use proxy::{DOCKER_PROXY, Proxied, docker_proxy_target, is_trusted_proxy, proxied_to};
pub use published::{forwards_to, published_as};

/// Raw facts, as `sys` reads them, made ready to judge: the ruleset
/// translated into chains and DNAT rules (a [`crate::netns_facts::Translate`]).
pub fn translate(raw: RawFacts) -> NetnsFacts {
    let mut ruleset = raw.ruleset;
    ruleset.interfaces = raw
        .interfaces
        .iter()
        .map(|(i, f)| (*i, f.name.clone()))
        .collect();
    let translated = nft::translate(&ruleset);
    NetnsFacts {
        interfaces: raw.interfaces.into_iter().map(|(_, f)| f).collect(),
        chains: translated.chains,
        dnat: translated.dnat,
        legacy_tables: raw.legacy_tables,
        trusted: raw.trusted,
    }
}
