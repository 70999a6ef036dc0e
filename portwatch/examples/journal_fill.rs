//! Writes a synthetic history into a journal through the library's writer
//! (what the daemon runs), and says how fast: `cargo xtask bench --only
//! journal` fills one with ten million events, then times `history --at`
//! on it.
//!
//! ```sh
//! cargo build --release --example journal_fill
//! target/release/examples/journal_fill /var/tmp/bench.db 10000000
//! ```
//!
//! Listeners open over the 30 days before now, one every 0.5 s: most live
//! seconds, some hours, a few days; 500 processes of 50 programs (shared
//! contexts, as a real host's are) on ports 1024-65023. Prints one JSON
//! object: events, the time taken, the file's size, and the span.

use std::{sync::Arc, time::Instant};

use chrono::{Duration, Utc};
use portwatch::{
    event::{Change, Listener, PortEvent, Proto, Source},
    journal::{Journal, JournalConfig},
    monitor::MonitorEvent,
    owner::OwnerContext,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(Ok(events))) = (args.next(), args.next().map(|n| n.parse::<u64>()))
    else {
        eprintln!("usage: journal_fill PATH EVENTS");
        std::process::exit(2);
    };
    let config = JournalConfig {
        path: path.clone().into(),
        retention: None,
        max_bytes: None,
        group: None,
    };
    let mut journal = match Journal::open(&config) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("journal_fill: {e}");
            std::process::exit(1);
        }
    };
    let contexts: Vec<Arc<OwnerContext>> = (0..50)
        .map(|i| {
            Arc::new(OwnerContext {
                exe: Some(format!("/usr/bin/server{i}")),
                cwd: Some(format!("/srv/app{i}")),
                ..OwnerContext::default()
            })
        })
        .collect();
    let holds = events / 2;
    let start = Utc::now() - Duration::days(30);
    let step_ms = (30 * 86_400_000 / holds.max(1)).max(1) as i64;
    let began = Instant::now();
    let mut sent = 0u64;
    for i in 0..holds {
        let opened = start + Duration::milliseconds(i as i64 * step_ms);
        // Mostly seconds; every 10th hours; every 100th days.
        let lived = match i % 100 {
            0 => Duration::days(1 + (i % 3) as i64),
            n if n % 10 == 0 => Duration::hours(1 + (i % 5) as i64),
            _ => Duration::milliseconds(200 + (i % 60_000) as i64),
        };
        let pid = 10_000 + (i % 500) as u32;
        let listener = Listener {
            pid,
            uid: 1000,
            comm: format!("server{}", pid % 50),
            netns: 4026531840,
            context: Some(contexts[(pid % 50) as usize].clone()),
            exposure: Some(portwatch::exposure::Exposure::Loopback),
            ..Listener::new(
                Proto::Tcp,
                "127.0.0.1"
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                1024 + (i % 64_000) as u16,
            )
        };
        for (change, ts) in [(Change::Opened, opened), (Change::Closed, opened + lived)] {
            journal.record(&MonitorEvent::Port(PortEvent {
                change,
                listener: listener.clone(),
                ts,
                source: Source::Ebpf,
            }));
            sent += 1;
        }
        // The monitor never waits for the writer; a filler may: it keeps
        // a queue's worth in flight at most, so nothing is dropped.
        while sent - journal.stats().written > (portwatch::journal::QUEUE / 2) as u64 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    // Until the writer has committed every one.
    while journal.stats().written + journal.stats().lost < sent {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let took = began.elapsed();
    let stats = journal.stats();
    drop(journal);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{{\"events\":{sent},\"written\":{},\"lost\":{},\"ms\":{},\"bytes\":{bytes},\"first\":\"{}\",\"step_ms\":{step_ms}}}",
        stats.written,
        stats.lost,
        took.as_millis(),
        portwatch::wire::format_ts(&start),
    );
}
