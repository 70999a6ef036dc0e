//! Loss and resync: a listener storm through a tiny ring buffer drops
//! events, and the reported state still converges to what procfs shows.

use std::{
    collections::BTreeSet,
    net::TcpListener,
    time::{Duration, Instant},
};

use crate::support::{EVENT_TIMEOUT, Helper, Watcher, is_event, listening_of};

#[test]
fn a_storm_that_overflows_the_ring_buffer_converges_to_procfs() {
    let watcher = Watcher::start(&["--ring-buffer", "4096", "--resync-interval", "0"]);
    // 4 processes x 1,000 listeners, every 7th kept open: 8,000 events into
    // a buffer that holds about 45.
    let mut storm = Helper::script("storm.py", &["4", "1000", "7"]);
    let mut workers = Vec::new();
    for _ in 0..4 {
        workers.push(storm.read_value("done").parse::<u32>().unwrap());
    }
    let truth: BTreeSet<(String, u16)> = workers.iter().flat_map(|&p| listening_of(p)).collect();
    assert_eq!(
        truth.len(),
        4 * 143,
        "the workers hold their kept listeners"
    );

    // Follow the reported state until it equals the truth after a resync.
    let mut state: BTreeSet<(String, u16)> = BTreeSet::new();
    let mut drops = 0;
    let mut resyncs = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut converged = false;
    let mut all = Vec::new();
    while Instant::now() < deadline && !converged {
        let Some(v) = watcher.next_within(Duration::from_millis(500)) else {
            continue;
        };
        all.push(v.clone());
        let pid = v["pid"].as_u64().unwrap_or(0) as u32;
        match v["event"].as_str() {
            Some("opened") if workers.contains(&pid) => {
                state.insert((
                    v["address"].as_str().unwrap().into(),
                    v["port"].as_u64().unwrap() as u16,
                ));
            }
            Some("closed") if workers.contains(&pid) => {
                state.remove(&(
                    v["address"].as_str().unwrap().into(),
                    v["port"].as_u64().unwrap() as u16,
                ));
            }
            Some("resync") => {
                resyncs += 1;
                drops = v["drops"].as_u64().unwrap();
                converged = state == truth;
            }
            _ => {}
        }
    }
    assert!(drops > 0, "the storm was meant to overflow the ring buffer");
    assert!(resyncs > 0, "drops trigger a resync");
    let missing: Vec<_> = truth.difference(&state).take(3).collect();
    let extra: Vec<_> = state.difference(&truth).take(3).collect();
    let resync_lines: Vec<_> = all.iter().filter(|v| v["event"] == "resync").collect();
    let history: Vec<_> = missing
        .first()
        .or(extra.first())
        .map(|(_, port)| all.iter().filter(|v| v["port"] == *port).collect())
        .unwrap_or_default();
    assert!(
        converged,
        "state never matched procfs: {} reported vs {} real; missing {missing:?}, extra {extra:?}; resyncs {resync_lines:?}; history of the first missing or extra: {history:?}",
        state.len(),
        truth.len()
    );
    // Nothing is lost once converged: each new listener is reported opened,
    // then closed, one at a time (the 4 KiB buffer is not the test here).
    for _ in 0..20 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        watcher.expect("an open after convergence", EVENT_TIMEOUT, |v| {
            is_event(v, "opened", "127.0.0.1", port)
        });
        drop(l);
        watcher.expect("a close after convergence", EVENT_TIMEOUT, |v| {
            is_event(v, "closed", "127.0.0.1", port)
        });
    }
    storm.close_stdin();
    let (status, _, rest) = watcher.stop();
    assert!(status.success());
    drop(rest);
}

#[test]
fn resync_interval_reports_nothing_when_nothing_was_lost() {
    let watcher = Watcher::start(&["--resync-interval", "200ms"]);
    let resync = watcher.expect("an interval resync", Duration::from_secs(5), |v| {
        v["event"] == "resync"
    });
    assert_eq!(resync["reason"], "interval");
    assert_eq!(
        (resync["opened"].as_u64(), resync["closed"].as_u64()),
        (Some(0), Some(0)),
        "{resync}"
    );
}
