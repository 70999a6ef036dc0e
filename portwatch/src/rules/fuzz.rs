//! Generated rule files against the one path `alerts validate`, the daemon
//! and its reloads share (`store::load` reads the bytes, then
//! `load_bytes`): whatever validates must load and evaluate any stream of
//! events without a panic. The numbers range over everything JSON and the
//! types allow; the strings include control bytes and regex syntax.

use std::{net::SocketAddr, path::Path};

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{eval::Evaluator, validate::load_bytes};
use crate::{
    event::{Change, Listener, PortEvent, Proto, Source},
    report::{Connection, ProcessSample},
};

/// Any u64, with the edges and the values that once broke the daemon
/// (cooldowns of 1e13 and 1e16 seconds) made likely.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(65535),
        Just(65536),
        Just(10_000_000_000_000),
        Just(10_000_000_000_000_000),
        Just(i64::MAX as u64),
        Just(u64::MAX),
        any::<u64>(),
        0u64..100_000,
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-1.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(1e300),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()),
    ]
}

/// Text: plain names, regex syntax (valid or not, look-around, huge
/// repetitions) and control bytes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{0,12}",
        "[\\^$.*+?()\\[\\]{}|\\\\a-z0-9]{0,16}",
        Just("(?=x)".to_string()),
        Just("a{1000}{1000}".to_string()),
        Just("\u{1b}[2J\u{7}".to_string()),
        any::<String>(),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        number().prop_map(|p| json!({"type": "PortOpened", "params": {"port": p}})),
        number().prop_map(|p| json!({"type": "PortClosed", "params": {"port": p}})),
        (number(), number()).prop_map(|(a, b)| {
            json!({"type": "PortRangeActivity", "params": {"start_port": a, "end_port": b}})
        }),
        (text(), any::<bool>()).prop_map(|(p, x)| {
            json!({"type": "ExternalConnection", "params": {"ip_pattern": p, "exclude_private": x}})
        }),
        (text(), float()).prop_map(|(p, t)| {
            json!({"type": "ProcessCpuThreshold", "params": {"process_pattern": p, "threshold_percent": t}})
        }),
        (text(), number()).prop_map(|(p, t)| {
            json!({"type": "ProcessMemoryThreshold", "params": {"process_pattern": p, "threshold_mb": t}})
        }),
        Just(json!({"type": "UnknownProcessListening", "params": null})),
        (
            prop::collection::vec(
                prop_oneof![Just("reachable"), Just("filtered"), Just("loopback"), Just("unknown")],
                0..3
            ),
            prop::option::of(prop::collection::vec(number(), 0..3)),
        )
            .prop_map(|(e, p)| {
                json!({"type": "ExposedListener", "params": {"exposure": e, "ports": p}})
            }),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    (
        prop_oneof![text(), Just("r".to_string())],
        text(),
        condition(),
        any::<bool>(),
        prop_oneof![Just("Info"), Just("Warning"), Just("Critical")],
        number(),
    )
        .prop_map(|(id, name, condition, enabled, severity, cooldown)| {
            json!({
                "id": id, "name": name, "condition": condition, "enabled": enabled,
                "severity": severity, "cooldown_seconds": cooldown,
            })
        })
}

fn file() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(rule(), 0..6),
        proptest::option::of(proptest::collection::vec(text(), 0..4)),
        0usize..4,
    )
        .prop_map(|(rules, known, cut)| {
            let mut v = json!({ "rules": rules });
            if let Some(k) = known {
                v["known_processes"] = json!(k);
            }
            let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
            // Now and then a file cut short.
            if cut == 0 {
                bytes.truncate(bytes.len() / 2);
            }
            bytes
        })
}

/// What the daemon feeds the evaluator: port events, connections and
/// samples, at times that jump around (a cooldown is a difference of them).
#[derive(Clone, Debug)]
enum Input {
    Port(Change, u16, u32, i64),
    Connection(u16, [u8; 4], bool, i64),
    Sample(u32, f64, u64, i64),
}

fn input() -> impl Strategy<Value = Input> {
    let time = prop_oneof![Just(0i64), -1_000_000i64..1_000_000, Just(1 << 40)];
    prop_oneof![
        (any::<bool>(), any::<u16>(), any::<u32>(), time.clone()).prop_map(|(o, p, pid, t)| {
            Input::Port(if o { Change::Opened } else { Change::Closed }, p, pid, t)
        }),
        (any::<u16>(), any::<[u8; 4]>(), any::<bool>(), time.clone())
            .prop_map(|(p, ip, out, t)| Input::Connection(p, ip, out, t)),
        (any::<u32>(), float(), any::<u64>(), time)
            .prop_map(|(pid, c, r, t)| Input::Sample(pid, c, r, t)),
    ]
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
        + TimeDelta::try_seconds(seconds).unwrap_or_default()
}

fn feed(evaluator: &mut Evaluator, input: &Input) {
    match *input {
        Input::Port(change, port, pid, t) => {
            let listener = Listener {
                pid,
                comm: format!("p{}", pid % 7),
                netns: 1,
                ..Listener::new(Proto::Tcp, [127, 0, 0, 1].into(), port)
            };
            evaluator.on_port(&PortEvent {
                change,
                listener,
                ts: at(t),
                source: Source::Ebpf,
            });
        }
        Input::Connection(port, ip, outbound, t) => {
            evaluator.on_connection(&Connection {
                pid: 1,
                comm: "c".into(),
                local: SocketAddr::from(([127, 0, 0, 1], port)),
                remote: SocketAddr::from((ip, 443)),
                outbound,
                ts: at(t),
            });
        }
        Input::Sample(pid, cpu, rss, t) => {
            evaluator.on_sample(&ProcessSample {
                pid,
                comm: format!("p{}", pid % 7),
                cpu_percent: cpu,
                rss_bytes: rss,
                ts: at(t),
            });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn whatever_validates_evaluates_without_a_panic(
        bytes in file(),
        inputs in proptest::collection::vec(input(), 0..40),
    ) {
        let Ok(rules) = load_bytes(&bytes, Path::new("generated.json")) else {
            return Ok(());
        };
        let mut evaluator = Evaluator::new(rules.clone(), ["p0".to_string()]);
        for i in &inputs {
            feed(&mut evaluator, i);
        }
        // A reload of the same file, mid-stream, as the daemon does.
        evaluator.replace_rules(rules);
        for i in &inputs {
            feed(&mut evaluator, i);
        }
    }
}
