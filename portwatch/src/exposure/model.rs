//! What a network namespace's kernel says about reaching its sockets: its
//! interfaces, and the netfilter chains a new incoming connection passes
//! (nftables base chains on the input hook, iptables-nft's among them),
//! reduced to what the judgement needs. Plain data.

use std::net::IpAddr;

use ipnet::IpNet;

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

/// Where a base chain hooks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// After routing, for this host: what a listener's traffic passes.
    Input,
    /// Anything else (prerouting, forward, output, ...): not on the path
    /// judged here.
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
    /// `iifname` / `iif` in this set (`negated`: not in it).
    InInterface { names: Vec<String>, negated: bool },
    /// The transport protocol.
    Proto { proto: Proto, negated: bool },
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
    /// No verdict (a counter, a log): the next rule.
    Continue,
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

/// Everything the judgement reads about one network namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetnsFacts {
    pub interfaces: Vec<Interface>,
    pub chains: Vec<Chain>,
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
