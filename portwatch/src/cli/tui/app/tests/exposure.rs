//! The EXPOSURE column: each row's verdict, kept current by
//! exposure_changed events, filtered by `exposure:...`, and explained in
//! the details.

use portwatch::{exposure::Exposure, monitor::ExposureChange};

use super::*;

fn judged(port: u16, exposure: Exposure) -> Listener {
    Listener {
        exposure: Some(exposure),
        ..listener(port, u32::from(port), "srv", u64::from(port))
    }
}

fn reachable() -> Exposure {
    Exposure::Reachable {
        reachable_via: vec!["eth0".into()],
    }
}

#[test]
fn the_column_shows_the_verdict_and_follows_its_changes() {
    let mut a = app();
    for (port, e) in [(7001, Exposure::Loopback), (7002, Exposure::Filtered)] {
        a.on_monitor(
            event(Change::Opened, judged(port, e), Source::Baseline, t0()),
            &mut name,
        );
    }
    let s = screen(&mut a);
    let row = |s: &str, port: u16| {
        s.lines()
            .find(|l| l.contains(&format!(" {port} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(s.lines().nth(1).unwrap().contains("EXPOSURE"), "{s}");
    assert!(row(&s, 7001).contains("loopback"), "{s}");
    assert!(row(&s, 7002).contains("filtered"), "{s}");

    // A rule opens 7002.
    a.on_monitor(
        MonitorEvent::ExposureChanged(ExposureChange {
            listener: judged(7002, reachable()),
            before: Exposure::Filtered,
            before_published: Vec::new(),
            ts: t0(),
        }),
        &mut name,
    );
    let s = screen(&mut a);
    assert!(row(&s, 7002).contains("reachable"), "{s}");
    assert!(
        s.contains("filtered -> reachable via eth0"),
        "the message line says so: {s}"
    );

    // Only what the outside reaches.
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "exposure:reachable");
    assert_eq!(ports(&mut a), [7002]);
}

#[test]
fn an_exposure_that_is_no_verdict_is_refused_in_one_sentence() {
    let mut a = app();
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "exposure:public");
    let (message, problem) = a.message();
    assert!(problem);
    assert_eq!(
        message,
        "`public` is no exposure (loopback, filtered, reachable or unknown)"
    );
}
