//! The judgement: a new connection's first packet from outside, arriving
//! on each non-loopback interface, run through the namespace's input
//! chains. Sound first: what the model cannot decide is `unknown`, with
//! the rule that made it so.

use std::net::IpAddr;

use super::{Chain, CtState, Dnat, Exposure, Hook, Match, NetnsFacts, Packet, Rule, Verdict};
use crate::event::Proto;

/// How deep jumps may nest before the judgement gives up (the kernel
/// allows 16 levels too).
const MAX_DEPTH: usize = 16;

/// How many rules one judgement may evaluate, over every interface,
/// address and jump: whoever owns a namespace decides how many of each
/// there are, and a judgement runs between events. Beyond it: `unknown`.
const BUDGET: usize = 200_000;

thread_local! {
    /// Rules left to the judgement running on this thread.
    static LEFT: std::cell::Cell<usize> = const { std::cell::Cell::new(BUDGET) };
}

/// Takes one rule from the budget; false when it is spent.
fn spend() -> bool {
    LEFT.with(|l| {
        let left = l.get();
        l.set(left.saturating_sub(1));
        left > 0
    })
}

fn too_complex() -> String {
    format!("judging it would take more than {BUDGET} rule evaluations")
}

/// The exposure of a listener of `proto` on `address:port`, in the
/// namespace `facts` describes.
pub fn judge(proto: Proto, address: IpAddr, port: u16, facts: &NetnsFacts) -> Exposure {
    LEFT.with(|l| l.set(BUDGET));
    let address = unmapped(address);
    if address.is_loopback() {
        return Exposure::Loopback;
    }
    // Linux takes a packet for any of its addresses on any interface (the
    // weak host model): every local address a wildcard listener answers
    // on is a way in, from every interface.
    let targets: Vec<IpAddr> = if address.is_unspecified() {
        local_addresses(facts)
            .filter(|a| address.is_ipv6() || a.is_ipv4())
            .collect()
    } else {
        vec![address]
    };
    through_each_interface(facts, &targets, |interface, target| {
        let packet = Packet {
            interface,
            proto,
            address: target,
            port,
        };
        input_path(&packet, facts)
    })
}

/// Each up interface but loopback, tried with each of `targets` by `walk`
/// until one lets the packet through: the interfaces that do, or why that
/// cannot be said, as a verdict.
fn through_each_interface(
    facts: &NetnsFacts,
    targets: &[IpAddr],
    mut walk: impl FnMut(&str, IpAddr) -> Outcome,
) -> Exposure {
    let mut via = Vec::new();
    let mut unknown = None;
    for iface in facts.interfaces.iter().filter(|i| i.up && !i.loopback) {
        let mut outcome = Outcome::Drop;
        for &target in targets {
            // Each interface and address is a walk, rules or none.
            if !spend() {
                return Exposure::Unknown { why: too_complex() };
            }
            match walk(&iface.name, target) {
                Outcome::Accept => {
                    outcome = Outcome::Accept;
                    break;
                }
                Outcome::Unknown(why) => outcome = Outcome::Unknown(why),
                Outcome::Drop => {}
            }
        }
        match outcome {
            Outcome::Accept => via.push(iface.name.clone()),
            Outcome::Unknown(why) => {
                unknown.get_or_insert(why);
            }
            Outcome::Drop => {}
        }
    }
    verdict(via, unknown, facts)
}

/// The interfaces that let a connection through, or why that cannot be
/// said, as a verdict.
fn verdict(via: Vec<String>, unknown: Option<String>, facts: &NetnsFacts) -> Exposure {
    if !via.is_empty() && !facts.legacy_tables.is_empty() {
        Exposure::Unknown {
            why: format!(
                "iptables-legacy tables are loaded ({}), whose rules portwatch does not read",
                facts.legacy_tables.join(", ")
            ),
        }
    } else if !via.is_empty() {
        Exposure::Reachable { reachable_via: via }
    } else if let Some(why) = unknown {
        Exposure::Unknown { why }
    } else {
        Exposure::Filtered
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`: what the kernel matches it as.
fn unmapped(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

fn local_addresses(facts: &NetnsFacts) -> impl Iterator<Item = IpAddr> + '_ {
    facts
        .interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().copied())
        .filter(|a| !a.is_loopback())
}

/// What the input path does with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Accept,
    Drop,
    Unknown(String),
}

/// One packet's walk through the chains.
struct Walk<'a> {
    facts: &'a NetnsFacts,
    /// Judging a published port: the DNAT target it is published to.
    published_to: Option<(IpAddr, u16)>,
    /// That DNAT happened.
    translated: bool,
}

/// Every base chain on `hooks`, by hook and priority: an accept in one
/// passes the packet to the next; a drop anywhere is final. A chain that
/// cannot be judged leaves the answer unknown, unless a later one surely
/// drops.
fn path(packet: &Packet<'_>, w: &mut Walk<'_>, hooks: &[Hook]) -> Outcome {
    let v6 = packet.address.is_ipv6();
    let mut bases: Vec<&Chain> = w
        .facts
        .chains
        .iter()
        .filter(|c| c.hook.is_some_and(|h| hooks.contains(&h)) && c.family.is_none_or(|f| f == v6))
        .collect();
    bases.sort_by_key(|c| (c.hook, c.priority));
    let mut unknown = None;
    for chain in bases {
        let decided = match run(chain, packet, w, 0) {
            Decision::Fallthrough => match &chain.policy {
                Verdict::Drop | Verdict::Reject => Decision::Drop,
                _ => Decision::Accept,
            },
            other => other,
        };
        match decided {
            Decision::Drop => return Outcome::Drop,
            Decision::Unknown(why) => {
                unknown.get_or_insert(why);
            }
            Decision::Accept | Decision::Fallthrough => {}
        }
    }
    unknown.map_or(Outcome::Accept, Outcome::Unknown)
}

/// The hooks a new connection to a local listener passes.
const INPUT: [Hook; 3] = [Hook::Ingress, Hook::Prerouting, Hook::Input];

fn input_path(packet: &Packet<'_>, facts: &NetnsFacts) -> Outcome {
    let mut w = Walk {
        facts,
        published_to: None,
        translated: false,
    };
    path(packet, &mut w, &INPUT)
}

/// What a chain decided.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    Accept,
    Drop,
    /// No rule decided: back to the caller (the policy, for a base chain).
    Fallthrough,
    Unknown(String),
}

/// Whether a rule's conditions hold for the packet.
enum Holds {
    Yes,
    No,
    /// For some outside sources and not others.
    ForSomeSources,
    Unknown(String),
}

fn run(chain: &Chain, packet: &Packet<'_>, w: &mut Walk<'_>, depth: usize) -> Decision {
    if depth > MAX_DEPTH {
        return Decision::Unknown(format!(
            "chain {} is reached through more than {MAX_DEPTH} jumps",
            chain.name
        ));
    }
    for rule in &chain.rules {
        if !spend() {
            return Decision::Unknown(too_complex());
        }
        let holds = holds(rule, packet);
        let decided = match holds {
            Holds::No => continue,
            Holds::Unknown(why) => {
                // A rule that decides nothing changes nothing, whatever
                // its conditions.
                if rule.verdict == Verdict::Continue {
                    continue;
                }
                return Decision::Unknown(why);
            }
            Holds::Yes | Holds::ForSomeSources => apply(rule, packet, w, depth),
        };
        let some_sources = matches!(holds, Holds::ForSomeSources);
        let leaves = matches!(rule.verdict, Verdict::Return | Verdict::Goto(_));
        match (decided, some_sources, leaves) {
            // From some sources accepted: reachable, from them.
            (Decision::Accept, _, _) => return Decision::Accept,
            // Dropped for some sources: the others go on.
            (Decision::Drop, true, _) => continue,
            (Decision::Drop, false, _) => return Decision::Drop,
            (Decision::Unknown(why), _, _) => return Decision::Unknown(why),
            // Back to the caller for every source, or for some only: the
            // two paths part, which this model does not follow.
            (Decision::Fallthrough, false, true) => return Decision::Fallthrough,
            (Decision::Fallthrough, true, true) => {
                return Decision::Unknown(format!(
                    "`{}` leaves the chain for some sources only",
                    rule.text
                ));
            }
            (Decision::Fallthrough, _, false) => continue,
        }
    }
    Decision::Fallthrough
}

/// A matched rule's verdict, as a decision of its chain.
fn apply(rule: &Rule, packet: &Packet<'_>, w: &mut Walk<'_>, depth: usize) -> Decision {
    match &rule.verdict {
        Verdict::Accept => Decision::Accept,
        Verdict::Drop | Verdict::Reject => Decision::Drop,
        Verdict::Continue | Verdict::Return => Decision::Fallthrough,
        Verdict::Unknown(what) => Decision::Unknown(format!("`{}` ({what})", rule.text)),
        // NAT ends the chain; the packet goes on to this listener only
        // if its destination stays the same, or to the published target
        // being judged.
        Verdict::Dnat { address, port } => {
            let to = (
                address.map_or(packet.address, unmapped),
                port.unwrap_or(packet.port),
            );
            let local = w
                .facts
                .interfaces
                .iter()
                .any(|i| i.addresses.iter().any(|a| unmapped(*a) == to.0));
            if w.published_to == Some(to) {
                w.translated = true;
                Decision::Accept
            } else if to == (packet.address, packet.port) {
                Decision::Accept
            } else if local && to.1 == packet.port {
                // To another address of this namespace, on the same port:
                // a wildcard listener still gets it, one on the address
                // it came to does not.
                Decision::Unknown(format!("`{}` sends it to another local address", rule.text))
            } else {
                Decision::Drop
            }
        }
        Verdict::Jump(name) | Verdict::Goto(name) => {
            match w.facts.chains.iter().find(|c| c.name == *name) {
                Some(c) => run(c, packet, w, depth + 1),
                None => Decision::Unknown(format!("`{}` names no chain portwatch read", rule.text)),
            }
        }
    }
}

/// The exposure of a port `dnat` publishes in the namespace `facts`
/// describes: a new connection from outside to it passes the chains
/// before routing, is translated by this rule, and passes the forward
/// chains to its target.
pub fn judge_published(dnat: &Dnat, facts: &NetnsFacts) -> Exposure {
    LEFT.with(|l| l.set(BUDGET));
    let to = (unmapped(dnat.to_address), dnat.to_port.unwrap_or(dnat.port));
    let targets: Vec<IpAddr> = local_addresses(facts)
        .filter(|a| a.is_ipv4() == to.0.is_ipv4())
        .filter(|a| dnat.addresses.is_empty() || dnat.addresses.iter().any(|n| n.contains(a)))
        .collect();
    through_each_interface(facts, &targets, |interface, target| {
        let packet = Packet {
            interface,
            proto: dnat.proto,
            address: target,
            port: dnat.port,
        };
        let mut w = Walk {
            facts,
            published_to: Some(to),
            translated: false,
        };
        match path(&packet, &mut w, &[Hook::Ingress, Hook::Prerouting]) {
            Outcome::Accept if w.translated => {
                let forwarded = Packet {
                    address: to.0,
                    port: to.1,
                    ..packet
                };
                path(&forwarded, &mut w, &[Hook::Forward])
            }
            // Not translated here (another rule came first, or its
            // conditions do not hold on this interface).
            Outcome::Accept => Outcome::Drop,
            other => other,
        }
    })
}

fn holds(rule: &Rule, packet: &Packet<'_>) -> Holds {
    let mut result = Holds::Yes;
    for m in &rule.matches {
        match one(m, packet) {
            Holds::No => return Holds::No,
            // The first thing not understood is the one to name (what
            // follows may only be reading its result).
            Holds::Unknown(why) if !matches!(result, Holds::Unknown(_)) => {
                result = Holds::Unknown(why);
            }
            Holds::ForSomeSources if matches!(result, Holds::Yes) => {
                result = Holds::ForSomeSources;
            }
            _ => {}
        }
    }
    match result {
        Holds::Unknown(why) => Holds::Unknown(format!("`{}` ({why})", rule.text)),
        other => other,
    }
}

fn one(m: &Match, packet: &Packet<'_>) -> Holds {
    let known = |b: bool| if b { Holds::Yes } else { Holds::No };
    match m {
        Match::InInterface { names, negated } => {
            let named = |n: &String| match n.strip_suffix('*') {
                Some(prefix) => packet.interface.starts_with(prefix),
                None => n == packet.interface,
            };
            known(names.iter().any(named) != *negated)
        }
        Match::Proto { proto, negated } => known((*proto == packet.proto) != *negated),
        Match::OtherProto { negated } => known(*negated),
        Match::DestPort { ranges, negated } => {
            known(ranges.iter().any(|(a, b)| (*a..=*b).contains(&packet.port)) != *negated)
        }
        Match::DestAddr { nets, negated } => {
            known(nets.iter().any(|n| n.contains(&packet.address)) != *negated)
        }
        Match::SourceAddr { nets, negated } => {
            let everyone = nets.iter().any(|n| n.prefix_len() == 0);
            match (nets.is_empty(), everyone, negated) {
                (true, _, false) => Holds::No,
                (true, _, true) => Holds::Yes,
                (_, true, false) => Holds::Yes,
                (_, true, true) => Holds::No,
                _ => Holds::ForSomeSources,
            }
        }
        // The first packet of a connection is NEW.
        Match::CtState { states, negated } => known(states.contains(&CtState::New) != *negated),
        Match::Family { ipv6 } => known(*ipv6 == packet.address.is_ipv6()),
        Match::Unknown(what) => Holds::Unknown(what.clone()),
    }
}

#[cfg(test)]
mod tests;
