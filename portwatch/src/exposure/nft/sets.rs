//! Named and anonymous sets (`tcp dport { 22, 80 }`, `ip saddr
//! @allowed`): their elements, and a lookup in one as a match.

use ipnet::IpNet;

use super::loaded::{Loaded, addr_match, addr_net, ct_states, proto_match};
use crate::netns_facts::{Match, RawSet};

/// The inclusive ranges of keys a set holds, keys read as big-endian
/// numbers of at most 16 bytes.
fn ranges(set: &RawSet) -> Vec<(u128, u128)> {
    let num = |k: &[u8]| k.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b));
    if !set.interval {
        return set
            .elements
            .iter()
            .map(|e| (num(&e.key), num(&e.key)))
            .collect();
    }
    let width = set.elements.first().map_or(0, |e| e.key.len());
    let max = if width >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * width)) - 1
    };
    let mut sorted: Vec<(u128, bool)> = set
        .elements
        .iter()
        .map(|e| (num(&e.key), e.interval_end))
        .collect();
    // At one key, the end of a range comes before the start of the next
    // (adjacent ranges: `{ 22, 23 }`).
    sorted.sort_unstable_by_key(|(k, end)| (*k, !*end));
    let mut out = Vec::new();
    let mut open = None;
    for (key, end) in sorted {
        match (end, open) {
            (false, None) => open = Some(key),
            (true, Some(start)) => {
                out.push((start, key.saturating_sub(1)));
                open = None;
            }
            // Two starts in a row: the first range ends where the next
            // begins.
            (false, Some(start)) => {
                out.push((start, key.saturating_sub(1)));
                open = Some(key);
            }
            (true, None) => {}
        }
    }
    if let Some(start) = open {
        out.push((start, max));
    }
    out
}

/// A lookup of what `loaded` holds in `set` as a match (`None`: beyond
/// the model).
pub(super) fn membership(
    set: &RawSet,
    loaded: &Loaded,
    negated: bool,
    interfaces: &[(u32, String)],
) -> Option<Match> {
    // A catch-all element matches any key: beyond one match.
    if set.concat || set.elements.iter().any(|e| e.catch_all) {
        return None;
    }
    let ranges = ranges(set);
    match loaded {
        Loaded::DestPort => Some(Match::DestPort {
            ranges: ranges
                .iter()
                .map(|(a, b)| {
                    (
                        u16::try_from(*a).unwrap_or(u16::MAX),
                        u16::try_from(*b).unwrap_or(u16::MAX),
                    )
                })
                .collect(),
            negated,
        }),
        Loaded::L4Proto if !set.interval => {
            // Several protocols: it holds for TCP, UDP, both or neither.
            let has = |n: u128| ranges.iter().any(|(a, _)| *a == n);
            Some(match (has(6), has(17)) {
                (true, true) => Match::OtherProto { negated: !negated },
                (true, false) => proto_match(Some(6), negated),
                (false, true) => proto_match(Some(17), negated),
                (false, false) => Match::OtherProto { negated },
            })
        }
        Loaded::CtState if !set.interval => {
            // `ct state` keys: the state bits, in host order.
            let mut states = Vec::new();
            for e in &set.elements {
                let bits = u32::from_ne_bytes(e.key.get(..4)?.try_into().ok()?);
                states.extend(ct_states(bits));
            }
            Some(Match::CtState { states, negated })
        }
        Loaded::IifName if !set.interval => Some(Match::InInterface {
            names: set
                .elements
                .iter()
                .map(|e| {
                    let end = e.key.iter().position(|b| *b == 0).unwrap_or(e.key.len());
                    // Made safe as interface names are.
                    crate::safe_text::safe_str(&String::from_utf8_lossy(&e.key[..end]))
                })
                .collect(),
            negated,
        }),
        Loaded::Iif if !set.interval => Some(Match::InInterface {
            names: set
                .elements
                .iter()
                .filter_map(|e| {
                    let index = u32::from_ne_bytes(e.key.get(..4)?.try_into().ok()?);
                    interfaces
                        .iter()
                        .find(|(i, _)| *i == index)
                        .map(|(_, n)| n.clone())
                })
                .collect(),
            negated,
        }),
        Loaded::Addr { source, v6, len } if *len == if *v6 { 16 } else { 4 } => {
            let nets = if set.interval {
                ranges
                    .iter()
                    .flat_map(|(a, b)| subnets(*a, *b, *v6))
                    .collect()
            } else {
                set.elements
                    .iter()
                    .filter_map(|e| addr_net(&e.key, *v6, if *v6 { 128 } else { 32 }))
                    .collect()
            };
            Some(addr_match(*source, nets, negated))
        }
        _ => None,
    }
}

/// The networks that cover an address range exactly.
fn subnets(a: u128, b: u128, v6: bool) -> Vec<IpNet> {
    if v6 {
        let (a, b) = (std::net::Ipv6Addr::from(a), std::net::Ipv6Addr::from(b));
        ipnet::Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect()
    } else {
        let (Ok(a), Ok(b)) = (u32::try_from(a), u32::try_from(b)) else {
            return Vec::new();
        };
        let (a, b) = (std::net::Ipv4Addr::from(a), std::net::Ipv4Addr::from(b));
        ipnet::Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect()
    }
}
