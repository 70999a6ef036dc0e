//! Every number on screen is the state it describes, the view opens at the
//! top and keeps its row, and nothing a newcomer needs is hidden or cut.

use ratatui::style::Color;

use super::*;
use crate::tui::draw::FRESH;

/// Opens `ports` live, each owned by its own pid, at `t0`.
fn open_all(a: &mut App, ports: impl IntoIterator<Item = u16>, source: Source) {
    for port in ports {
        let l = listener(
            port,
            10_000 + u32::from(port),
            "burst",
            100_000 + u64::from(port),
        );
        a.on_monitor(event(Change::Opened, l, source, t0()), &mut name);
    }
}

fn close_all(a: &mut App, ports: impl IntoIterator<Item = u16>) {
    for port in ports {
        let l = listener(
            port,
            10_000 + u32::from(port),
            "burst",
            100_000 + u64::from(port),
        );
        a.on_monitor(event(Change::Closed, l, Source::Ebpf, t0()), &mut name);
    }
}

/// The item rows on screen, by port, top to bottom.
fn ports_on_screen(screen: &str) -> Vec<u16> {
    screen
        .lines()
        .filter(|l| l.trim_start_matches('"').starts_with('│'))
        .filter_map(|l| {
            l.split(|c: char| c.is_whitespace() || c == '│' || c == '"')
                .filter(|t| !t.is_empty())
                .nth(1)?
                .parse()
                .ok()
        })
        .collect()
}

/// The screen's first line: the table's title.
fn title(screen: &str) -> &str {
    screen.lines().next().unwrap()
}

/// A burst opens, End goes to the last row, the burst closes: every row
/// left is on screen again, the title counts open rows (closed ones
/// apart), and a scroll position shows while rows are off screen.
#[test]
fn a_burst_that_closes_while_scrolled_gives_the_screen_back() {
    let mut a = app();
    open_all(&mut a, [65000], Source::Baseline);
    let burst = 9000..9100;
    open_all(&mut a, burst.clone(), Source::Ebpf);
    press(&mut a, KeyCode::End);
    let scrolled = screen(&mut a);
    assert!(title(&scrolled).contains("listeners · 105 "), "{scrolled}");
    assert!(scrolled.contains(" 87-105 of 105 "), "{scrolled}");
    assert_eq!(ports_on_screen(&scrolled).last(), Some(&65000));

    close_all(&mut a, burst.clone());
    let closing = screen(&mut a);
    insta::assert_snapshot!("burst_closing", closing);
    assert!(
        title(&closing).contains("listeners · 5 +100 closed"),
        "{closing}"
    );

    a.on_tick(t0() + LINGER, false);
    let after = screen(&mut a);
    insta::assert_snapshot!("burst_closed", after);
    assert_eq!(ports_on_screen(&after), [22, 53, 80, 8080, 65000]);
    assert!(title(&after).contains("listeners · 5 "), "{after}");
    assert!(!after.contains(" of "), "no scroll position when all fit");
    // The selection stayed on its row.
    assert_eq!(a.selected_item().unwrap().local.port(), 65000);
}

/// 5,000 listeners arrive in the baseline in no order: the first screen is
/// the top of the sorted table, with where it is in the whole.
#[test]
fn five_thousand_rows_open_at_the_top() {
    let mut a = App::new(false, "", t0());
    // A fixed shuffle of 5,000 ports from 20000, with 22 in the middle.
    let mut ports: Vec<u16> = (0..5000u16).map(|i| 20000 + i).collect();
    let mut x: u32 = 12345;
    for i in (1..ports.len()).rev() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        ports.swap(i, (x as usize >> 8) % (i + 1));
    }
    ports[2500] = 22;
    // The runtime draws frames while the baseline streams in: the first
    // one after a single row.
    let (first, rest) = ports.split_at(1);
    for chunk in std::iter::once(first).chain(rest.chunks(500)) {
        open_all(&mut a, chunk.iter().copied(), Source::Baseline);
        screen(&mut a);
    }
    a.on_monitor(
        MonitorEvent::Ready(Ready {
            backend: "ebpf".into(),
            listeners: 5000,
            ts: t0(),
        }),
        &mut name,
    );
    a.status.backend = "ebpf".into();
    let first = screen(&mut a);
    insta::assert_snapshot!("five_thousand_first_screen", first);
    let shown = ports_on_screen(&first);
    assert_eq!(shown[..3], [22, 20000, 20001], "{first}");
    assert!(first.contains(" 1-19 of 5000 "), "{first}");
    assert!(title(&first).contains("listeners · 5000 "), "{first}");
    assert!(first.contains("5000 tcp listening, 0 udp bound"), "{first}");
    // Rows that sort above arrive later: the view is still at the top.
    open_all(&mut a, [10, 11], Source::Ebpf);
    assert_eq!(ports_on_screen(&screen(&mut a))[..3], [10, 11, 22]);
}

/// A row the user chose stays selected and on screen (by identity) while
/// rows arrive above it and rows around it close.
#[test]
fn the_chosen_row_stays_selected_through_bursts() {
    let mut a = app();
    for _ in 0..3 {
        press(&mut a, KeyCode::Down);
    }
    assert_eq!(a.selected_item().unwrap().local.port(), 8080);
    open_all(&mut a, 1000..1100, Source::Ebpf);
    let s = screen(&mut a);
    assert_eq!(a.selected_item().unwrap().local.port(), 8080);
    assert!(ports_on_screen(&s).contains(&8080), "{s}");
    // Its row goes: the selection takes the row that took its place.
    close_all(&mut a, 1000..1100);
    a.on_monitor(
        event(
            Change::Closed,
            listener(8080, 400, "node", 4),
            Source::Ebpf,
            t0(),
        ),
        &mut name,
    );
    a.on_tick(t0() + LINGER, false);
    let s = screen(&mut a);
    assert_eq!(ports_on_screen(&s), [22, 53, 80]);
    assert_eq!(a.selected_item().unwrap().local.port(), 80);
    // Home goes back to the top, and stays there.
    press(&mut a, KeyCode::Home);
    open_all(&mut a, [7], Source::Ebpf);
    screen(&mut a);
    assert_eq!(a.selected_item().unwrap().local.port(), 7);
}

/// The status bar counts what is open now, and the events, drops and
/// resyncs this screen was told of, whatever fed it (its own monitor on
/// either backend, or a daemon's socket).
#[test]
fn the_status_bar_counts_live() {
    let mut a = app();
    let s = screen(&mut a);
    assert!(
        s.contains("3 tcp listening, 1 udp bound │ 0 events │ 0 drops │ 0 resyncs"),
        "{s}"
    );
    open_all(&mut a, [9000, 9001], Source::Ebpf);
    close_all(&mut a, [9000]);
    a.on_monitor(
        MonitorEvent::Resync(portwatch::report::ResyncSummary {
            reason: portwatch::report::ResyncReason::Interval,
            opened: 0,
            closed: 0,
            drops: 0,
            ts: t0(),
        }),
        &mut name,
    );
    let s = screen(&mut a);
    assert!(
        s.contains("4 tcp listening, 1 udp bound │ 3 events │ 0 drops │ 1 resync "),
        "{s}"
    );
    // A daemon that dropped this client's events: counted as drops.
    a.on_lost(7);
    assert!(screen(&mut a).contains("│ 7 drops │"));
}

/// Sorted by any column, its header shows the direction.
#[test]
fn every_sorted_column_shows_its_arrow() {
    let mut a = app();
    for (column, _) in LISTENER_SORTS {
        while a.sort.column != *column {
            press(&mut a, KeyCode::Char('s'));
        }
        let s = screen(&mut a);
        let header = s.lines().nth(1).unwrap();
        let t = format!("{}▲", column.title());
        assert!(header.contains(&t), "{t} in {header}");
        press(&mut a, KeyCode::Char('S'));
        let s = screen(&mut a);
        let t = format!("{}▼", column.title());
        assert!(s.lines().nth(1).unwrap().contains(&t), "{t}");
        press(&mut a, KeyCode::Char('S'));
    }
}

/// Every listener column: the one sorted by is shown even where not all
/// fit (at 120 columns, the netns and the container do not).
const LISTENER_SORTS: &[(view::Column, ())] = &[
    (view::Column::Address, ()),
    (view::Column::Port, ()),
    (view::Column::Proto, ()),
    (view::Column::State, ()),
    (view::Column::Exposure, ()),
    (view::Column::Netns, ()),
    (view::Column::Process, ()),
    (view::Column::Pid, ()),
    (view::Column::User, ()),
    (view::Column::Container, ()),
    (view::Column::Age, ()),
];

/// The details wrap a long command line: its last flag is on screen.
#[test]
fn details_wrap_long_text_instead_of_cutting_it() {
    let mut a = app();
    press(&mut a, KeyCode::End);
    press(&mut a, KeyCode::Enter);
    let mut i = info(400);
    i.cmdline = format!(
        "node {} --inspect=0.0.0.0:9229",
        "--max-old-space-size=4096 ".repeat(6)
    );
    i.cgroup = format!("/system.slice/{}.service/app", "long-name-".repeat(8));
    a.on_inspected(Some(i));
    // Tall enough for the "why" section above them.
    let s = screen_of(&mut a, 120, 34);
    insta::assert_snapshot!("details_wrapped", s);
    assert!(s.contains("--inspect=0.0.0.0:9229"), "{s}");
    assert!(s.contains("service/app"), "{s}");
}

/// The fallback's reason ends with its fix; at any width the fix shows.
#[test]
fn the_reason_for_procfs_is_never_cut_before_its_fix() {
    let why = "eBPF: portwatch needs root (or the CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN \
               capabilities) to load its eBPF programs: run it with sudo";
    for width in [30, 40, 60, 80, 120, 200] {
        let mut a = App::new(false, "", t0());
        a.status.backend = "procfs".into();
        a.status.fallback = Some(why.into());
        a.on_monitor(
            MonitorEvent::Ready(Ready {
                backend: "procfs".into(),
                listeners: 0,
                ts: t0(),
            }),
            &mut name,
        );
        let s = screen_of(&mut a, width, 24);
        let area = a.areas.message;
        let message: Vec<&str> = s
            .lines()
            .skip(usize::from(area.y))
            .take(usize::from(area.height))
            .map(|l| l.trim_matches('"').trim_end())
            .collect();
        assert!(
            message.join(" ").ends_with("run it with sudo"),
            "{width}: {s}"
        );
    }
}

/// The kill dialog says which children the process has, capped.
#[test]
fn the_kill_dialog_lists_the_children() {
    let mut a = app();
    press(&mut a, KeyCode::End);
    press(&mut a, KeyCode::Char('k'));
    let mut i = info(400);
    i.children = (0..8).map(|n| (500 + n, format!("worker-{n}"))).collect();
    a.on_pinned(Ok(i));
    let s = screen(&mut a);
    assert!(s.contains("children  8"), "{s}");
    for n in 0..5 {
        assert!(s.contains(&format!("{} worker-{n}", 500 + n)), "{s}");
    }
    assert!(!s.contains("worker-5"), "{s}");
    assert!(s.contains("and 3 more"), "{s}");
}

/// One line of key hints; what `--read-only` removes is not offered.
#[test]
fn the_status_bar_hints_the_main_keys() {
    let mut a = app();
    let s = screen(&mut a);
    assert!(
        s.contains("/ filter  Enter details  k kill  E rules  ? help"),
        "{s}"
    );
    let mut ro = App::new(true, "", t0());
    let s = screen(&mut ro);
    assert!(s.contains("/ filter  Enter details  ? help  q quit"), "{s}");
    assert!(!s.contains("k kill"), "{s}");
}

/// A new row is black on yellow in every cell: no column colour on it.
#[test]
fn a_new_row_reads_in_every_cell() {
    let mut a = app();
    open_all(&mut a, [9000], Source::Ebpf);
    let t = drawn(&mut a, 120, 24);
    let buffer = t.backend().buffer();
    // The new row is the last of six: 22, 53, 80, 8080, 9000 (row 6).
    let y = 6;
    let row: String = (1..119)
        .map(|x| buffer[(x, y)].symbol().to_string())
        .collect();
    assert!(row.contains("9000") && row.contains("LISTEN"), "{row}");
    for x in 1..119 {
        let c = &buffer[(x, y)];
        assert_eq!(
            (c.fg, c.bg),
            (FRESH.fg.unwrap(), FRESH.bg.unwrap()),
            "x={x}: {row}"
        );
    }
    assert_eq!(FRESH.fg, Some(Color::Black));
}

/// The rule list says what each rule watches.
#[test]
fn the_rule_list_shows_each_condition_in_short() {
    let mut a = app();
    a.set_rules(Ok(example_rules()));
    press(&mut a, KeyCode::Char('E'));
    let s = screen(&mut a);
    assert!(s.contains("PortOpened 22"), "{s}");
    assert!(s.contains("PortRangeActivity 3000-3999"), "{s}");
}

/// A filter that matches nothing for a moment does not lose the chosen
/// row; nor does opening the details on the first row let it move.
#[test]
fn the_chosen_row_survives_an_empty_view_and_the_details_pin_it() {
    let mut a = app();
    for _ in 0..3 {
        press(&mut a, KeyCode::Down);
    }
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "zzz");
    assert_eq!(ports(&mut a), Vec::<u16>::new());
    press(&mut a, KeyCode::Esc);
    screen(&mut a);
    assert_eq!(a.selected_item().unwrap().local.port(), 8080);

    let mut a = app();
    press(&mut a, KeyCode::Enter);
    a.on_inspected(Some(info(100)));
    open_all(&mut a, [7], Source::Ebpf);
    screen(&mut a);
    assert_eq!(a.selected_item().unwrap().local.port(), 22);
    assert_eq!(a.details.as_ref().unwrap().pid, 100);
}

/// What a filter error quotes was typed or pasted: shown escaped, on the
/// filter line and in the error.
#[test]
fn a_filter_error_quotes_the_text_escaped() {
    let mut a = app();
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "pid:1\u{202e}2");
    assert!(a.filter_error.is_some());
    let s = screen(&mut a);
    assert!(!s.contains('\u{202e}'), "{s}");
    assert!(s.contains("is not a pid"), "{s}");
    assert_eq!(s.matches("1\\u{202e}2").count(), 2, "{s}");
}

/// A command line of a megabyte takes at most its lines, says how much
/// is left, and the user and parent stay above it.
#[test]
fn a_huge_command_line_is_bounded_in_the_details() {
    let mut a = app();
    press(&mut a, KeyCode::End);
    press(&mut a, KeyCode::Enter);
    let mut i = info(400);
    i.cmdline = "x".repeat(1 << 20);
    a.on_inspected(Some(i));
    let s = screen_of(&mut a, 120, 40);
    assert!(s.contains("user      user1000 (1000)"), "{s}");
    assert!(s.contains("parent    1 · systemd(1)"), "{s}");
    assert!(s.contains("more characters"), "{s}");
    assert!(s.contains("cwd       /srv/app"), "{s}");
}

/// The "why" section leads the details, its warnings in colour: red for
/// a deleted executable, yellow for one no package owns.
#[test]
fn the_why_section_leads_the_details_with_its_warnings_in_colour() {
    let mut a = app();
    press(&mut a, KeyCode::End);
    press(&mut a, KeyCode::Enter);
    a.on_inspected(Some(info(400)));
    let t = drawn(&mut a, 120, 24);
    let buffer = t.backend().buffer();
    let line = |y: u16| -> String {
        (72..119)
            .map(|x| buffer[(x, y)].symbol().to_string())
            .collect()
    };
    assert!(
        line(1).contains("why       systemd app.service"),
        "{}",
        line(1)
    );
    assert!(line(2).contains("/srv/app · main"), "{}", line(2));
    assert!(line(3).contains("node(400) < systemd(1)"), "{}", line(3));
    let colour_of = |text: &str| {
        let y = (1..23)
            .find(|&y| line(y).contains(text))
            .unwrap_or_else(|| panic!("no {text}"));
        let x = 72 + u16::try_from(line(y).find(text).unwrap_or(0)).unwrap();
        // `find` counts bytes; the warnings are ASCII.
        buffer[(x, y)].fg
    };
    assert_eq!(colour_of("its executable was deleted"), Color::Red);
    assert_eq!(colour_of("not from a package"), Color::Yellow);
}
