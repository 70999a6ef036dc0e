//! One rule's bytecode, run symbolically: loads into registers (meta,
//! payload, ct), masks (bitwise), comparisons and set lookups become the
//! model's matches; immediate verdicts, reject and nat its verdict.
//! Anything else is named as beyond the model (a statement that decides
//! nothing, such as counter or log, is skipped).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netlink_packet_core::{DefaultNla, Nla as _};
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute,
    Lookup, Meta, MetaKey, Operator, Payload, Register, RuleAttribute, RuleMessage,
    Verdict as NlVerdict, VerdictAttribute,
};

use super::{
    RawRuleset, family,
    loaded::{Loaded, addr_match, addr_net, ct_states, proto_match},
    sets,
};
use crate::{
    netns_facts::{CtState, Dnat, Match, RawSet, Rule, SetElement, Verdict},
    safe_text::safe_str,
};

/// The state of one rule's run.
struct Run<'a> {
    family: u8,
    /// The IP version the rule has narrowed to (`meta nfproto`).
    v6: Option<bool>,
    regs: HashMap<u32, Loaded>,
    matches: Vec<Match>,
    verdict: Verdict,
    /// A statement the model does not read: the rule's verdict, unless it
    /// has one of its own.
    opaque: Option<String>,
    /// A verdict map looked up with what a register holds: the rule
    /// stands for one rule per element.
    vmap: Option<(Loaded, &'a RawSet)>,
    raw: &'a RawRuleset,
    table: &'a str,
}

/// A register's first 32-bit slot: `NFT_REG_1..4` are 16 bytes each,
/// `NFT_REG32_00..15` 4 bytes each, sharing the same space.
fn slot(r: Register) -> u32 {
    match u32::from(r) {
        n @ 1..=4 => (n - 1) * 4,
        n @ 8..=23 => n - 8,
        n => 1000 + n,
    }
}

/// The name and data of each expression of a rule, in order.
fn expressions(rule: &RuleMessage) -> Vec<(String, Option<&Expressions>)> {
    let mut out = Vec::new();
    for a in &rule.attributes {
        let RuleAttribute::Expressions(list) = a else {
            continue;
        };
        for item in list {
            let ListAttribute::Element(attrs) = item else {
                continue;
            };
            let mut name = String::new();
            let mut data = None;
            for attr in attrs {
                match attr {
                    ExpressionAttribute::Name(n) => name.clone_from(n),
                    ExpressionAttribute::Data(d) => data = Some(d),
                    _ => {}
                }
            }
            out.push((name, data));
        }
    }
    out
}

/// Translates one rule of a chain of a table of family `f`.
pub(super) fn rules(
    f: u8,
    table: &str,
    msg: &RuleMessage,
    raw: &RawRuleset,
    text: String,
) -> Vec<Rule> {
    let mut run = Run {
        family: f,
        v6: match f {
            family::IPV4 => Some(false),
            family::IPV6 => Some(true),
            _ => None,
        },
        regs: HashMap::new(),
        matches: Vec::new(),
        verdict: Verdict::Continue,
        opaque: None,
        vmap: None,
        raw,
        table,
    };
    for (name, data) in expressions(msg) {
        run.step(&name, data);
    }
    if let (Verdict::Continue, Some(what)) = (&run.verdict, run.opaque.take()) {
        run.verdict = Verdict::Unknown(what);
    }
    match run.vmap.take() {
        Some((loaded, set)) => run.expand(&loaded, set, &text),
        None => vec![super::rule_of(run.matches, run.verdict, text)],
    }
}

/// The DNAT a translated prerouting rule does, if it is one the model
/// reads whole: one transport protocol, one destination port.
pub(super) fn dnat_of(rule: &Rule) -> Option<Dnat> {
    let Verdict::Dnat {
        address: Some(to_address),
        port: to_port,
    } = rule.verdict
    else {
        return None;
    };
    let mut proto = None;
    let mut port = None;
    let mut addresses = Vec::new();
    for m in &rule.matches {
        match m {
            Match::Proto {
                proto: p,
                negated: false,
            } => proto = Some(*p),
            Match::DestPort {
                ranges,
                negated: false,
            } if ranges.len() == 1 && ranges[0].0 == ranges[0].1 => port = Some(ranges[0].0),
            Match::DestAddr {
                nets,
                negated: false,
            } => addresses.extend(nets.iter().copied()),
            _ => {}
        }
    }
    Some(Dnat {
        proto: proto?,
        port: port?,
        addresses,
        to_address,
        to_port,
        rule: rule.text.clone(),
    })
}

/// The value of the attribute of `kind` (flags masked off), if present.
fn attr(attrs: &[DefaultNla], kind: u16) -> Option<Vec<u8>> {
    attrs
        .iter()
        .find(|a| a.kind() & 0x3fff == kind)
        .map(nla_value)
}

/// A NUL-terminated name attribute (an xt match's or target's).
fn attr_name(attrs: &[DefaultNla], kind: u16) -> String {
    attr(attrs, kind)
        .map(|v| {
            String::from_utf8_lossy(&v)
                .trim_end_matches('\0')
                .to_string()
        })
        .unwrap_or_default()
}

fn nla_value(nla: &DefaultNla) -> Vec<u8> {
    let mut buf = vec![0; nla.value_len()];
    nla.emit_value(&mut buf);
    buf
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

impl<'a> Run<'a> {
    /// A rule that ends in a verdict map, as one rule per element: the
    /// element's key as one more match, its verdict as the verdict. No
    /// element matching is no verdict: the next rule, as in the kernel.
    fn expand(&self, loaded: &Loaded, set: &RawSet, text: &str) -> Vec<Rule> {
        let mut out = Vec::new();
        for (i, e) in set.elements.iter().enumerate() {
            // The one element alone (not the set, which may be large).
            let one = RawSet {
                family: set.family,
                table: String::new(),
                name: String::new(),
                interval: set.interval,
                concat: set.concat,
                elements: vec![SetElement {
                    key: e.key.clone(),
                    interval_end: e.interval_end,
                    catch_all: e.catch_all,
                    verdict: None,
                }],
            };
            let key = sets::membership(&one, loaded, false, &self.raw.interfaces);
            let verdict = e.verdict.as_deref().map(|v| self.qualified(verdict_of(v)));
            let (Some(key), Some(verdict)) = (key, verdict) else {
                return vec![super::rule_of(
                    vec![Match::Unknown(format!("the map {}", safe_str(&set.name)))],
                    Verdict::Unknown(format!("the map {}", safe_str(&set.name))),
                    text.to_string(),
                )];
            };
            let mut matches = self.matches.clone();
            matches.push(key);
            out.push(super::rule_of(
                matches,
                verdict,
                format!("{text}, map element {}", i + 1),
            ));
        }
        out
    }

    /// A jump or goto names a chain of the same table.
    fn qualified(&self, v: Verdict) -> Verdict {
        match v {
            Verdict::Jump(c) => Verdict::Jump(super::chain_name(self.family, self.table, &c)),
            Verdict::Goto(c) => Verdict::Goto(super::chain_name(self.family, self.table, &c)),
            other => other,
        }
    }

    fn unknown(&mut self, what: impl Into<String>) {
        self.matches.push(Match::Unknown(what.into()));
    }

    /// An expression not read: a condition beyond the model, or a
    /// statement that may decide.
    fn opaque(&mut self, what: &str) {
        self.unknown(what);
        self.opaque.get_or_insert_with(|| what.to_string());
    }

    fn step(&mut self, name: &str, data: Option<&Expressions>) {
        match (name, data) {
            (_, Some(Expressions::Meta(attrs))) => self.meta(attrs),
            (_, Some(Expressions::Payload(attrs))) => self.payload(attrs),
            (_, Some(Expressions::Bitwise(attrs))) => self.bitwise(attrs),
            (_, Some(Expressions::Cmp(attrs))) => self.cmp(attrs),
            (_, Some(Expressions::Lookup(attrs))) => self.lookup(attrs),
            (_, Some(Expressions::Immediate(attrs))) => self.immediate(attrs),
            ("ct", Some(Expressions::Other { attributes, .. })) => self.ct(attributes),
            ("nat", Some(Expressions::Other { attributes, .. })) => self.nat(attributes),
            ("reject", _) => self.verdict = Verdict::Reject,
            ("target", Some(Expressions::Other { attributes, .. })) => {
                // NFTA_TARGET_NAME = 1, NFTA_TARGET_REV = 2, NFTA_TARGET_INFO = 3
                let name = attr_name(attributes, 1);
                let get = |k: u16| attr(attributes, k);
                let rev = get(2).and_then(|v| be_u32(&v));
                match name.as_str() {
                    "REJECT" => self.verdict = Verdict::Reject,
                    "DNAT" => match xt_dnat(rev, &get(3).unwrap_or_default(), self.v6) {
                        Some(v) => self.verdict = v,
                        None => self.opaque("an iptables DNAT to a range"),
                    },
                    // Statements that decide nothing.
                    "LOG" | "NFLOG" | "MARK" | "CONNMARK" | "CT" => {}
                    other => self.opaque(&format!("the iptables target {}", safe_str(other))),
                }
            }
            ("match", Some(Expressions::Other { attributes, .. })) => {
                // NFTA_MATCH_NAME = 1, NFTA_MATCH_REV = 2, NFTA_MATCH_INFO = 3
                let name = attr_name(attributes, 1);
                let get = |k: u16| attr(attributes, k);
                let rev = get(2).and_then(|v| be_u32(&v));
                let info = get(3).unwrap_or_default();
                match (name.as_str(), xt_states(&name, rev, &info)) {
                    ("comment", _) => {}
                    (_, Some(m)) => self.matches.push(m),
                    (other, None) => {
                        self.unknown(format!("the iptables match {}", safe_str(other)))
                    }
                }
            }
            // Statements that decide nothing and change nothing a
            // listener's reachability depends on.
            ("counter" | "log", _) => {}
            // Conditions in the kernel (`meter`, `ct count`, named limits
            // and quotas) or a change of what conntrack says later
            // (`notrack`): beyond the model.
            ("dynset" | "objref" | "notrack", _) => self.opaque(&format!("the expression {name}")),
            (other, _) => self.opaque(&format!("the expression {}", safe_str(other))),
        }
    }

    fn meta(&mut self, attrs: &[Meta]) {
        let mut dreg = None;
        let mut key = None;
        for a in attrs {
            match a {
                Meta::DestinationRegister(r) => dreg = Some(*r),
                Meta::Key(k) => key = Some(*k),
                // `meta ... set`: a statement.
                Meta::SourceRegister(_) => return,
                _ => {}
            }
        }
        let (Some(dreg), Some(key)) = (dreg, key) else {
            return;
        };
        let loaded = match key {
            MetaKey::Iifname => Loaded::IifName,
            MetaKey::Iif => Loaded::Iif,
            MetaKey::L4Proto => Loaded::L4Proto,
            MetaKey::Nfproto => Loaded::NfProto,
            other => Loaded::Other(format!("meta {other:?}").to_lowercase()),
        };
        self.regs.insert(slot(dreg), loaded);
    }

    fn payload(&mut self, attrs: &[Payload]) {
        let mut dreg = None;
        let (mut base, mut offset, mut len) = (u32::MAX, 0, 0);
        for a in attrs {
            match a {
                Payload::DestinationRegister(r) => dreg = Some(*r),
                Payload::Base(b) => base = *b,
                Payload::Offset(o) => offset = *o,
                Payload::Len(l) => len = *l,
                Payload::SourceRegister(_) => {
                    self.opaque("a payload rewrite");
                    return;
                }
                _ => {}
            }
        }
        let Some(dreg) = dreg else { return };
        let loaded = match (base, self.v6, offset, len) {
            // NFT_PAYLOAD_NETWORK_HEADER
            (1, Some(false), 9, 1) | (1, Some(true), 6, 1) => Loaded::L4Proto,
            (1, Some(false), 12, 1..=4) => Loaded::Addr {
                source: true,
                v6: false,
                len: len as usize,
            },
            (1, Some(false), 16, 1..=4) => Loaded::Addr {
                source: false,
                v6: false,
                len: len as usize,
            },
            (1, Some(true), 8, 1..=16) => Loaded::Addr {
                source: true,
                v6: true,
                len: len as usize,
            },
            (1, Some(true), 24, 1..=16) => Loaded::Addr {
                source: false,
                v6: true,
                len: len as usize,
            },
            // NFT_PAYLOAD_TRANSPORT_HEADER: TCP's and UDP's destination port.
            (2, _, 2, 2) => Loaded::DestPort,
            _ => Loaded::Other(format!("payload base {base} offset {offset} length {len}")),
        };
        self.regs.insert(slot(dreg), loaded);
    }

    fn bitwise(&mut self, attrs: &[Bitwise]) {
        let (mut sreg, mut dreg, mut mask, mut xor, mut op) = (None, None, None, None, 0);
        for a in attrs {
            match a {
                Bitwise::SourceRegister(r) => sreg = Some(*r),
                Bitwise::DestinationRegister(r) => dreg = Some(*r),
                Bitwise::Mask(DataAttribute::Value(v)) => mask = Some(v.clone()),
                Bitwise::Xor(DataAttribute::Value(v)) => xor = Some(v.clone()),
                Bitwise::Op(o) => op = *o,
                _ => {}
            }
        }
        let (Some(sreg), Some(dreg)) = (sreg, dreg) else {
            return;
        };
        let source = self.regs.get(&slot(sreg)).cloned();
        let plain = op == 0 && xor.as_ref().is_some_and(|x| x.iter().all(|b| *b == 0));
        let loaded = match (source, mask, plain) {
            (Some(Loaded::CtState), Some(mask), true) => {
                Loaded::CtStates(ct_states(u32::from_ne_bytes(
                    mask.get(..4)
                        .and_then(|m| m.try_into().ok())
                        .unwrap_or([0; 4]),
                )))
            }
            (Some(Loaded::Addr { source, v6, .. }), Some(mask), true) => {
                // A prefix mask: ones, then zeros.
                let ones: Vec<bool> = mask
                    .iter()
                    .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1 == 1))
                    .collect();
                let bits = ones.iter().take_while(|b| **b).count();
                let prefix = ones.iter().skip(bits).all(|b| !b);
                match u8::try_from(bits) {
                    Ok(bits) if prefix => Loaded::Prefix { source, v6, bits },
                    _ => Loaded::Other("an address under a mask that is no prefix".into()),
                }
            }
            _ => Loaded::Other("a bitwise operation".into()),
        };
        self.regs.insert(slot(dreg), loaded);
    }

    fn cmp(&mut self, attrs: &[Cmp]) {
        let (mut sreg, mut op, mut data) = (None, None, None);
        for a in attrs {
            match a {
                Cmp::SourceRegister(r) => sreg = Some(*r),
                Cmp::Op(o) => op = Some(*o),
                Cmp::Data(DataAttribute::Value(v)) => data = Some(v.clone()),
                _ => {}
            }
        }
        let (Some(sreg), Some(op), Some(data)) = (sreg, op, data) else {
            self.unknown("a comparison portwatch cannot read");
            return;
        };
        let loaded = self.regs.get(&slot(sreg)).cloned();
        let negated = op == Operator::NotEqual;
        let equality = matches!(op, Operator::Equal | Operator::NotEqual);
        let m = match (loaded, equality) {
            (Some(Loaded::IifName), true) => Some(Match::InInterface {
                names: vec![iface_name(&data)],
                negated,
            }),
            (Some(Loaded::Iif), true) => Some(self.iif(&data, negated)),
            (Some(Loaded::L4Proto), true) => Some(proto_match(data.first().copied(), negated)),
            (Some(Loaded::NfProto), true) => {
                let v6 = match data.first() {
                    Some(2) => false,
                    Some(10) => true,
                    _ => {
                        self.unknown("meta nfproto of another family");
                        return;
                    }
                };
                let v6 = v6 != negated;
                self.v6 = Some(v6);
                Some(Match::Family { ipv6: v6 })
            }
            (Some(Loaded::Addr { source, v6, len }), true) => addr_net(&data, v6, (len * 8) as u8)
                .map(|net| addr_match(source, vec![net], negated)),
            (Some(Loaded::Prefix { source, v6, bits }), true) => {
                addr_net(&data, v6, bits).map(|net| addr_match(source, vec![net], negated))
            }
            (Some(Loaded::DestPort), _) => {
                let port = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                port.map(|p| port_match(op, p))
            }
            (Some(Loaded::CtStates(states)), true) => {
                // `ct state & MASK != 0`: one of the mask's states.
                let zero = data.iter().all(|b| *b == 0);
                if zero {
                    Some(Match::CtState {
                        states,
                        negated: !negated,
                    })
                } else {
                    None
                }
            }
            (Some(Loaded::CtState), true) => {
                let bits = u32::from_ne_bytes(
                    data.get(..4)
                        .and_then(|d| d.try_into().ok())
                        .unwrap_or([0; 4]),
                );
                let states = ct_states(bits);
                (states.len() == 1).then_some(Match::CtState { states, negated })
            }
            (Some(Loaded::Other(what)), _) => Some(Match::Unknown(what)),
            _ => None,
        };
        match m {
            Some(m) => self.matches.push(m),
            None => self.unknown("a comparison portwatch cannot read"),
        }
    }

    fn iif(&self, data: &[u8], negated: bool) -> Match {
        let index = u32::from_ne_bytes(
            data.get(..4)
                .and_then(|d| d.try_into().ok())
                .unwrap_or([0; 4]),
        );
        match self.raw.interfaces.iter().find(|(i, _)| *i == index) {
            Some((_, name)) => Match::InInterface {
                names: vec![name.clone()],
                negated,
            },
            // An interface that is gone: no packet arrives on it.
            None => Match::InInterface {
                names: Vec::new(),
                negated,
            },
        }
    }

    fn lookup(&mut self, attrs: &[Lookup]) {
        let (mut sreg, mut set, mut dreg, mut flags) = (None, None, None, 0);
        for a in attrs {
            match a {
                Lookup::SourceRegister(r) => sreg = Some(*r),
                Lookup::Set(s) => set = Some(s.clone()),
                Lookup::DestinationRegister(r) => dreg = Some(*r),
                Lookup::Flags(f) => flags = *f,
                _ => {}
            }
        }
        let (Some(sreg), Some(set)) = (sreg, set) else {
            self.unknown("a set lookup portwatch cannot read");
            return;
        };
        let Some(set) = self
            .raw
            .sets
            .iter()
            .find(|s| s.family == self.family && s.table == self.table && s.name == set)
        else {
            self.unknown(format!(
                "the set {}, which portwatch did not read",
                safe_str(&set)
            ));
            return;
        };
        if dreg == Some(Register::Verdict) && !set.interval && !set.concat && flags & 1 == 0 {
            // `... vmap { k1 : accept, k2 : drop }`: one rule per element.
            match self.regs.get(&slot(sreg)).cloned() {
                Some(loaded) => self.vmap = Some((loaded, set)),
                None => self.unknown(format!("the map {}", safe_str(&set.name))),
            }
            return;
        }
        if dreg.is_some() {
            // A map to values (`dnat to ... map`), or one of ranges: one
            // value per key, which the model does not follow.
            self.unknown(format!("the map {}", safe_str(&set.name)));
            return;
        }
        // NFT_LOOKUP_F_INV
        let negated = flags & 1 != 0;
        let loaded = self.regs.get(&slot(sreg)).cloned();
        let m = loaded.and_then(|l| sets::membership(set, &l, negated, &self.raw.interfaces));
        match m {
            Some(m) => self.matches.push(m),
            None => self.unknown(format!("a lookup in the set {}", safe_str(&set.name))),
        }
    }

    fn immediate(&mut self, attrs: &[Immediate]) {
        let mut dreg = None;
        let mut data = None;
        for a in attrs {
            match a {
                Immediate::DestinationRegister(r) => dreg = Some(*r),
                Immediate::Data(d) => data = Some(d),
                _ => {}
            }
        }
        match (dreg, data) {
            (Some(Register::Verdict), Some(DataAttribute::Verdict(v))) => {
                self.verdict = self.qualified(verdict_of(v));
            }
            (Some(r), Some(DataAttribute::Value(v))) => {
                self.regs.insert(slot(r), Loaded::Value(v.clone()));
            }
            _ => self.unknown("an immediate portwatch cannot read"),
        }
    }

    fn ct(&mut self, attrs: &[DefaultNla]) {
        // NFTA_CT_DREG = 1, NFTA_CT_KEY = 2, NFTA_CT_SREG = 4
        let get = |k: u16| attr(attrs, k);
        if get(4).is_some() {
            // `ct ... set`: a statement.
            return;
        }
        let (Some(dreg), Some(key)) = (
            get(1).and_then(|v| be_u32(&v)),
            get(2).and_then(|v| be_u32(&v)),
        ) else {
            self.unknown("a ct expression portwatch cannot read");
            return;
        };
        let loaded = match key {
            0 => Loaded::CtState,
            k => Loaded::Other(format!("ct key {k}")),
        };
        self.regs.insert(slot(Register::from(dreg)), loaded);
    }

    fn nat(&mut self, attrs: &[DefaultNla]) {
        // NFTA_NAT_TYPE = 1 (NFT_NAT_DNAT = 1), NFTA_NAT_FAMILY = 2,
        // NFTA_NAT_REG_ADDR_MIN = 3, NFTA_NAT_REG_PROTO_MIN = 5.
        let get = |k: u16| attr(attrs, k);
        let kind = get(1).and_then(|v| be_u32(&v));
        if kind != Some(1) {
            // SNAT and masquerade act after routing.
            return;
        }
        let family = get(2).and_then(|v| be_u32(&v));
        // NFTA_NAT_REG_ADDR_MAX = 4, NFTA_NAT_REG_PROTO_MAX = 6: nft
        // names the same register (or value) for one target; a range
        // names no one target.
        let value = |k: u16| {
            get(k)
                .and_then(|v| be_u32(&v))
                .map(|r| self.regs.get(&slot(Register::from(r))).cloned())
        };
        for (min, max) in [(3, 4), (5, 6)] {
            if let Some(top) = value(max)
                && top != value(min).flatten()
            {
                self.opaque("a DNAT to a range");
                return;
            }
        }
        let reg = |k: u16| {
            get(k)
                .and_then(|v| be_u32(&v))
                .and_then(|r| self.regs.get(&slot(Register::from(r))).cloned())
        };
        let address = match (reg(3), family) {
            (Some(Loaded::Value(v)), Some(2)) => v
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            (Some(Loaded::Value(v)), Some(10)) => v
                .get(..16)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            (None, _) if get(3).is_none() => None,
            _ => {
                self.unknown("a DNAT to an address portwatch cannot read");
                return;
            }
        };
        let port = match reg(5) {
            Some(Loaded::Value(v)) => v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])),
            None if get(5).is_none() => None,
            _ => {
                self.unknown("a DNAT to a port portwatch cannot read");
                return;
            }
        };
        self.verdict = Verdict::Dnat { address, port };
    }
}

/// iptables' `-m conntrack --ctstate` (revisions 2 and 3) and `-m state
/// --state`, from their info structs, as a `ct state` match; None for any
/// other use of them.
fn xt_states(name: &str, rev: Option<u32>, info: &[u8]) -> Option<Match> {
    let u16_at = |at: usize| {
        info.get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let (mask, negated) = match (name, rev) {
        // struct xt_conntrack_mtinfo2/3: eight 16-byte addresses and
        // masks, two u32 expiry bounds, the l4proto and four ports
        // (u16), then match_flags, invert_flags and state_mask (u16).
        ("conntrack", Some(2 | 3)) => {
            let (flags, invert, mask) = (u16_at(146)?, u16_at(148)?, u16_at(150)?);
            // XT_CONNTRACK_STATE alone.
            if flags != 1 {
                return None;
            }
            (u32::from(mask), invert & 1 != 0)
        }
        // struct xt_state_info { unsigned int statemask; }
        ("state", Some(0)) => (u32::from_ne_bytes(info.get(..4)?.try_into().ok()?), false),
        _ => return None,
    };
    // XT_STATE_BIT: invalid, established, related, new as in nftables;
    // untracked is 1 << 6 for `state`, 1 << 8 for `conntrack`, whose 1 <<
    // 6 and 1 << 7 are SNAT and DNAT (beyond the model).
    let untracked = if name == "state" { 1 << 6 } else { 1 << 8 };
    if mask & !(0xf | untracked) != 0 {
        return None;
    }
    let mut states = ct_states(mask & 0xf);
    if mask & untracked != 0 {
        states.push(CtState::Untracked);
    }
    Some(Match::CtState { states, negated })
}

/// iptables' `-j DNAT --to-destination ADDR[:PORT]`, from its info struct
/// (`struct nf_nat_range2` for revisions 1 and 2: flags, the lowest and
/// highest address, the lowest and highest port; revision 0's
/// `nf_nat_ipv4_multi_range_compat` holds one IPv4 range after a count).
/// None for a range of addresses or ports, which names no one target.
fn xt_dnat(rev: Option<u32>, info: &[u8], v6: Option<bool>) -> Option<Verdict> {
    let u32_at = |at: usize| Some(u32::from_ne_bytes(info.get(at..at + 4)?.try_into().ok()?));
    let port_at = |at: usize| Some(u16::from_be_bytes(info.get(at..at + 2)?.try_into().ok()?));
    // NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED
    let (flags, min, max, ports) = match rev? {
        1 | 2 => {
            let len = if v6? { 16 } else { 4 };
            (
                u32_at(0)?,
                info.get(4..4 + len)?,
                info.get(20..20 + len)?,
                (port_at(36)?, port_at(38)?),
            )
        }
        0 if v6 == Some(false) => {
            if u32_at(0)? != 1 {
                return None;
            }
            (
                u32_at(4)?,
                info.get(8..12)?,
                info.get(12..16)?,
                (port_at(16)?, port_at(18)?),
            )
        }
        _ => return None,
    };
    let address = if flags & 1 != 0 {
        if min != max {
            return None;
        }
        Some(match min.len() {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(min).ok()?)),
            _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(min).ok()?)),
        })
    } else {
        None
    };
    let port = if flags & 2 != 0 {
        if ports.0 != ports.1 {
            return None;
        }
        Some(ports.0)
    } else {
        None
    };
    Some(Verdict::Dnat { address, port })
}

fn verdict_of(attrs: &[VerdictAttribute]) -> Verdict {
    let mut code = None;
    let mut chain = None;
    for a in attrs {
        match a {
            VerdictAttribute::Code(c) => code = Some(*c),
            VerdictAttribute::Chain(c) => chain = Some(c.clone()),
            _ => {}
        }
    }
    match (code, chain) {
        (Some(NlVerdict::Jump), Some(c)) => Verdict::Jump(c),
        (Some(NlVerdict::Goto), Some(c)) => Verdict::Goto(c),
        (Some(NlVerdict::Return), _) => Verdict::Return,
        // NF_DROP = 0, NF_ACCEPT = 1
        (Some(NlVerdict::Other(0)), _) => Verdict::Drop,
        (Some(NlVerdict::Other(1)), _) => Verdict::Accept,
        _ => Verdict::Continue,
    }
}

/// An interface name as `cmp` holds it: NUL-padded when exact; cut short
/// for a prefix (`"eth*"`).
fn iface_name(data: &[u8]) -> String {
    // Made safe as interface names are (`sys::links`), so that the two
    // still compare equal.
    match data.iter().position(|b| *b == 0) {
        Some(end) => safe_str(&String::from_utf8_lossy(&data[..end])),
        None => format!("{}*", safe_str(&String::from_utf8_lossy(data))),
    }
}

fn port_match(op: Operator, p: u16) -> Match {
    let (range, negated) = match op {
        Operator::Equal => ((p, p), false),
        Operator::NotEqual => ((p, p), true),
        Operator::LessThan => ((p, u16::MAX), true),
        Operator::LessThanEqual => ((0, p), false),
        Operator::GreaterThan => ((0, p), true),
        _ => ((p, u16::MAX), false),
    };
    Match::DestPort {
        ranges: vec![range],
        negated,
    }
}
