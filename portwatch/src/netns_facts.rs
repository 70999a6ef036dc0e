//! What a network namespace's kernel says about reaching its sockets, as
//! plain data: its interfaces, its netfilter ruleset as netlink lists it
//! (`RawFacts`, what `sys` reads), and the same reduced to the chains a
//! new incoming connection passes (`NetnsFacts`, what the exposure
//! judgement reads; `exposure::translate` makes it).

use std::net::IpAddr;

use ipnet::IpNet;

use netlink_packet_netfilter::nftables::{ChainMessage, RuleMessage, VerdictAttribute};

use crate::event::Proto;

/// One interface of the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// Loopback (`lo`): what arrives there comes from the namespace itself.
    pub loopback: bool,
    /// Administratively and operationally up.
    pub up: bool,
    pub addresses: Vec<IpAddr>,
}

/// Where a base chain hooks in. A new connection to a listener passes
/// ingress, then prerouting, then input, each by priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    /// Right off the interface (`netdev` tables, `inet` ingress chains).
    Ingress,
    /// Before routing: raw, mangle and destination NAT chains.
    Prerouting,
    /// After routing, for this host.
    Input,
    /// After routing, for another host (a published port's target).
    Forward,
    /// Anything else (output, postrouting): not on the path judged here.
    Other,
}

/// Conntrack's view of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

/// One condition of a rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Match {
    /// `iifname` / `iif` in this set (`negated`: not in it); a name
    /// ending in `*` is a prefix (`iifname "eth*"`).
    InInterface { names: Vec<String>, negated: bool },
    /// The transport protocol.
    Proto { proto: Proto, negated: bool },
    /// A transport protocol that is neither TCP nor UDP (`meta l4proto
    /// icmp`): never holds for a listener's packet, or always (`negated`).
    OtherProto { negated: bool },
    /// The destination port in one of these inclusive ranges.
    DestPort {
        ranges: Vec<(u16, u16)>,
        negated: bool,
    },
    /// The destination address in one of these networks.
    DestAddr { nets: Vec<IpNet>, negated: bool },
    /// The source address in one of these networks: holds for some
    /// outside sources and not for others.
    SourceAddr { nets: Vec<IpNet>, negated: bool },
    /// `ct state` in this set.
    CtState { states: Vec<CtState>, negated: bool },
    /// The IP family (`meta nfproto` / an `ip` or `ip6` table's rule).
    Family { ipv6: bool },
    /// What the model does not cover, in the rule's own words.
    Unknown(String),
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
    /// Evaluate that chain, then come back (unless it decides).
    Jump(String),
    /// Evaluate that chain and do not come back.
    Goto(String),
    /// Back to the chain that jumped here (or the policy of a base chain).
    Return,
    /// Destination NAT: the packet goes to this address and port instead
    /// (`None`: unchanged), and so to another socket unless both match.
    Dnat {
        address: Option<IpAddr>,
        port: Option<u16>,
    },
    /// No verdict (a counter, a log): the next rule.
    Continue,
    /// A statement that may decide, or send the packet elsewhere, in a way
    /// the model does not follow (`redirect`, `queue`, an iptables target
    /// it does not read): named.
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub verdict: Verdict,
    /// The rule as `nft` would print it, for an `unknown` verdict.
    pub text: String,
}

/// A chain; a base chain has a hook, a priority and a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    /// `family table chain`, unique in the namespace.
    pub name: String,
    /// `None` for a regular chain (reached by jump or goto).
    pub hook: Option<Hook>,
    pub priority: i32,
    /// What a base chain does with a packet no rule decided.
    pub policy: Verdict,
    /// IPv4 only, IPv6 only, or both (`inet`).
    pub family: Option<bool>,
    pub rules: Vec<Rule>,
}

/// A destination NAT rule on the prerouting path: new connections to
/// `port` (on one of `addresses`, any when empty) are sent to
/// `to_address:to_port` (`None`: the same port).
#[derive(Clone, Debug, PartialEq)]
pub struct Dnat {
    pub proto: Proto,
    pub port: u16,
    pub addresses: Vec<IpNet>,
    pub to_address: IpAddr,
    pub to_port: Option<u16>,
    /// Which rule, for a person.
    pub rule: String,
}

/// Everything the judgement reads about one network namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetnsFacts {
    pub interfaces: Vec<Interface>,
    pub chains: Vec<Chain>,
    pub dnat: Vec<Dnat>,
    /// iptables-legacy tables loaded here (`ip filter`, ...): their rules
    /// are not read, so a listener they may filter is never judged
    /// reachable.
    pub legacy_tables: Vec<String>,
    /// Owned by portwatch's own user namespace (made by root, not by a
    /// user in a namespace of their own): only such a namespace's DNAT
    /// rules publish listeners of other namespaces.
    pub trusted: bool,
}

/// A new connection's first packet, as the input path sees it: from
/// outside, arriving on `interface`, to `address:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub interface: &'a str,
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
}

/// `NFPROTO_*`: the family of a table.
pub mod family {
    pub const INET: u8 = 1;
    pub const IPV4: u8 = 2;
    pub const ARP: u8 = 3;
    pub const NETDEV: u8 = 5;
    pub const BRIDGE: u8 = 7;
    pub const IPV6: u8 = 10;
}

/// One namespace's ruleset as netlink lists it: each message with the
/// family of its table.
#[derive(Clone, Debug, Default)]
pub struct RawRuleset {
    pub chains: Vec<(u8, ChainMessage)>,
    pub rules: Vec<(u8, RuleMessage)>,
    pub sets: Vec<RawSet>,
    /// Interface indexes and names, for `iif` / `meta iif` matches.
    pub interfaces: Vec<(u32, String)>,
}

/// One element: its key, and whether it ends an interval (an interval
/// set lists each range as its first key and the key after its last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetElement {
    pub key: Vec<u8>,
    pub interval_end: bool,
    /// The catch-all element (`*`), which has no key.
    pub catch_all: bool,
    /// In a verdict map (`vmap`), the element's verdict.
    pub verdict: Option<Vec<VerdictAttribute>>,
}

/// A set of a table, with its elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSet {
    pub family: u8,
    pub table: String,
    pub name: String,
    /// Holds ranges (`NFT_SET_INTERVAL`).
    pub interval: bool,
    /// Its keys join several fields (`NFT_SET_CONCAT`).
    pub concat: bool,
    pub elements: Vec<SetElement>,
}

/// A namespace's facts as `sys` reads them, before translation.
#[derive(Clone, Debug, Default)]
pub struct RawFacts {
    /// Interfaces, with their indexes.
    pub interfaces: Vec<(u32, Interface)>,
    pub ruleset: RawRuleset,
    /// See [`NetnsFacts::legacy_tables`].
    pub legacy_tables: Vec<String>,
    /// See [`NetnsFacts::trusted`].
    pub trusted: bool,
}

/// Turns raw facts into judged-ready ones (`exposure::translate`): handed
/// to `sys` by the layer above, which owns the logic.
pub type Translate = fn(RawFacts) -> NetnsFacts;
