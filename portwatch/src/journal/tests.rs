use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, TimeZone as _, Utc};

use super::{
    Journal, JournalConfig, JournalError,
    history::{History, Query},
};
use crate::{
    event::{Change, Listener, PortEvent, Proto, Source},
    monitor::{MonitorEvent, Ready},
};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pw-journal-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(d: &std::path::Path) -> JournalConfig {
    JournalConfig {
        path: d.join("journal.db"),
        retention: None,
        max_bytes: None,
        group: None,
    }
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).single().unwrap()
}

fn l(port: u16, pid: u32, comm: &str) -> Listener {
    Listener {
        pid,
        comm: comm.into(),
        netns: 7,
        ..Listener::new(Proto::Tcp, "0.0.0.0".parse().unwrap(), port)
    }
}

fn port(change: Change, listener: Listener, ts: DateTime<Utc>, source: Source) -> MonitorEvent {
    MonitorEvent::Port(PortEvent {
        change,
        listener,
        ts,
        source,
    })
}

fn ready(ts: DateTime<Utc>) -> MonitorEvent {
    MonitorEvent::Ready(Ready {
        backend: "ebpf".into(),
        listeners: 0,
        ts,
    })
}

fn holders(h: &History, at: DateTime<Utc>, q: &Query) -> Vec<String> {
    h.at(at, q)
        .unwrap()
        .into_iter()
        .map(|h| format!("{}:{}", h.comm, h.port))
        .collect()
}

#[test]
fn who_held_a_port_at_each_instant() {
    let d = dir("at");
    let mut j = Journal::open(&config(&d)).unwrap();
    j.record(&ready(t(0)));
    j.record(&port(Change::Opened, l(4444, 1, "a"), t(10), Source::Ebpf));
    j.record(&port(Change::Closed, l(4444, 1, "a"), t(20), Source::Ebpf));
    j.record(&port(Change::Opened, l(4444, 2, "b"), t(20), Source::Ebpf));
    j.record(&port(Change::Closed, l(4444, 2, "b"), t(30), Source::Ebpf));
    j.record(&port(Change::Opened, l(22, 3, "sshd"), t(5), Source::Ebpf));
    drop(j);
    let h = History::open(&d.join("journal.db")).unwrap();
    let q = Query {
        port: Some(4444),
        ..Query::default()
    };
    assert_eq!(holders(&h, t(15), &q), ["a:4444"]);
    // A close at T: the one that opened at T holds it.
    assert_eq!(holders(&h, t(20), &q), ["b:4444"]);
    assert_eq!(holders(&h, t(25), &q), ["b:4444"]);
    assert!(holders(&h, t(35), &q).is_empty());
    assert!(holders(&h, t(5), &q).is_empty());
    assert_eq!(holders(&h, t(35), &Query::default()), ["sshd:22"]);
    // Opens and closes in order, with the hold's times.
    let mut seen = Vec::new();
    h.between(Some(t(10)), Some(t(25)), &q, |c| {
        seen.push(format!(
            "{} {} {}",
            c.ts.timestamp() - t(0).timestamp(),
            c.opened,
            c.hold.comm
        ));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, ["10 true a", "20 false a", "20 true b"]);
    let recent = h.recent(Proto::Tcp, 4444, 10).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].comm, "b");
    assert_eq!(recent[0].closed, Some(t(30)));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_restart_takes_up_what_is_still_open_and_closes_the_rest_unseen() {
    let d = dir("restart");
    let mut j = Journal::open(&config(&d)).unwrap();
    j.record(&port(Change::Opened, l(80, 1, "web"), t(0), Source::Ebpf));
    j.record(&port(Change::Opened, l(81, 2, "gone"), t(0), Source::Ebpf));
    drop(j);
    let mut j = Journal::open(&config(&d)).unwrap();
    j.record(&port(
        Change::Opened,
        l(80, 1, "web"),
        t(100),
        Source::Baseline,
    ));
    j.record(&ready(t(100)));
    drop(j);
    let h = History::open(&d.join("journal.db")).unwrap();
    let all = h.at(t(50), &Query::default()).unwrap();
    assert_eq!(all.len(), 2);
    let now = h.at(t(150), &Query::default()).unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].opened, t(0), "the row of the first run goes on");
    assert!(!now[0].opened_before);
    let gone = h.recent(Proto::Tcp, 81, 1).unwrap();
    assert_eq!(gone[0].closed, Some(t(100)));
    assert!(gone[0].closed_unseen);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn old_rows_go_by_age_and_by_size_oldest_first() {
    let d = dir("prune");
    let mut j = Journal::open(&config(&d)).unwrap();
    let now = Utc::now();
    let old = now - chrono::Duration::days(40);
    j.record(&port(Change::Opened, l(1, 1, "old"), old, Source::Ebpf));
    j.record(&port(Change::Closed, l(1, 1, "old"), old, Source::Ebpf));
    j.record(&port(Change::Opened, l(2, 2, "oldopen"), old, Source::Ebpf));
    for i in 0..20_000u32 {
        let ts =
            now - chrono::Duration::seconds(10_000) + chrono::Duration::milliseconds(i64::from(i));
        j.record(&port(
            Change::Opened,
            l(3000 + (i % 1000) as u16, 100 + i, "churn"),
            ts,
            Source::Ebpf,
        ));
        j.record(&port(
            Change::Closed,
            l(3000 + (i % 1000) as u16, 100 + i, "churn"),
            ts,
            Source::Ebpf,
        ));
    }
    drop(j);
    let rows = |d: &std::path::Path| {
        History::open(&d.join("journal.db"))
            .unwrap()
            .extent()
            .unwrap()
            .0
    };
    assert_eq!(rows(&d), 20_002);
    // 30 days: the old closed row goes; the old one still open stays.
    let j = Journal::open(&JournalConfig {
        retention: Some(Duration::from_secs(30 * 86_400)),
        ..config(&d)
    })
    .unwrap();
    drop(j);
    let h = History::open(&d.join("journal.db")).unwrap();
    assert!(h.recent(Proto::Tcp, 1, 1).unwrap().is_empty());
    assert_eq!(h.recent(Proto::Tcp, 2, 1).unwrap().len(), 1);
    assert_eq!(rows(&d), 20_001);
    drop(h);
    let size = std::fs::metadata(d.join("journal.db")).unwrap().len();
    let j = Journal::open(&JournalConfig {
        max_bytes: Some(size / 4),
        ..config(&d)
    })
    .unwrap();
    drop(j);
    let left = rows(&d);
    assert!(left < 20_001 / 3, "{left} rows left");
    let h = History::open(&d.join("journal.db")).unwrap();
    // The newest are kept, and what is open.
    let newest = h.recent(Proto::Tcp, 3999, 1).unwrap();
    assert_eq!(newest[0].pid, 100 + 19_999);
    assert_eq!(h.recent(Proto::Tcp, 2, 1).unwrap().len(), 1);
    let after = std::fs::metadata(d.join("journal.db")).unwrap().len();
    assert!(after < size / 2, "{size} -> {after}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn what_is_no_journal_or_not_ours_is_refused() {
    let d = dir("refuse");
    let other = d.join("other.db");
    std::fs::write(&other, "not sqlite at all, just text that is long enough to be a header....................................................................").unwrap();
    assert!(matches!(
        History::open(&other),
        Err(JournalError::NotAJournal { .. })
    ));
    assert!(matches!(
        History::open(&d.join("none.db")),
        Err(JournalError::Missing(_))
    ));
    let planted = d.join("planted.db");
    drop(
        Journal::open(&JournalConfig {
            path: planted.clone(),
            ..config(&d)
        })
        .unwrap(),
    );
    std::os::unix::fs::chown(&planted, Some(65534), None).unwrap();
    assert!(matches!(
        History::open(&planted),
        Err(JournalError::NotOwned { uid: 65534, .. })
    ));
    // The writer does not write another user's file either.
    assert!(
        Journal::open(&JournalConfig {
            path: planted,
            ..config(&d)
        })
        .is_err()
    );
    // Nor through a link.
    std::os::unix::fs::symlink(d.join("target.db"), d.join("link.db")).unwrap();
    assert!(
        Journal::open(&JournalConfig {
            path: d.join("link.db"),
            ..config(&d)
        })
        .is_err()
    );
    assert!(!d.join("target.db").exists());
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn files_another_user_could_plant_beside_it_are_refused() {
    let d = dir("side");
    // A -wal of another user's beside the journal would be read as rows.
    std::fs::write(d.join("journal.db-wal"), "forged").unwrap();
    std::os::unix::fs::chown(d.join("journal.db-wal"), Some(65534), None).unwrap();
    let e = Journal::open(&config(&d))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("another user may have put it there"), "{e}");
    std::fs::remove_file(d.join("journal.db-wal")).unwrap();
    // A sticky directory everyone writes is no place for it.
    let tmp = d.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let e = Journal::open(&JournalConfig {
        path: tmp.join("j.db"),
        ..config(&d)
    })
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("writable by other users"), "{e}");
    // A file of root's that is no journal (a typo) is left as it was.
    let other = d.join("shadow");
    std::fs::write(&other, "root:*:1:0:99999:7:::\n").unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let e = Journal::open(&JournalConfig {
        path: other.clone(),
        group: Some(1),
        ..config(&d)
    })
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("no SQLite file"), "{e}");
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(&other).unwrap();
    assert_eq!((m.mode() & 0o777, m.gid()), (0o600, 0));
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        "root:*:1:0:99999:7:::\n"
    );
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_clock_stepped_back_and_a_reused_pid_keep_the_journal_right() {
    let d = dir("clock");
    let mut j = Journal::open(&config(&d)).unwrap();
    j.record(&port(Change::Opened, l(80, 1, "web"), t(100), Source::Ebpf));
    // Closed "before" it opened: the clock stepped back.
    j.record(&port(Change::Closed, l(80, 1, "web"), t(50), Source::Ebpf));
    j.record(&port(Change::Opened, l(81, 2, "old"), t(100), Source::Ebpf));
    drop(j);
    let mut j = Journal::open(&config(&d)).unwrap();
    assert_eq!(j.stats().lost, 0);
    // After a restart, pid 2 on port 81 is another program now.
    j.record(&port(
        Change::Opened,
        l(81, 2, "new"),
        t(200),
        Source::Baseline,
    ));
    j.record(&ready(t(200)));
    drop(j);
    let h = History::open(&d.join("journal.db")).unwrap();
    let rows = h.recent(Proto::Tcp, 81, 10).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].comm.as_str(), rows[0].opened_before),
        ("new", true)
    );
    assert!(rows[1].closed_unseen, "the old one closed unseen");
    assert_eq!(h.recent(Proto::Tcp, 80, 1).unwrap()[0].closed, Some(t(50)));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn the_journal_keeps_no_command_line() {
    let d = dir("cmdline");
    let mut j = Journal::open(&config(&d)).unwrap();
    let mut with = l(80, 1, "web");
    with.context = Some(std::sync::Arc::new(crate::owner::OwnerContext {
        exe: Some("/usr/bin/web".into()),
        cmdline: Some("web --token hunter2".into()),
        ..Default::default()
    }));
    j.record(&port(Change::Opened, with, t(0), Source::Ebpf));
    drop(j);
    let bytes = std::fs::read(d.join("journal.db")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("/usr/bin/web"), "the context was written");
    assert!(!text.contains("hunter2"), "its arguments were not");
    std::fs::remove_dir_all(d).unwrap();
}
