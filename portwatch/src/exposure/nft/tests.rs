//! Rules as netlink lists them (register bytecode), translated and
//! judged: the shapes `nft` and iptables-nft write for the common rules,
//! and what stays beyond the model.

use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions,
    Hook as NlHook, HookNumber, Immediate, InetHookNumber, ListAttribute, Lookup, Meta, MetaKey,
    Operator, Payload, Register, RuleAttribute, RuleMessage, Verdict as NlVerdict,
    VerdictAttribute,
};

use super::*;
use crate::netns_facts::{RawSet, SetElement};
use crate::{
    event::Proto,
    exposure::{Exposure, Interface, NetnsFacts, judge},
};

const R1: Register = Register::Reg1;

fn expr(name: &str, data: Expressions) -> ListAttribute<ExpressionAttribute> {
    ListAttribute::Element(vec![
        ExpressionAttribute::Name(name.into()),
        ExpressionAttribute::Data(data),
    ])
}

fn other(name: &str, attrs: Vec<(u16, Vec<u8>)>) -> ListAttribute<ExpressionAttribute> {
    expr(
        name,
        Expressions::Other {
            expression_type: name.into(),
            attributes: attrs
                .into_iter()
                .map(|(k, v)| DefaultNla::new(k, v))
                .collect(),
        },
    )
}

fn meta(key: MetaKey) -> ListAttribute<ExpressionAttribute> {
    expr(
        "meta",
        Expressions::Meta(vec![Meta::DestinationRegister(R1), Meta::Key(key)]),
    )
}

fn cmp(op: Operator, data: &[u8]) -> ListAttribute<ExpressionAttribute> {
    expr(
        "cmp",
        Expressions::Cmp(vec![
            Cmp::SourceRegister(R1),
            Cmp::Op(op),
            Cmp::Data(DataAttribute::Value(data.to_vec())),
        ]),
    )
}

fn dport() -> ListAttribute<ExpressionAttribute> {
    expr(
        "payload",
        Expressions::Payload(vec![
            Payload::DestinationRegister(R1),
            Payload::Base(2),
            Payload::Offset(2),
            Payload::Len(2),
        ]),
    )
}

fn tcp() -> Vec<ListAttribute<ExpressionAttribute>> {
    vec![meta(MetaKey::L4Proto), cmp(Operator::Equal, &[6])]
}

fn verdict(code: NlVerdict, chain: Option<&str>) -> ListAttribute<ExpressionAttribute> {
    let mut v = vec![VerdictAttribute::Code(code)];
    v.extend(chain.map(|c| VerdictAttribute::Chain(c.into())));
    expr(
        "immediate",
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Verdict),
            Immediate::Data(DataAttribute::Verdict(v)),
        ]),
    )
}

fn accept() -> ListAttribute<ExpressionAttribute> {
    verdict(NlVerdict::Other(1), None)
}

fn rule(
    chain: &str,
    handle: u64,
    exprs: Vec<ListAttribute<ExpressionAttribute>>,
) -> (u8, RuleMessage) {
    (
        family::INET,
        RuleMessage {
            attributes: vec![
                RuleAttribute::Table("filter".into()),
                RuleAttribute::Chain(chain.into()),
                RuleAttribute::Handle(handle),
                RuleAttribute::Expressions(exprs),
            ],
        },
    )
}

fn base_chain(name: &str, hook: InetHookNumber, priority: i32, drop: bool) -> (u8, ChainMessage) {
    (
        family::INET,
        ChainMessage {
            attributes: vec![
                ChainAttribute::Table("filter".into()),
                ChainAttribute::Name(name.into()),
                ChainAttribute::Hook(vec![
                    NlHook::Number(HookNumber::Inet(hook)),
                    NlHook::Priority(u32::from_ne_bytes(priority.to_ne_bytes())),
                ]),
                ChainAttribute::Policy(u32::from(!drop)),
            ],
        },
    )
}

fn facts(raw: &RawRuleset) -> NetnsFacts {
    let t = translate(raw);
    NetnsFacts {
        interfaces: vec![
            Interface {
                name: "lo".into(),
                loopback: true,
                up: true,
                addresses: vec!["127.0.0.1".parse().unwrap()],
            },
            Interface {
                name: "eth0".into(),
                loopback: false,
                up: true,
                addresses: vec!["192.0.2.1".parse().unwrap()],
            },
        ],
        chains: t.chains,
        dnat: t.dnat,
        legacy_tables: Vec::new(),
        trusted: true,
    }
}

fn exposure_of(f: &NetnsFacts, port: u16) -> Exposure {
    judge(Proto::Tcp, "0.0.0.0".parse().unwrap(), port, f)
}

/// `nft add table inet filter` with a drop policy, `iifname "lo"
/// accept`, `ct state established,related accept`, `tcp dport { 22, 80 }
/// accept` and `tcp dport 8080 reject`, as nft compiles them.
fn host_firewall() -> RawRuleset {
    let mut lo = [0u8; 16];
    lo[..2].copy_from_slice(b"lo");
    RawRuleset {
        chains: vec![base_chain("input", InetHookNumber::LocalIn, 0, true)],
        rules: vec![
            rule(
                "input",
                1,
                vec![meta(MetaKey::Iifname), cmp(Operator::Equal, &lo), accept()],
            ),
            rule(
                "input",
                2,
                vec![
                    other(
                        "ct",
                        vec![
                            (1, 1u32.to_be_bytes().to_vec()),
                            (2, 0u32.to_be_bytes().to_vec()),
                        ],
                    ),
                    expr(
                        "bitwise",
                        Expressions::Bitwise(vec![
                            Bitwise::SourceRegister(R1),
                            Bitwise::DestinationRegister(R1),
                            Bitwise::Length(4),
                            Bitwise::Mask(DataAttribute::Value(6u32.to_ne_bytes().to_vec())),
                            Bitwise::Xor(DataAttribute::Value(vec![0; 4])),
                        ]),
                    ),
                    cmp(Operator::NotEqual, &[0; 4]),
                    accept(),
                ],
            ),
            rule(
                "input",
                3,
                [
                    tcp(),
                    vec![
                        dport(),
                        expr(
                            "lookup",
                            Expressions::Lookup(vec![
                                Lookup::Set("__set0".into()),
                                Lookup::SourceRegister(R1),
                            ]),
                        ),
                        accept(),
                    ],
                ]
                .concat(),
            ),
            rule(
                "input",
                4,
                [
                    tcp(),
                    vec![
                        dport(),
                        cmp(Operator::Equal, &8080u16.to_be_bytes()),
                        other("reject", vec![]),
                    ],
                ]
                .concat(),
            ),
        ],
        sets: vec![RawSet {
            family: family::INET,
            table: "filter".into(),
            name: "__set0".into(),
            interval: false,
            concat: false,
            elements: [22u16, 80]
                .iter()
                .map(|p| SetElement {
                    key: p.to_be_bytes().to_vec(),
                    interval_end: false,
                    catch_all: false,
                    verdict: None,
                })
                .collect(),
        }],
        interfaces: vec![(1, "lo".into()), (2, "eth0".into())],
    }
}

#[test]
fn a_host_firewall_translates_to_what_it_does() {
    let f = facts(&host_firewall());
    let reachable = Exposure::Reachable {
        reachable_via: vec!["eth0".into()],
    };
    assert_eq!(exposure_of(&f, 22), reachable);
    assert_eq!(exposure_of(&f, 80), reachable);
    assert_eq!(exposure_of(&f, 8080), Exposure::Filtered);
    assert_eq!(exposure_of(&f, 9000), Exposure::Filtered);
    assert_eq!(
        judge(Proto::Udp, "0.0.0.0".parse().unwrap(), 22, &f),
        Exposure::Filtered
    );
}

#[test]
fn an_iptables_conntrack_match_is_a_ct_state_match() {
    // struct xt_conntrack_mtinfo3 up to state_mask: --ctstate
    // ESTABLISHED,RELATED with XT_CONNTRACK_STATE set.
    let mut info = vec![0u8; 168];
    info[146..148].copy_from_slice(&1u16.to_ne_bytes());
    info[150..152].copy_from_slice(&6u16.to_ne_bytes());
    let mut raw = host_firewall();
    raw.rules[1].1.attributes[3] = RuleAttribute::Expressions(vec![
        other(
            "match",
            vec![
                (1, b"conntrack\0".to_vec()),
                (2, 3u32.to_be_bytes().to_vec()),
                (3, info),
            ],
        ),
        accept(),
    ]);
    let f = facts(&raw);
    assert_eq!(exposure_of(&f, 8080), Exposure::Filtered);
    assert!(matches!(exposure_of(&f, 22), Exposure::Reachable { .. }));
}

#[test]
fn an_expression_beyond_the_model_is_unknown_and_named() {
    let mut raw = host_firewall();
    raw.rules
        .insert(0, rule("input", 9, vec![other("fib", vec![]), accept()]));
    let Exposure::Unknown { why } = exposure_of(&facts(&raw), 9000) else {
        panic!("a fib rule was judged");
    };
    assert!(why.contains("rule 9 of chain inet filter input"), "{why}");
    assert!(why.contains("fib"), "{why}");
}

#[test]
fn a_dnat_rule_is_read_and_sends_its_port_elsewhere() {
    let mut raw = host_firewall();
    raw.chains.push(base_chain(
        "prerouting",
        InetHookNumber::PreRouting,
        -100,
        false,
    ));
    let imm = |reg: Register, v: Vec<u8>| {
        expr(
            "immediate",
            Expressions::Immediate(vec![
                Immediate::DestinationRegister(reg),
                Immediate::Data(DataAttribute::Value(v)),
            ]),
        )
    };
    raw.rules.push(rule(
        "prerouting",
        20,
        [
            tcp(),
            vec![
                dport(),
                cmp(Operator::Equal, &22u16.to_be_bytes()),
                imm(Register::Reg1, vec![192, 0, 2, 66]),
                imm(Register::Reg2, 2222u16.to_be_bytes().to_vec()),
                other(
                    "nat",
                    vec![
                        (1, 1u32.to_be_bytes().to_vec()),
                        (2, 2u32.to_be_bytes().to_vec()),
                        (3, 1u32.to_be_bytes().to_vec()),
                        (5, 2u32.to_be_bytes().to_vec()),
                    ],
                ),
            ],
        ]
        .concat(),
    ));
    let f = facts(&raw);
    assert_eq!(f.dnat.len(), 1, "{:?}", f.dnat);
    assert_eq!(f.dnat[0].port, 22);
    assert_eq!(
        f.dnat[0].to_address,
        "192.0.2.66".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(f.dnat[0].to_port, Some(2222));
    // New connections to port 22 go to the other host, not to this
    // listener.
    assert_eq!(exposure_of(&f, 22), Exposure::Filtered);
    assert!(matches!(exposure_of(&f, 80), Exposure::Reachable { .. }));
}

/// iptables-nft's `-j DNAT --to-destination 192.0.2.66:2222` is an xt
/// target (revision 2, `struct nf_nat_range2`), read as the same DNAT.
#[test]
fn an_iptables_dnat_target_is_a_dnat() {
    let mut info = vec![0u8; 42];
    // NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED
    info[0..4].copy_from_slice(&3u32.to_ne_bytes());
    info[4..8].copy_from_slice(&[192, 0, 2, 66]);
    info[20..24].copy_from_slice(&[192, 0, 2, 66]);
    info[36..38].copy_from_slice(&2222u16.to_be_bytes());
    info[38..40].copy_from_slice(&2222u16.to_be_bytes());
    let mut raw = host_firewall();
    raw.chains.push(base_chain(
        "prerouting",
        InetHookNumber::PreRouting,
        -100,
        false,
    ));
    let target = |info: Vec<u8>| {
        other(
            "target",
            vec![
                (1, b"DNAT\0".to_vec()),
                (2, 2u32.to_be_bytes().to_vec()),
                (3, info),
            ],
        )
    };
    // An inet table's rule narrows to IPv4 first, as iptables' own do.
    let ipv4 = vec![meta(MetaKey::Nfproto), cmp(Operator::Equal, &[2])];
    let dnat_rule = |info: Vec<u8>| {
        let mut exprs = ipv4.clone();
        exprs.extend(tcp());
        exprs.extend([
            dport(),
            cmp(Operator::Equal, &22u16.to_be_bytes()),
            target(info),
        ]);
        rule("prerouting", 30, exprs)
    };
    raw.rules.push(dnat_rule(info.clone()));
    let f = facts(&raw);
    assert_eq!(f.dnat.len(), 1, "{:?}", f.dnat);
    assert_eq!((f.dnat[0].port, f.dnat[0].to_port), (22, Some(2222)));
    assert_eq!(exposure_of(&f, 22), Exposure::Filtered, "sent elsewhere");

    // A range of addresses names no one target: beyond the model.
    info[20..24].copy_from_slice(&[192, 0, 2, 70]);
    raw.rules.pop();
    raw.rules.push(dnat_rule(info));
    let f = facts(&raw);
    assert!(f.dnat.is_empty());
    assert!(matches!(exposure_of(&f, 22), Exposure::Unknown { .. }));
}

/// Verdict maps, as Fedora's and firewalld's rulesets write them: `ct
/// state vmap { established : accept, related : accept, invalid : drop }`
/// and `tcp dport vmap { 22 : accept, 8080 : drop }` stand for one rule
/// per element; a new connection matches no `ct state` element and goes
/// on.
#[test]
fn verdict_maps_stand_for_one_rule_per_element() {
    let element = |key: Vec<u8>, code: NlVerdict| SetElement {
        key,
        interval_end: false,
        catch_all: false,
        verdict: Some(vec![VerdictAttribute::Code(code)]),
    };
    let map = |name: &str, elements| RawSet {
        family: family::INET,
        table: "filter".into(),
        name: name.into(),
        interval: false,
        concat: false,
        elements,
    };
    let lookup = |set: &str| {
        expr(
            "lookup",
            Expressions::Lookup(vec![
                Lookup::Set(set.into()),
                Lookup::SourceRegister(R1),
                Lookup::DestinationRegister(Register::Verdict),
            ]),
        )
    };
    let raw = RawRuleset {
        chains: vec![base_chain("input", InetHookNumber::LocalIn, 0, true)],
        rules: vec![
            rule(
                "input",
                1,
                vec![
                    other(
                        "ct",
                        vec![
                            (1, 1u32.to_be_bytes().to_vec()),
                            (2, 0u32.to_be_bytes().to_vec()),
                        ],
                    ),
                    lookup("__map0"),
                ],
            ),
            rule(
                "input",
                2,
                [tcp(), vec![dport(), lookup("__map1")]].concat(),
            ),
        ],
        sets: vec![
            map(
                "__map0",
                vec![
                    element(2u32.to_ne_bytes().to_vec(), NlVerdict::Other(1)),
                    element(4u32.to_ne_bytes().to_vec(), NlVerdict::Other(1)),
                    element(1u32.to_ne_bytes().to_vec(), NlVerdict::Other(0)),
                ],
            ),
            map(
                "__map1",
                vec![
                    element(22u16.to_be_bytes().to_vec(), NlVerdict::Other(1)),
                    element(8080u16.to_be_bytes().to_vec(), NlVerdict::Other(0)),
                ],
            ),
        ],
        interfaces: vec![(1, "lo".into()), (2, "eth0".into())],
    };
    let f = facts(&raw);
    assert_eq!(f.chains[0].rules.len(), 5, "{:?}", f.chains[0].rules);
    assert!(matches!(exposure_of(&f, 22), Exposure::Reachable { .. }));
    assert_eq!(exposure_of(&f, 8080), Exposure::Filtered);
    assert_eq!(exposure_of(&f, 9000), Exposure::Filtered);
}

/// Adjacent ranges of an interval set (`{ 22, 23 }` is `[22, 24)` and
/// `[23, 24)`... as the kernel lists `22-22` and `23-23`: a start at 23
/// right where the first range ends) both hold; a catch-all element and
/// a `meter` are beyond the model, never read as nothing.
#[test]
fn interval_sets_catch_alls_and_meters_are_read_soundly() {
    let elem = |port: u16, end: bool| SetElement {
        key: port.to_be_bytes().to_vec(),
        interval_end: end,
        catch_all: false,
        verdict: None,
    };
    let mut raw = host_firewall();
    raw.sets[0].interval = true;
    raw.sets[0].elements = vec![
        elem(0, true),
        elem(22, false),
        elem(23, true),
        elem(23, false),
        elem(24, true),
    ];
    let f = facts(&raw);
    assert!(matches!(exposure_of(&f, 22), Exposure::Reachable { .. }));
    assert!(
        matches!(exposure_of(&f, 23), Exposure::Reachable { .. }),
        "the second of two adjacent ranges"
    );
    assert_eq!(exposure_of(&f, 24), Exposure::Filtered);

    raw.sets[0].elements.push(SetElement {
        catch_all: true,
        ..elem(0, false)
    });
    assert!(matches!(
        exposure_of(&facts(&raw), 9000),
        Exposure::Unknown { .. }
    ));

    // `tcp dport 9000 meter m { ip saddr limit rate over 3/minute } drop`.
    let mut raw = host_firewall();
    raw.rules.insert(
        0,
        rule(
            "input",
            8,
            [
                tcp(),
                vec![
                    dport(),
                    cmp(Operator::Equal, &9000u16.to_be_bytes()),
                    other("dynset", vec![]),
                    verdict(NlVerdict::Other(0), None),
                ],
            ]
            .concat(),
        ),
    );
    raw.rules.push(rule(
        "input",
        9,
        [
            tcp(),
            vec![
                dport(),
                cmp(Operator::Equal, &9000u16.to_be_bytes()),
                accept(),
            ],
        ]
        .concat(),
    ));
    assert!(matches!(
        exposure_of(&facts(&raw), 9000),
        Exposure::Unknown { .. }
    ));
}
