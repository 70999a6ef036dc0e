//! nftables as the kernel lists it over netlink (tables' chains, rules as
//! register bytecode, sets and their elements), translated into the
//! model's chains. Pure: the messages are read elsewhere (`sys::nft`).
//!
//! iptables-nft's rules are nftables rules too: its native expressions
//! translate like any others, its `xt` compat matches are named as beyond
//! the model, its REJECT target is a reject.

mod expr;
mod loaded;
mod sets;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, Hook as NlHook, RuleAttribute, RuleMessage,
};

use crate::netns_facts::{Chain, Dnat, Hook, Match, RawRuleset, Rule, Verdict, family};
use crate::safe_text::safe_str;

/// The ruleset's chains, ready to judge, and its DNAT rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Translated {
    pub chains: Vec<Chain>,
    pub dnat: Vec<Dnat>,
}

fn family_name(f: u8) -> &'static str {
    match f {
        family::INET => "inet",
        family::IPV4 => "ip",
        family::IPV6 => "ip6",
        family::ARP => "arp",
        family::NETDEV => "netdev",
        family::BRIDGE => "bridge",
        _ => "unknown",
    }
}

/// The most rules one namespace's translation holds (each element of a
/// verdict map is one).
const MAX_TRANSLATED_RULES: usize = 100_000;

/// `family table chain`: how the model names a chain.
pub(super) fn chain_name(f: u8, table: &str, chain: &str) -> String {
    // Whoever owns a namespace names its tables and chains: made safe.
    format!("{} {} {}", family_name(f), safe_str(table), safe_str(chain))
}

/// Translates a ruleset. Chains of families that carry no IP traffic to
/// a listener (arp, bridge) are left out.
pub(crate) fn translate(raw: &RawRuleset) -> Translated {
    let mut out = Translated::default();
    // Each chain's rules, found once (a ruleset may hold tens of
    // thousands of both).
    let mut by_chain: HashMap<(u8, String, String), Vec<&RuleMessage>> = HashMap::new();
    for (rf, rule) in &raw.rules {
        let (rt, rc, _) = rule_place(rule);
        by_chain.entry((*rf, rt, rc)).or_default().push(rule);
    }
    // What one namespace's translation may hold in all, rules made of
    // verdict maps included.
    let mut left = MAX_TRANSLATED_RULES;
    for (f, msg) in &raw.chains {
        if matches!(*f, family::ARP | family::BRIDGE) {
            continue;
        }
        let Some(mut chain) = chain_of(*f, msg) else {
            continue;
        };
        let (table, name) = table_and_name(msg);
        for rule in by_chain
            .remove(&(*f, table.clone(), name))
            .unwrap_or_default()
        {
            let (_, _, handle) = rule_place(rule);
            let text = format!("rule {handle} of chain {}", chain.name);
            let translated = expr::rules(*f, &table, rule, raw, text);
            if translated.len() > left {
                // Too much to judge soundly: the chain says so.
                chain.rules = vec![rule_of(
                    vec![Match::Unknown("more rules than portwatch judges".into())],
                    Verdict::Unknown(format!(
                        "more than {MAX_TRANSLATED_RULES} rules, verdict map elements counted"
                    )),
                    format!("chain {}", chain.name),
                )];
                break;
            }
            left -= translated.len();
            for translated in translated {
                if chain.hook == Some(Hook::Prerouting) {
                    out.dnat.extend(expr::dnat_of(&translated));
                }
                chain.rules.push(translated);
            }
        }
        out.chains.push(chain);
    }
    out
}

fn table_and_name(msg: &ChainMessage) -> (String, String) {
    let mut table = String::new();
    let mut name = String::new();
    for a in &msg.attributes {
        match a {
            ChainAttribute::Table(t) => table.clone_from(t),
            ChainAttribute::Name(n) => name.clone_from(n),
            _ => {}
        }
    }
    (table, name)
}

fn rule_place(rule: &RuleMessage) -> (String, String, u64) {
    let mut table = String::new();
    let mut chain = String::new();
    let mut handle = 0;
    for a in &rule.attributes {
        match a {
            RuleAttribute::Table(t) => table.clone_from(t),
            RuleAttribute::Chain(c) => chain.clone_from(c),
            RuleAttribute::Handle(h) => handle = *h,
            _ => {}
        }
    }
    (table, chain, handle)
}

/// A chain without its rules: where it hooks, its priority and policy.
fn chain_of(f: u8, msg: &ChainMessage) -> Option<Chain> {
    let (table, name) = table_and_name(msg);
    if table.is_empty() || name.is_empty() {
        return None;
    }
    let mut hook = None;
    let mut priority = 0;
    // A base chain's policy is accept unless it says drop (NF_DROP = 0).
    let mut policy = Verdict::Accept;
    for a in &msg.attributes {
        match a {
            ChainAttribute::Hook(parts) => {
                for p in parts {
                    match p {
                        NlHook::Number(n) => hook = Some(hook_of(f, u32::from(*n))),
                        // The kernel sends the signed priority as its bits.
                        NlHook::Priority(p) => priority = i32::from_ne_bytes(p.to_ne_bytes()),
                        _ => {}
                    }
                }
            }
            ChainAttribute::Policy(0) => policy = Verdict::Drop,
            _ => {}
        }
    }
    Some(Chain {
        name: chain_name(f, &table, &name),
        hook,
        priority,
        policy,
        family: match f {
            family::IPV4 => Some(false),
            family::IPV6 => Some(true),
            _ => None,
        },
        rules: Vec::new(),
    })
}

/// `NF_INET_*` hook numbers (`NF_NETDEV_INGRESS` is 0 in netdev tables).
fn hook_of(f: u8, n: u32) -> Hook {
    match (f, n) {
        (family::NETDEV, 0) => Hook::Ingress,
        (family::NETDEV, _) => Hook::Other,
        (_, 0) => Hook::Prerouting,
        (_, 1) => Hook::Input,
        (_, 2) => Hook::Forward,
        (_, 5) => Hook::Ingress,
        _ => Hook::Other,
    }
}

/// What a rule that only has `matches` and a verdict looks like.
pub(crate) fn rule_of(matches: Vec<Match>, verdict: Verdict, text: String) -> Rule {
    Rule {
        matches,
        verdict,
        text,
    }
}
