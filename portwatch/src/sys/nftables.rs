//! The nftables ruleset of the calling thread's network namespace, as
//! the kernel lists it over netlink (what `nft list ruleset` reads), and
//! the iptables-legacy tables beside it.

use std::io;

use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    nftables::{
        ChainMessage, DataAttribute, ListAttribute, NfTablesMessage, RuleMessage, SetAttribute,
        SetElementAttribute, SetElementFlags, SetElementList, SetElementMessage, SetFlags,
        SetMessage,
    },
};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

use super::netlink_dump::{dump, socket};
use crate::netns_facts::{RawRuleset, RawSet, SetElement};

fn request(family: u8, msg: NfTablesMessage) -> NetfilterMessage {
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0),
        msg,
    )
}

fn nft(m: NetfilterMessage) -> Option<(u8, NfTablesMessage)> {
    let family = u8::from(m.header.family);
    match m.inner {
        NetfilterMessageInner::NfTables(msg) => Some((family, msg)),
        _ => None,
    }
}

/// The most chains, rules, sets and set elements read from one
/// namespace: anyone may fill a namespace of their own with rules, and
/// portwatch reads them again on every change. Beyond these its listeners
/// are `unknown`, and why says so.
const MAX_RULES: usize = 50_000;
const MAX_ELEMENTS: usize = 200_000;

/// Chains, rules and sets of every family (interfaces are filled in by
/// the caller).
pub(crate) fn ruleset_here() -> io::Result<RawRuleset> {
    let socket = socket(NETLINK_NETFILTER)?;
    let mut raw = RawRuleset::default();
    let all = |msg| dump(&socket, request(0, msg), MAX_RULES);
    for (f, m) in all(NfTablesMessage::GetChain(ChainMessage {
        attributes: vec![],
    }))?
    .into_iter()
    .filter_map(nft)
    {
        if let NfTablesMessage::NewChain(c) = m {
            raw.chains.push((f, c));
        }
    }
    for (f, m) in all(NfTablesMessage::GetRule(RuleMessage { attributes: vec![] }))?
        .into_iter()
        .filter_map(nft)
    {
        if let NfTablesMessage::NewRule(r) = m {
            raw.rules.push((f, r));
        }
    }
    for (f, m) in all(NfTablesMessage::GetSet(SetMessage { attributes: vec![] }))?
        .into_iter()
        .filter_map(nft)
    {
        if let NfTablesMessage::NewSet(s) = m {
            raw.sets.push(set_of(&socket, f, &s)?);
            if raw.sets.iter().map(|s| s.elements.len()).sum::<usize>() > MAX_ELEMENTS {
                return Err(io::Error::other(format!(
                    "it holds more than {MAX_ELEMENTS} nftables set elements, which portwatch does not read"
                )));
            }
        }
    }
    Ok(raw)
}

fn set_of(socket: &Socket, family: u8, msg: &SetMessage) -> io::Result<RawSet> {
    let mut set = RawSet {
        family,
        ..RawSet::default()
    };
    for a in &msg.attributes {
        match a {
            SetAttribute::Table(t) => set.table.clone_from(t),
            SetAttribute::Name(n) => set.name.clone_from(n),
            SetAttribute::Flags(f) => {
                set.interval = f.contains(SetFlags::Interval);
                set.concat = f.contains(SetFlags::Concat);
            }
            _ => {}
        }
    }
    let ask = NfTablesMessage::GetSetElement(SetElementMessage {
        attributes: vec![
            SetElementList::Table(set.table.clone()),
            SetElementList::Set(set.name.clone()),
        ],
    });
    for (_, m) in dump(socket, request(family, ask), MAX_ELEMENTS)?
        .into_iter()
        .filter_map(nft)
    {
        let NfTablesMessage::NewSetElement(e) = m else {
            continue;
        };
        for list in e.attributes {
            let SetElementList::Elements(elements) = list else {
                continue;
            };
            for element in elements {
                if let ListAttribute::Element(attrs) = element {
                    set.elements.push(element_of(&attrs));
                }
                // Elements, not messages: one message holds many.
                if set.elements.len() > MAX_ELEMENTS {
                    return Err(io::Error::other(format!(
                        "it holds more than {MAX_ELEMENTS} nftables set elements, which portwatch does not read"
                    )));
                }
            }
        }
    }
    Ok(set)
}

fn element_of(attrs: &[SetElementAttribute]) -> SetElement {
    let mut out = SetElement {
        key: Vec::new(),
        interval_end: false,
        catch_all: false,
        verdict: None,
    };
    for a in attrs {
        match a {
            SetElementAttribute::Key(DataAttribute::Value(k)) => out.key.clone_from(k),
            SetElementAttribute::Data(DataAttribute::Verdict(v)) => out.verdict = Some(v.clone()),
            SetElementAttribute::Flags(f) => {
                out.interval_end = f.contains(SetElementFlags::IntervalEnd);
                out.catch_all = f.contains(SetElementFlags::CatchAll);
            }
            _ => {}
        }
    }
    out
}

/// The iptables-legacy tables loaded in this namespace (`filter`,
/// `nat`, ...), IPv4 and IPv6: rules portwatch does not read.
pub(crate) fn legacy_tables_here() -> Vec<String> {
    let mut out = Vec::new();
    // thread-self: this thread's namespace, not the process's.
    for (file, prefix) in [("ip_tables_names", "ip"), ("ip6_tables_names", "ip6")] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
            out.extend(text.lines().map(|t| format!("{prefix} {t}")));
        }
    }
    out
}
