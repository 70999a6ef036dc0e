//! The terminal UI's numbers against the kernel's own tables (`ss`), its
//! first screen with thousands of listeners, and Esc on a filter: the real
//! binary in tmux, watching one helper's tree (`--pid`) so that other
//! tests' sockets do not count.

use std::{process::Command, time::Duration};

use crate::{
    support::{BIN, Helper},
    tui::{READY, Tmux},
};

/// The TCP listeners and bound UDP sockets of `pid`, as `ss` counts them.
fn ss_counts(pid: u32) -> (usize, usize) {
    let count = |flags: &str| {
        let out = Command::new("ss")
            .arg(flags)
            .output()
            .expect("ss (iproute2) is needed by the tests");
        let owner = format!("pid={pid},");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&owner))
            .count()
    };
    (count("-Hltnp"), count("-Hlunp"))
}

/// The open rows the title counts: `… · listeners · N …`.
fn title_count(screen: &str) -> Option<usize> {
    let title = screen.lines().next()?;
    let (_, rest) = title.split_once("listeners · ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The port of the first row under the header.
fn first_row_port(screen: &str) -> Option<u16> {
    let row = screen.lines().nth(2)?;
    row.split(|c: char| c.is_whitespace() || c == '│')
        .filter(|t| !t.is_empty())
        .nth(1)?
        .parse()
        .ok()
}

/// The title and the status bar say what `ss` says, before and after a
/// hundred listeners close; rows off screen show where the view is.
#[test]
fn the_title_and_status_bar_count_what_the_kernel_has() {
    let mut helper = Helper::script("many.py", &["300", "5"]);
    helper.read_value("ready");
    let pid = helper.pid();
    let (tcp, udp) = ss_counts(pid);
    assert_eq!((tcp, udp), (300, 5), "the helper's sockets");
    let tui = Tmux::start("counts", &format!("{BIN} --pid {pid}"));
    let counted = |tcp: usize, udp: usize| {
        move |s: &str| {
            title_count(s) == Some(tcp + udp)
                && s.contains(&format!("{tcp} tcp listening, {udp} udp bound"))
        }
    };
    let screen = tui.wait_until("the counts of ss", READY, counted(tcp, udp));
    assert!(screen.contains(&format!(" of {} ", tcp + udp)), "{screen}");

    helper.send("close 100");
    helper.read_value("closed");
    let (tcp, udp) = ss_counts(pid);
    assert_eq!((tcp, udp), (200, 5));
    let screen = tui.wait_until(
        "the counts of ss after 100 closed",
        Duration::from_secs(10),
        counted(tcp, udp),
    );
    // The closed rows, while they linger, are counted apart.
    let title = screen.lines().next().unwrap_or_default();
    assert!(
        !title.contains("closed") || title.contains("+100 closed"),
        "{screen}"
    );
}

/// With 2,000 listeners already there, the first screen is the top of the
/// table (sorted by port), with the scroll position.
#[test]
fn with_thousands_of_listeners_the_view_opens_at_the_top() {
    let mut helper = Helper::script("many.py", &["2000", "0"]);
    let lowest: u16 = helper.read_value("ready").parse().unwrap();
    let tui = Tmux::start("top", &format!("{BIN} --pid {}", helper.pid()));
    let screen = tui.wait_until("all 2000 rows", READY, |s| title_count(s) == Some(2000));
    assert_eq!(first_row_port(&screen), Some(lowest), "{screen}");
    assert!(screen.contains(" of 2000 "), "{screen}");
    assert!(screen.contains("─ 1-"), "{screen}");
}

/// A filter stays shown with its match count after Enter; Esc clears it.
#[test]
fn esc_clears_the_filter() {
    let mut helper = Helper::script("many.py", &["3", "0"]);
    let lowest: u16 = helper.read_value("ready").parse().unwrap();
    let tui = Tmux::start("esc", &format!("{BIN} --pid {}", helper.pid()));
    tui.wait_until("three rows", READY, |s| title_count(s) == Some(3));
    tui.send(&["/"]);
    tui.send(&["-l", &format!("port:{lowest}")]);
    tui.send(&["Enter"]);
    let screen = tui.wait_for(
        &format!("filter: 'port:{lowest}'  1 match"),
        Duration::from_secs(10),
    );
    assert_eq!(title_count(&screen), Some(1), "{screen}");
    assert_eq!(first_row_port(&screen), Some(lowest), "{screen}");
    tui.send(&["Escape"]);
    tui.wait_until("every row, no filter", Duration::from_secs(10), |s| {
        title_count(s) == Some(3) && !s.contains("filter:")
    });
}
