//! Published ports: a DNAT rule in some namespace that sends new
//! connections to a listener (Docker without its userland proxy, a
//! port-forward), judged as its own way in.

use std::net::IpAddr;

use super::{Dnat, NetnsFacts, Published, judge::judge_published};
use crate::event::Listener;

impl Published {
    /// The entry `dnat` of namespace `netns` makes.
    pub fn of(netns: u64, dnat: &Dnat, facts: &NetnsFacts) -> Published {
        let wildcard = if dnat.to_address.is_ipv4() {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u16; 8])
        };
        Published {
            netns,
            address: match dnat.addresses.as_slice() {
                [one] if one.prefix_len() == one.max_prefix_len() => one.addr(),
                _ => wildcard,
            },
            port: dnat.port,
            proto: dnat.proto,
            exposure: judge_published(dnat, facts),
        }
    }
}

/// Whether `dnat`, a rule of namespace `netns`, sends its connections to
/// `l`, which is in a namespace with `own` facts. A loopback target is
/// in the rule's own namespace only.
pub fn forwards_to(dnat: &Dnat, netns: u64, l: &Listener, own: &NetnsFacts) -> bool {
    let to_port = dnat.to_port.unwrap_or(dnat.port);
    // A loopback target is in the rule's own namespace; another is in a
    // namespace with that address, root's (anyone may give a namespace of
    // theirs any address, and listen there to look published) or the
    // rule's own.
    let here = if dnat.to_address.is_loopback() {
        netns == l.netns
    } else {
        (own.trusted || netns == l.netns)
            && own
                .interfaces
                .iter()
                .any(|i| i.addresses.contains(&dnat.to_address))
    };
    let answers = l.address == dnat.to_address
        || (l.address.is_unspecified() && (l.address.is_ipv6() || dnat.to_address.is_ipv4()));
    dnat.proto == l.proto && to_port == l.port && here && answers
}

/// Every published port of listener `l` (in a namespace with `own`
/// facts), from the DNAT rules of its own namespace and of the trusted
/// ones (see [`NetnsFacts::trusted`]) among `all`.
///
/// Anyone may make a namespace of their own and write DNAT rules in it
/// that name any address: those publish only listeners of that same
/// namespace, or they could make any listener look published.
pub fn published_as<'a>(
    l: &Listener,
    own: &NetnsFacts,
    all: impl Iterator<Item = (u64, &'a NetnsFacts)>,
) -> Vec<Published> {
    let mut out = Vec::new();
    for (netns, facts) in all.filter(|(n, f)| *n == l.netns || f.trusted) {
        for d in facts.dnat.iter().filter(|d| forwards_to(d, netns, l, own)) {
            out.push(Published::of(netns, d, facts));
        }
    }
    out.sort_by_key(|p| (p.netns, p.port));
    out
}
