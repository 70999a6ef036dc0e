//! The filter language of `/` and `-f`: bare words are case-insensitive
//! substrings of any column (and of the executable and command line);
//! `key:value` terms match one field (`port:8000..9000`, `proto:udp`,
//! `addr:127.0.0.0/8`, `proc:node`, `user:root`, `container:web`,
//! `state:listen`, `pid:42`, `netns:4026531840`, `drift:yes` for what
//! the policy does not expect); `!` negates a term;
//! every term must hold. Pure.

use std::net::IpAddr;

use ipnet::IpNet;

/// The fields of one row that a filter looks at.
#[derive(Clone, Debug, Default)]
pub struct Fields<'a> {
    pub address: Option<IpAddr>,
    pub port: u16,
    pub proto: &'a str,
    pub state: &'a str,
    pub process: &'a str,
    pub pid: u32,
    pub user: &'a str,
    pub container: &'a str,
    pub netns: u64,
    /// `reachable`, `filtered`, `loopback`, `unknown` or `-`.
    pub exposure: &'a str,
    pub exe: &'a str,
    pub cmdline: &'a str,
    /// The policy expects no such listener.
    pub drift: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Test {
    Word(String),
    Port(u16, u16),
    Proto(String),
    Addr(IpNet),
    Proc(String),
    User(String),
    Container(String),
    State(String),
    Pid(u32),
    Netns(u64),
    Exposure(String),
    Drift(bool),
}

#[derive(Clone, Debug, PartialEq)]
struct Term {
    negated: bool,
    test: Test,
}

/// A parsed filter; the empty one admits everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    terms: Vec<Term>,
}

/// The keys a term may have, for the error message.
const KEYS: &str = "port, proto, addr, proc, user, container, state, pid, netns, exposure, drift";

impl Query {
    /// Parses `text`, or says in one sentence what is wrong with it.
    pub fn parse(text: &str) -> Result<Query, String> {
        let mut terms = Vec::new();
        for raw in split_terms(text)? {
            let (negated, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest.to_string()),
                None => (false, raw),
            };
            if body.is_empty() {
                return Err("`!` must be followed by a term".into());
            }
            let test = match body.split_once(':') {
                Some((key, value)) if !key.is_empty() && is_key(key) => {
                    parse_keyed(&key.to_ascii_lowercase(), value)?
                }
                Some((key, _))
                    if key.chars().all(|c| c.is_ascii_alphabetic()) && !key.is_empty() =>
                {
                    return Err(format!("unknown filter key `{key}` (keys: {KEYS})"));
                }
                // An IPv6 address or anything else with a colon: a word.
                _ => Test::Word(body.to_lowercase()),
            };
            terms.push(Term { negated, test });
        }
        Ok(Query { terms })
    }

    pub fn matches(&self, f: &Fields<'_>) -> bool {
        self.terms.iter().all(|t| t.test.holds(f) != t.negated)
    }
}

fn is_key(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "port"
            | "proto"
            | "addr"
            | "proc"
            | "user"
            | "container"
            | "state"
            | "pid"
            | "netns"
            | "exposure"
            | "drift"
    )
}

/// Splits on whitespace, keeping double-quoted runs together
/// (`proc:"my app"`).
fn split_terms(text: &str) -> Result<Vec<String>, String> {
    let mut terms = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    terms.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    if !cur.is_empty() {
        terms.push(cur);
    }
    Ok(terms)
}

fn parse_keyed(key: &str, value: &str) -> Result<Test, String> {
    if value.is_empty() {
        return Err(format!("`{key}:` needs a value"));
    }
    let lower = value.to_lowercase();
    Ok(match key {
        "port" => {
            let port = |s: &str| {
                s.parse::<u16>()
                    .map_err(|_| format!("`{s}` is not a port (0-65535)"))
            };
            match value.split_once("..") {
                Some((a, b)) => {
                    let (a, b) = (port(a)?, port(b)?);
                    if b < a {
                        return Err(format!("the port range {a}..{b} is empty"));
                    }
                    Test::Port(a, b)
                }
                None => {
                    let p = port(value)?;
                    Test::Port(p, p)
                }
            }
        }
        "proto" => match lower.as_str() {
            "tcp" | "udp" => Test::Proto(lower),
            _ => return Err(format!("`{value}` is no protocol (tcp or udp)")),
        },
        "addr" => match value.parse::<IpNet>() {
            Ok(net) => Test::Addr(net),
            Err(_) => match value.parse::<IpAddr>() {
                Ok(ip) => Test::Addr(IpNet::from(ip)),
                Err(_) => {
                    return Err(format!(
                        "`{value}` is no address or network (e.g. 127.0.0.1, 10.0.0.0/8, ::1)"
                    ));
                }
            },
        },
        "pid" => Test::Pid(
            value
                .parse()
                .map_err(|_| format!("`{value}` is not a pid"))?,
        ),
        "netns" => Test::Netns(
            value
                .parse()
                .map_err(|_| format!("`{value}` is not a namespace inode"))?,
        ),
        "proc" => Test::Proc(lower),
        "user" => Test::User(lower),
        "container" => Test::Container(lower),
        "state" => Test::State(lower),
        "exposure" => match lower.as_str() {
            "loopback" | "filtered" | "reachable" | "unknown" => Test::Exposure(lower),
            _ => {
                return Err(format!(
                    "`{value}` is no exposure (loopback, filtered, reachable or unknown)"
                ));
            }
        },
        "drift" => match lower.as_str() {
            "yes" => Test::Drift(true),
            "no" => Test::Drift(false),
            _ => return Err(format!("`{value}` is no drift (yes or no)")),
        },
        _ => return Err(format!("unknown filter key `{key}` (keys: {KEYS})")),
    })
}

fn has(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(needle)
}

impl Test {
    fn holds(&self, f: &Fields<'_>) -> bool {
        match self {
            Test::Word(w) => {
                f.address.is_some_and(|a| has(&a.to_string(), w))
                    || f.port.to_string().contains(w.as_str())
                    || has(f.proto, w)
                    || has(f.state, w)
                    || has(f.process, w)
                    || f.pid.to_string().contains(w.as_str())
                    || has(f.user, w)
                    || has(f.exe, w)
                    || has(f.cmdline, w)
            }
            Test::Port(a, b) => (*a..=*b).contains(&f.port),
            Test::Proto(p) => f.proto.eq_ignore_ascii_case(p),
            Test::Addr(net) => f.address.is_some_and(|a| {
                net.contains(&a)
                    || match (a, net) {
                        // An IPv4-mapped address matches an IPv4 network.
                        (IpAddr::V6(v6), IpNet::V4(_)) => v6
                            .to_ipv4_mapped()
                            .is_some_and(|v4| net.contains(&IpAddr::V4(v4))),
                        _ => false,
                    }
            }),
            Test::Proc(p) => has(f.process, p),
            Test::User(u) => has(f.user, u),
            Test::Container(c) => has(f.container, c),
            Test::State(s) => has(f.state, s),
            Test::Exposure(e) => f.exposure == e,
            Test::Drift(d) => f.drift == *d,
            Test::Pid(p) => f.pid == *p,
            Test::Netns(n) => f.netns == *n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Fields<'static> {
        Fields {
            address: Some("127.0.0.1".parse().unwrap()),
            port: 8080,
            proto: "tcp",
            state: "LISTEN",
            process: "node",
            pid: 4242,
            user: "alice",
            container: "docker:web",
            netns: 4026531840,
            exposure: "reachable",
            exe: "/usr/bin/node",
            cmdline: "node server.js --port 8080",
            drift: true,
        }
    }

    fn m(q: &str) -> bool {
        Query::parse(q).unwrap().matches(&row())
    }

    #[test]
    fn words_match_any_column_and_the_command_line() {
        assert!(m(""));
        assert!(m("NODE"));
        assert!(m("server.js"));
        assert!(m("808"));
        assert!(m("alice listen"));
        assert!(!m("nginx"));
        assert!(!m("node nginx"), "every term must hold");
    }

    #[test]
    fn keyed_terms_match_one_field() {
        assert!(m("port:8080"));
        assert!(m("port:8000..9000"));
        assert!(!m("port:1..80"));
        assert!(m("proto:TCP") && !m("proto:udp"));
        assert!(m("addr:127.0.0.0/8") && m("addr:127.0.0.1") && !m("addr:10.0.0.0/8"));
        assert!(m("proc:no") && m("user:ali") && m("container:web") && m("state:listen"));
        assert!(m("pid:4242") && !m("pid:4"));
        assert!(m("netns:4026531840"));
        assert!(m(r#"proc:"node""#));
    }

    #[test]
    fn bang_negates() {
        assert!(m("!nginx"));
        assert!(!m("!port:8080"));
        assert!(m("!addr:10.0.0.0/8 proto:tcp"));
    }

    #[test]
    fn mapped_addresses_match_ipv4_networks_and_v6_words_work() {
        let mapped = Fields {
            address: Some("::ffff:127.0.0.1".parse().unwrap()),
            ..row()
        };
        assert!(Query::parse("addr:127.0.0.0/8").unwrap().matches(&mapped));
        let v6 = Fields {
            address: Some("::1".parse().unwrap()),
            ..row()
        };
        assert!(Query::parse("::1").unwrap().matches(&v6));
        assert!(Query::parse("addr:::1").unwrap().matches(&v6));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |q: &str| Query::parse(q).unwrap_err();
        assert_eq!(
            err("prot:tcp"),
            "unknown filter key `prot` (keys: port, proto, addr, proc, user, container, state, pid, netns, exposure, drift)"
        );
        assert_eq!(err("port:99999"), "`99999` is not a port (0-65535)");
        assert_eq!(err("port:90..80"), "the port range 90..80 is empty");
        assert_eq!(err("proto:sctp"), "`sctp` is no protocol (tcp or udp)");
        assert!(err("addr:300.1.1.1").starts_with("`300.1.1.1` is no address"));
        assert_eq!(err("port:"), "`port:` needs a value");
        assert_eq!(err("!"), "`!` must be followed by a term");
        assert_eq!(err(r#"proc:"open"#), "a quote is not closed");
    }
}
