//! The judgement on hand-built namespaces: the shapes real rulesets have
//! (a drop policy with some ports open, `iif lo accept`, `ct state
//! established`, rejects, jumps, iptables-nft's chain beside a native
//! one, source restrictions) and what the model refuses to guess.

use super::*;
use crate::exposure::Interface;

fn lo_and_eth0() -> Vec<Interface> {
    vec![
        Interface {
            name: "lo".into(),
            loopback: true,
            up: true,
            addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        },
        Interface {
            name: "eth0".into(),
            loopback: false,
            up: true,
            addresses: vec![
                "192.0.2.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
        },
    ]
}

fn rule(matches: Vec<Match>, verdict: Verdict, text: &str) -> Rule {
    Rule {
        matches,
        verdict,
        text: text.into(),
    }
}

fn tcp_dport(ports: &[u16]) -> Vec<Match> {
    vec![
        Match::Proto {
            proto: Proto::Tcp,
            negated: false,
        },
        Match::DestPort {
            ranges: ports.iter().map(|p| (*p, *p)).collect(),
            negated: false,
        },
    ]
}

fn base(name: &str, priority: i32, policy: Verdict, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        hook: Some(Hook::Input),
        priority,
        policy,
        family: None,
        rules,
    }
}

/// A typical host firewall: drop by default, loopback and established
/// traffic accepted, SSH open, 8080 rejected.
fn host_firewall() -> NetnsFacts {
    NetnsFacts {
        interfaces: lo_and_eth0(),
        chains: vec![base(
            "inet filter input",
            0,
            Verdict::Drop,
            vec![
                rule(
                    vec![Match::InInterface {
                        names: vec!["lo".into()],
                        negated: false,
                    }],
                    Verdict::Accept,
                    "iif lo accept",
                ),
                rule(
                    vec![Match::CtState {
                        states: vec![CtState::Established, CtState::Related],
                        negated: false,
                    }],
                    Verdict::Accept,
                    "ct state established,related accept",
                ),
                rule(tcp_dport(&[22]), Verdict::Accept, "tcp dport 22 accept"),
                rule(tcp_dport(&[8080]), Verdict::Reject, "tcp dport 8080 reject"),
            ],
        )],
        ..NetnsFacts::default()
    }
}

fn at(addr: &str, port: u16, facts: &NetnsFacts) -> Exposure {
    judge(Proto::Tcp, addr.parse().unwrap(), port, facts)
}

fn reachable(via: &[&str]) -> Exposure {
    Exposure::Reachable {
        reachable_via: via.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn loopback_addresses_are_loopback_whatever_the_rules() {
    let f = host_firewall();
    assert_eq!(at("127.0.0.1", 22, &f), Exposure::Loopback);
    assert_eq!(at("::1", 22, &f), Exposure::Loopback);
    assert_eq!(at("::ffff:127.0.0.1", 22, &f), Exposure::Loopback);
}

#[test]
fn a_drop_policy_filters_all_but_the_ports_it_accepts() {
    let f = host_firewall();
    assert_eq!(at("0.0.0.0", 22, &f), reachable(&["eth0"]));
    assert_eq!(at("192.0.2.10", 22, &f), reachable(&["eth0"]));
    assert_eq!(at("::", 22, &f), reachable(&["eth0"]));
    // Established traffic and loopback accepted do not open a port.
    assert_eq!(at("0.0.0.0", 5432, &f), Exposure::Filtered);
    assert_eq!(at("0.0.0.0", 8080, &f), Exposure::Filtered, "a reject");
}

#[test]
fn without_rules_every_up_interface_reaches_a_wildcard_listener() {
    let mut f = NetnsFacts {
        interfaces: lo_and_eth0(),
        chains: Vec::new(),
        ..NetnsFacts::default()
    };
    assert_eq!(at("0.0.0.0", 5432, &f), reachable(&["eth0"]));
    f.interfaces[1].up = false;
    assert_eq!(at("0.0.0.0", 5432, &f), Exposure::Filtered, "nothing is up");
}

#[test]
fn a_drop_in_any_base_chain_is_final_and_priorities_order_them() {
    // iptables-nft's INPUT (policy accept) and a native table dropping:
    // the later drop wins over the earlier accept.
    let mut f = host_firewall();
    f.chains.push(base(
        "ip filter INPUT",
        -10,
        Verdict::Accept,
        vec![rule(
            tcp_dport(&[5432]),
            Verdict::Accept,
            "tcp dport 5432 accept",
        )],
    ));
    assert_eq!(at("0.0.0.0", 5432, &f), Exposure::Filtered);
    // And an earlier drop cannot be undone by a later accept.
    f.chains.push(base(
        "ip raw early",
        -300,
        Verdict::Accept,
        vec![rule(tcp_dport(&[22]), Verdict::Drop, "tcp dport 22 drop")],
    ));
    assert_eq!(at("0.0.0.0", 22, &f), Exposure::Filtered);
}

#[test]
fn jumps_return_and_gotos_do_not() {
    let mut f = host_firewall();
    let services = Chain {
        name: "inet filter services".into(),
        hook: None,
        priority: 0,
        policy: Verdict::Accept,
        family: None,
        rules: vec![
            rule(tcp_dport(&[443]), Verdict::Accept, "tcp dport 443 accept"),
            rule(vec![], Verdict::Return, "return"),
        ],
    };
    f.chains.push(services);
    f.chains[0].rules.insert(
        0,
        rule(
            vec![],
            Verdict::Jump("inet filter services".into()),
            "jump services",
        ),
    );
    assert_eq!(at("0.0.0.0", 443, &f), reachable(&["eth0"]));
    // 22 came back from the jump and met its accept.
    assert_eq!(at("0.0.0.0", 22, &f), reachable(&["eth0"]));
    // A goto does not come back: the base chain's policy decides.
    f.chains[0].rules[0].verdict = Verdict::Goto("inet filter services".into());
    assert_eq!(at("0.0.0.0", 22, &f), Exposure::Filtered);
}

#[test]
fn interfaces_and_source_restrictions() {
    let mut f = host_firewall();
    f.interfaces.push(Interface {
        name: "wg0".into(),
        loopback: false,
        up: true,
        addresses: vec!["10.8.0.1".parse().unwrap()],
    });
    // Open on the VPN only.
    f.chains[0].rules.push(rule(
        vec![
            Match::InInterface {
                names: vec!["wg0".into()],
                negated: false,
            },
            Match::Proto {
                proto: Proto::Tcp,
                negated: false,
            },
        ],
        Verdict::Accept,
        "iifname wg0 tcp accept",
    ));
    assert_eq!(at("0.0.0.0", 5432, &f), reachable(&["wg0"]));
    // An accept from some sources is reachable (from them); a drop for some
    // sources leaves the others to the next rules.
    let mut g = host_firewall();
    g.chains[0].rules.insert(
        2,
        rule(
            vec![Match::SourceAddr {
                nets: vec!["198.51.100.0/24".parse().unwrap()],
                negated: false,
            }],
            Verdict::Drop,
            "ip saddr 198.51.100.0/24 drop",
        ),
    );
    assert_eq!(at("0.0.0.0", 22, &g), reachable(&["eth0"]));
    g.chains[0].rules.push(rule(
        vec![
            Match::SourceAddr {
                nets: vec!["203.0.113.0/24".parse().unwrap()],
                negated: false,
            },
            Match::DestPort {
                ranges: vec![(9000, 9100)],
                negated: false,
            },
        ],
        Verdict::Accept,
        "ip saddr 203.0.113.0/24 tcp dport 9000-9100 accept",
    ));
    assert_eq!(at("0.0.0.0", 9050, &g), reachable(&["eth0"]));
}

#[test]
fn what_the_model_does_not_cover_is_unknown_and_named() {
    let mut f = host_firewall();
    f.chains[0].rules.insert(
        0,
        rule(
            vec![Match::Unknown("xt match \"recent\"".into())],
            Verdict::Drop,
            "xt match recent drop",
        ),
    );
    let Exposure::Unknown { why } = at("0.0.0.0", 22, &f) else {
        panic!("not unknown")
    };
    assert!(why.contains("xt match recent drop"), "{why}");
    // A counter with a condition it cannot read decides nothing.
    f.chains[0].rules[0].verdict = Verdict::Continue;
    assert_eq!(at("0.0.0.0", 22, &f), reachable(&["eth0"]));
    // A later chain that surely drops still decides.
    f.chains[0].rules[0].verdict = Verdict::Accept;
    f.chains
        .push(base("inet late input", 100, Verdict::Drop, Vec::new()));
    assert_eq!(at("0.0.0.0", 22, &f), Exposure::Filtered);
    // A jump to a chain never read, or jumps without end, are unknown.
    let mut g = host_firewall();
    g.chains[0].rules.insert(
        0,
        rule(vec![], Verdict::Jump("nowhere".into()), "jump nowhere"),
    );
    assert!(matches!(at("0.0.0.0", 22, &g), Exposure::Unknown { .. }));
    let mut h = host_firewall();
    h.chains.push(Chain {
        name: "loop".into(),
        hook: None,
        priority: 0,
        policy: Verdict::Accept,
        family: None,
        rules: vec![rule(vec![], Verdict::Jump("loop".into()), "jump loop")],
    });
    h.chains[0]
        .rules
        .insert(0, rule(vec![], Verdict::Jump("loop".into()), "jump loop"));
    assert!(matches!(at("0.0.0.0", 22, &h), Exposure::Unknown { .. }));
}

#[test]
fn family_chains_see_only_their_family() {
    // An ip6 table that drops everything leaves IPv4 alone.
    let mut f = NetnsFacts {
        interfaces: lo_and_eth0(),
        chains: vec![Chain {
            family: Some(true),
            ..base("ip6 filter input", 0, Verdict::Drop, Vec::new())
        }],
        ..NetnsFacts::default()
    };
    assert_eq!(at("192.0.2.10", 80, &f), reachable(&["eth0"]));
    assert_eq!(at("2001:db8::10", 80, &f), Exposure::Filtered);
    // A wildcard IPv6 listener answers IPv4 too.
    assert_eq!(at("::", 80, &f), reachable(&["eth0"]));
    f.chains[0].family = Some(false);
    assert_eq!(at("::", 80, &f), reachable(&["eth0"]));
    assert_eq!(at("0.0.0.0", 80, &f), Exposure::Filtered);
}

#[test]
fn the_verdict_serialises_as_the_issue_names_it() {
    assert_eq!(
        serde_json::to_string(&reachable(&["eth0"])).unwrap(),
        r#"{"exposure":"reachable","reachable_via":["eth0"]}"#
    );
    assert_eq!(
        serde_json::to_string(&Exposure::Loopback).unwrap(),
        r#"{"exposure":"loopback"}"#
    );
}

/// A DNAT rule publishes a listener of another namespace only from a
/// trusted namespace (root's), and a loopback target only in its own.
#[test]
fn only_trusted_namespaces_publish_other_namespaces_listeners() {
    use crate::{event::Listener, exposure::published_as};
    let dnat = |to: &str| crate::exposure::Dnat {
        proto: Proto::Tcp,
        port: 8080,
        addresses: Vec::new(),
        to_address: to.parse().unwrap(),
        to_port: Some(80),
        rule: "rule 1 of chain ip nat prerouting".into(),
    };
    let container = NetnsFacts {
        interfaces: vec![Interface {
            name: "eth0".into(),
            loopback: false,
            up: true,
            addresses: vec!["172.17.0.2".parse().unwrap()],
        }],
        // A container: root made its namespace.
        trusted: true,
        ..NetnsFacts::default()
    };
    let l = Listener {
        netns: 2,
        ..Listener::new(Proto::Tcp, "0.0.0.0".parse().unwrap(), 80)
    };
    // The rule as its chain holds it, and as the DNAT list names it.
    let prerouting = Chain {
        hook: Some(Hook::Prerouting),
        priority: -100,
        ..base(
            "ip nat prerouting",
            -100,
            Verdict::Accept,
            vec![rule(
                tcp_dport(&[8080]),
                Verdict::Dnat {
                    address: Some("172.17.0.2".parse().unwrap()),
                    port: Some(80),
                },
                "tcp dport 8080 dnat to 172.17.0.2:80",
            )],
        )
    };
    let mut host = NetnsFacts {
        interfaces: lo_and_eth0(),
        chains: vec![prerouting],
        dnat: vec![dnat("172.17.0.2"), dnat("127.0.0.1")],
        trusted: true,
        ..NetnsFacts::default()
    };
    let all =
        |host: &NetnsFacts| published_as(&l, &container, [(1, host), (2, &container)].into_iter());
    let got = all(&host);
    assert_eq!(
        got.len(),
        1,
        "the loopback target is the host's own: {got:?}"
    );
    assert_eq!((got[0].netns, got[0].port), (1, 8080));
    assert_eq!(got[0].exposure, reachable(&["eth0"]));
    host.trusted = false;
    assert!(
        all(&host).is_empty(),
        "a user's namespace published another's listener"
    );
}
