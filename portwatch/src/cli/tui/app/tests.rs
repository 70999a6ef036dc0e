//! The app driven by scripted inputs, and snapshots of every screen
//! (ratatui's `TestBackend`): no terminal, no root, a fixed clock.

use std::net::SocketAddr;

use chrono::{DateTime, TimeDelta, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use portwatch::{
    Change, Listener, MonitorEvent, PortEvent, Proto, Source,
    container::Container,
    monitor::Ready,
    process::ProcessInfo,
    rules::{eval::Alert, model::Severity},
    socket::{SocketInfo, SocketState},
};
use ratatui::{Terminal, backend::TestBackend};

use super::*;
use crate::tui::{draw::draw, view::ProcSummary};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn listener(port: u16, pid: u32, comm: &str, cookie: u64) -> Listener {
    Listener {
        pid,
        comm: comm.into(),
        uid: if pid == 0 { 0 } else { 1000 },
        cookie: Some(cookie),
        netns: 4026531840,
        cgroup: "/".into(),
        ..Listener::new(Proto::Tcp, "127.0.0.1".parse().unwrap(), port)
    }
}

fn event(change: Change, l: Listener, source: Source, ts: DateTime<Utc>) -> MonitorEvent {
    MonitorEvent::Port(PortEvent {
        change,
        listener: l,
        ts,
        source,
    })
}

fn name(uid: u32) -> String {
    if uid == 0 {
        "root".into()
    } else {
        format!("user{uid}")
    }
}

/// An app with a baseline of four listeners and the ready line.
fn app() -> App {
    let mut app = App::new(false, "", t0());
    let mut web = listener(80, 300, "nginx", 3);
    web.address = "0.0.0.0".parse().unwrap();
    web.container = Container::classify(&format!("/docker/{}", "ab".repeat(32)));
    let mut dns = listener(53, 200, "dnsmasq", 2);
    dns.proto = Proto::Udp;
    let baseline = [listener(22, 100, "sshd", 1), dns, web, node_with_context()];
    for l in baseline {
        app.on_monitor(event(Change::Opened, l, Source::Baseline, t0()), &mut name);
    }
    app.on_monitor(
        MonitorEvent::Ready(Ready {
            backend: "ebpf".into(),
            listeners: 4,
            ts: t0(),
        }),
        &mut name,
    );
    app.status.backend = "ebpf".into();
    app
}

/// node's listener, with its owner's story: a user's unit, in a git
/// work tree, run from an executable deleted since.
fn node_with_context() -> Listener {
    use portwatch::owner::{Ancestor, GitCheckout, Origin, OriginKind, OwnerContext};
    Listener {
        context: Some(std::sync::Arc::new(OwnerContext {
            ancestry: vec![
                Ancestor {
                    pid: 400,
                    comm: "node".into(),
                },
                Ancestor {
                    pid: 1,
                    comm: "systemd".into(),
                },
            ],
            source: Origin {
                kind: OriginKind::Systemd,
                name: "app.service".into(),
                user: Some("1000".into()),
                session: None,
                trusted: false,
            },
            cwd: Some("/srv/app".into()),
            git: Some(GitCheckout {
                root: "/srv/app".into(),
                branch: Some("main".into()),
            }),
            exe: Some("/usr/local/bin/node".into()),
            exe_deleted: true,
            package: None,
            exe_sha256: None,
            cmdline: None,
        })),
        ..listener(8080, 400, "node", 4)
    }
}

/// The example rules file portwatch ships, one rule per condition.
fn example_rules() -> portwatch::rules::model::AlertsFile {
    portwatch::rules::validate::load_bytes(
        portwatch::rules::store::EXAMPLE.as_bytes(),
        std::path::Path::new("x"),
    )
    .unwrap()
    .file
}

fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn ports(app: &mut App) -> Vec<u16> {
    app.prepare();
    let (items, lines) = app.visible();
    lines
        .iter()
        .filter_map(|l| match l {
            Line::Item { index, .. } => Some(items[*index].local.port()),
            Line::Header { .. } => None,
        })
        .collect()
}

/// The screen as text, 120 x 24.
fn screen(app: &mut App) -> String {
    screen_of(app, 120, 24)
}

/// The app drawn at `w` x `h`, as the runtime draws it.
fn drawn(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    app.prepare();
    app.lay_out(Rect::new(0, 0, w, h));
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| draw(f, app)).unwrap();
    terminal
}

fn screen_of(app: &mut App, w: u16, h: u16) -> String {
    drawn(app, w, h).backend().to_string()
}

fn info(pid: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: 1,
        comm: "node".into(),
        exe: "/usr/bin/node".into(),
        cwd: "/srv/app".into(),
        cmdline: "node server.js --port 8080".into(),
        uid: 1000,
        start_time: Some(t0() - TimeDelta::hours(3)),
        rss_bytes: 48 << 20,
        cpu_ticks: 500,
        ticks_per_second: 100,
        threads: 7,
        environ: vec![
            ("PATH".into(), "/usr/bin".into()),
            ("API_TOKEN".into(), "***".into()),
        ],
        ancestry: vec![(1, "systemd".into())],
        children: vec![(4243, "node".into()), (4250, "esbuild".into())],
        cgroup: "/system.slice/app.service".into(),
        container: Container::classify("/system.slice/app.service"),
        netns: Some(4026531840),
        exe_sha256: Ok("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
    }
}

#[test]
fn the_table_sorts_by_port_and_keeps_the_selection_on_its_row() {
    let mut a = app();
    assert_eq!(ports(&mut a), [22, 53, 80, 8080]);
    press(&mut a, KeyCode::Down);
    assert_eq!(a.selected_item().unwrap().local.port(), 53);
    // A new listener sorts in before the selection: the selection stays.
    a.on_monitor(
        event(
            Change::Opened,
            listener(25, 500, "smtpd", 5),
            Source::Ebpf,
            t0(),
        ),
        &mut name,
    );
    assert_eq!(ports(&mut a), [22, 25, 53, 80, 8080]);
    assert_eq!(a.selected_item().unwrap().local.port(), 53);
    // s: the next column (proto), S: reversed; ties keep port order.
    press(&mut a, KeyCode::Char('s'));
    assert_eq!(a.sort.column, Column::Proto);
    assert_eq!(ports(&mut a), [22, 25, 80, 8080, 53]);
    press(&mut a, KeyCode::Char('S'));
    assert_eq!(ports(&mut a), [53, 22, 25, 80, 8080]);
}

#[test]
fn new_rows_are_highlighted_and_closed_rows_linger_dimmed() {
    let mut a = app();
    a.on_monitor(
        event(
            Change::Opened,
            listener(9000, 600, "vite", 9),
            Source::Ebpf,
            t0(),
        ),
        &mut name,
    );
    let item = |a: &mut App, port| {
        a.prepare();
        let (items, _) = a.visible();
        items.iter().find(|i| i.local.port() == port).cloned()
    };
    assert!(item(&mut a, 9000).unwrap().fresh);
    assert!(!item(&mut a, 22).unwrap().fresh, "the baseline is no news");
    a.on_tick(t0() + HIGHLIGHT, false);
    assert!(!item(&mut a, 9000).unwrap().fresh);
    // A listener that lived a millisecond is still seen, then goes.
    a.on_monitor(
        event(
            Change::Closed,
            listener(9000, 600, "vite", 9),
            Source::Ebpf,
            t0(),
        ),
        &mut name,
    );
    assert!(item(&mut a, 9000).unwrap().closed);
    assert_eq!(a.log.front().unwrap().text, "tcp 127.0.0.1:9000 vite (600)");
    a.on_tick(t0() + HIGHLIGHT + LINGER, false);
    assert!(item(&mut a, 9000).is_none());
}

#[test]
fn the_filter_updates_as_typed_and_shows_errors_in_place() {
    let mut a = app();
    press(&mut a, KeyCode::Char('/'));
    assert!(a.editing_filter);
    typed(&mut a, "port:1..100");
    assert_eq!(ports(&mut a), [22, 53, 80]);
    typed(&mut a, " !proto:udp");
    assert_eq!(ports(&mut a), [22, 80]);
    // A term half typed: the error shows in place, and the filter filters
    // nothing (no part of it picks rows) until it parses again.
    typed(&mut a, " addr:10.");
    assert!(a.filter_error.as_deref().unwrap().contains("is no address"));
    assert_eq!(ports(&mut a), [22, 53, 80, 8080]);
    for _ in 0.." addr:10.".len() {
        press(&mut a, KeyCode::Backspace);
    }
    assert_eq!(a.filter_error, None);
    press(&mut a, KeyCode::Enter);
    assert!(!a.editing_filter);
    assert_eq!(
        a.counts(),
        Counts {
            open: 2,
            closed: 0,
            lines: 2
        }
    );
    // The filter stays in force, and shown; Esc clears it.
    assert!(screen(&mut a).contains("filter: 'port:1..100 !proto:udp'  2 matches"));
    press(&mut a, KeyCode::Esc);
    assert_eq!(a.filter_text, "");
    assert_eq!(ports(&mut a), [22, 53, 80, 8080]);
    assert!(!screen(&mut a).contains("filter:"));
    // Esc while typing cancels the filter too.
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "ssh");
    assert_eq!(ports(&mut a), [22]);
    press(&mut a, KeyCode::Esc);
    assert!(!a.editing_filter);
    assert_eq!(ports(&mut a), [22, 53, 80, 8080]);
}

#[test]
fn pause_freezes_the_view_while_events_keep_arriving() {
    let mut a = app();
    press(&mut a, KeyCode::Char('p'));
    a.on_monitor(
        event(
            Change::Opened,
            listener(9000, 600, "vite", 9),
            Source::Ebpf,
            t0(),
        ),
        &mut name,
    );
    assert_eq!(ports(&mut a), [22, 53, 80, 8080]);
    assert_eq!(a.paused_events(), Some(1));
    press(&mut a, KeyCode::Char('p'));
    assert_eq!(ports(&mut a), [22, 53, 80, 8080, 9000]);
}

/// The selected row's socket: what a pin checks the process still holds.
fn pinned_socket(a: &App) -> (portwatch::Proto, std::net::SocketAddr, u64) {
    let i = a.selected_item().unwrap();
    (i.proto, i.local, i.netns)
}

#[test]
fn a_kill_asks_first_and_pins_the_process() {
    let mut a = app();
    press(&mut a, KeyCode::End);
    assert_eq!(
        press(&mut a, KeyCode::Char('k')),
        [Effect::Pin {
            pid: 400,
            kill: false,
            socket: pinned_socket(&a),
        }]
    );
    a.on_pinned(Ok(info(400)));
    // n leaves it alone.
    assert_eq!(press(&mut a, KeyCode::Char('n')), [Effect::Unpin]);
    assert!(a.dialog.is_none());
    // K, then y.
    assert_eq!(
        press(&mut a, KeyCode::Char('K')),
        [Effect::Pin {
            pid: 400,
            kill: true,
            socket: pinned_socket(&a),
        }]
    );
    // Until pinned, y does nothing.
    assert!(press(&mut a, KeyCode::Char('y')).is_empty());
    a.on_pinned(Ok(info(400)));
    let Some(Dialog::Kill(k)) = &a.dialog else {
        panic!()
    };
    assert_eq!(k.ports, ["tcp 127.0.0.1:8080"]);
    assert_eq!(
        press(&mut a, KeyCode::Char('y')),
        [Effect::Signal { kill: true }]
    );
    // A refused pin says why and cannot be confirmed.
    press(&mut a, KeyCode::Char('k'));
    a.on_pinned(Err("portwatch does not signal pid 1".into()));
    assert!(press(&mut a, KeyCode::Char('y')).is_empty());
    assert_eq!(press(&mut a, KeyCode::Esc), [Effect::Unpin]);
}

#[test]
fn read_only_has_no_kill_and_no_editor() {
    let mut a = App::new(true, "", t0());
    for c in ['k', 'K', 'E'] {
        assert!(press(&mut a, KeyCode::Char(c)).is_empty());
        assert!(a.dialog.is_none(), "{c}");
    }
}

#[test]
fn details_follow_the_selection_and_compute_cpu() {
    let mut a = app();
    press(&mut a, KeyCode::End);
    assert_eq!(press(&mut a, KeyCode::Enter), [Effect::Inspect(400)]);
    a.on_inspected(Some(info(400)));
    a.on_tick(t0() + TimeDelta::seconds(2), true);
    let mut later = info(400);
    later.cpu_ticks += 100;
    a.on_inspected(Some(later));
    assert_eq!(a.details.as_ref().unwrap().cpu_percent, Some(50.0));
    assert_eq!(press(&mut a, KeyCode::Up), [Effect::Inspect(300)]);
}

#[test]
fn views_toggle_and_ask_for_what_they_need() {
    let mut a = app();
    assert_eq!(press(&mut a, KeyCode::Char('l')), [Effect::LoadSockets]);
    assert_eq!(a.kind, Kind::AllSockets);
    assert_eq!(a.on_tick(t0(), true), [Effect::LoadSockets]);
    press(&mut a, KeyCode::Char('l'));
    assert_eq!(a.kind, Kind::Listeners);
    press(&mut a, KeyCode::Char('g'));
    assert_eq!(a.kind, Kind::Groups);
    press(&mut a, KeyCode::Char('t'));
    assert_eq!(a.kind, Kind::Tree);
    assert_eq!(press(&mut a, KeyCode::Char('r')), [Effect::Resync]);
    assert_eq!(press(&mut a, KeyCode::Char('q')), [Effect::Quit]);
}

#[test]
fn the_mouse_selects_scrolls_and_sorts() {
    let mut a = app();
    screen(&mut a);
    let click = |column, row| MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    };
    // Row 2 is the header (border at 0... the table starts at y 0).
    a.on_mouse(click(5, 4));
    assert_eq!(a.selected_item().unwrap().local.port(), 80);
    // The PROCESS header.
    let x = a.areas.columns[5].1;
    a.on_mouse(click(x, 1));
    assert_eq!(a.sort.column, Column::Process);
    assert_eq!(ports(&mut a), [53, 80, 8080, 22]);
    a.on_mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 5,
        row: 4,
        modifiers: KeyModifiers::NONE,
    });
    assert_eq!(a.selected_item().unwrap().local.port(), 22);
}

#[test]
fn the_export_is_the_view_as_shown() {
    let mut a = app();
    a.on_key(KeyEvent::new(KeyCode::Char('/'), KeyModifiers::NONE));
    typed(&mut a, "proto:tcp");
    press(&mut a, KeyCode::Enter);
    let Effect::Export { csv: true, text } = press(&mut a, KeyCode::Char('X')).remove(0) else {
        panic!()
    };
    assert_eq!(
        text,
        "address,port,proto,state,exposure,process,pid,user,container,netns,age\n\
         127.0.0.1,22,tcp,LISTEN,-,sshd,100,user1000,,4026531840,-\n\
         *,80,tcp,LISTEN,-,nginx,300,user1000,docker:abababababab,4026531840,-\n\
         127.0.0.1,8080,tcp,LISTEN,-,node,400,user1000,,4026531840,-\n"
    );
    let Effect::Export { csv: false, text } = press(&mut a, KeyCode::Char('x')).remove(0) else {
        panic!()
    };
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["container"], "docker:abababababab");
}

// ---- snapshots of every screen ----

#[test]
fn snapshot_table() {
    let mut a = app();
    a.on_monitor(
        event(
            Change::Opened,
            listener(9000, 600, "vite", 9),
            Source::Ebpf,
            t0(),
        ),
        &mut name,
    );
    a.on_tick(t0() + TimeDelta::seconds(42), false);
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn snapshot_all_sockets() {
    let mut a = app();
    press(&mut a, KeyCode::Char('l'));
    let sock = |local: &str, remote: Option<&str>, state, pid, comm: &str| SocketInfo {
        proto: Proto::Tcp,
        state,
        local: local.parse().unwrap(),
        remote: remote.map(|r| r.parse::<SocketAddr>().unwrap()),
        pid,
        comm: comm.into(),
        uid: 0,
        netns: 4026531840,
        cookie: Some(u64::from(pid) + local.len() as u64),
        inode: 1,
        cgroup: "/".into(),
        container: None,
    };
    let mut udp = sock("0.0.0.0:53", None, SocketState::Unconnected, 200, "dnsmasq");
    udp.proto = Proto::Udp;
    a.on_sockets(
        vec![
            sock("0.0.0.0:22", None, SocketState::Listen, 100, "sshd"),
            sock(
                "10.0.0.5:22",
                Some("10.0.0.9:51000"),
                SocketState::Established,
                101,
                "sshd",
            ),
            sock(
                "10.0.0.5:40000",
                Some("93.184.216.34:443"),
                SocketState::TimeWait,
                0,
                "",
            ),
            udp,
        ],
        &mut name,
    );
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn snapshot_tree() {
    let mut a = app();
    for (pid, chain) in [
        (100, vec![(1, "systemd")]),
        (200, vec![(1, "systemd")]),
        (300, vec![(1, "systemd"), (290, "containerd-shim")]),
        (400, vec![(1, "systemd"), (350, "bash")]),
    ] {
        a.on_described(
            pid,
            ProcSummary {
                ancestry: chain.into_iter().map(|(p, n)| (p, n.to_string())).collect(),
                ..Default::default()
            },
        );
    }
    press(&mut a, KeyCode::Char('t'));
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn snapshot_groups() {
    let mut a = app();
    press(&mut a, KeyCode::Char('g'));
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn snapshot_details() {
    let mut a = app();
    press(&mut a, KeyCode::End);
    press(&mut a, KeyCode::Enter);
    a.on_inspected(Some(info(400)));
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn snapshot_log_and_alerts() {
    let mut a = app();
    a.on_monitor(
        event(
            Change::Opened,
            listener(9000, 600, "vite", 9),
            Source::Ebpf,
            t0(),
        ),
        &mut name,
    );
    a.on_monitor(
        event(
            Change::Closed,
            listener(9000, 600, "vite", 9),
            Source::Ebpf,
            t0() + TimeDelta::microseconds(350),
        ),
        &mut name,
    );
    press(&mut a, KeyCode::Char('e'));
    insta::assert_snapshot!("log", screen(&mut a));
    for (sev, msg) in [
        (
            Severity::Warning,
            "python3 (pid 12497) opened 127.0.0.1:9999",
        ),
        (
            Severity::Critical,
            "unknown process python3 (pid 12497) is listening on 127.0.0.1:9999",
        ),
    ] {
        a.on_monitor(
            MonitorEvent::Alert(Alert {
                rule_id: "r".into(),
                rule_name: "a rule".into(),
                severity: sev,
                condition: "PortOpened".into(),
                message: msg.into(),
                pid: 12497,
                comm: "python3".into(),
                address: None,
                port: None,
                proto: None,
                ts: t0(),
            }),
            &mut name,
        );
    }
    press(&mut a, KeyCode::Char('a'));
    insta::assert_snapshot!("alerts", screen(&mut a));
}

#[test]
fn snapshot_editor() {
    let mut a = app();
    a.set_rules(Ok(example_rules()));
    press(&mut a, KeyCode::Char('E'));
    insta::assert_snapshot!("editor_list", screen(&mut a));
    press(&mut a, KeyCode::Enter);
    insta::assert_snapshot!("editor_form", screen(&mut a));
}

#[test]
fn snapshot_editor_of_a_broken_file() {
    let mut a = app();
    a.set_rules(Err("alerts.json:3:5: expected `,` or `}`".into()));
    press(&mut a, KeyCode::Char('E'));
    press(&mut a, KeyCode::Char('n'));
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn snapshot_help() {
    let mut a = app();
    press(&mut a, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn snapshot_kill_confirmation() {
    let mut a = app();
    press(&mut a, KeyCode::End);
    press(&mut a, KeyCode::Char('K'));
    a.on_pinned(Ok(info(400)));
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn snapshot_filter_error() {
    let mut a = app();
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "port:80 prot:udp");
    insta::assert_snapshot!(screen(&mut a));
}

#[test]
fn hostile_names_stay_in_their_cells() {
    let mut a = App::new(false, "", t0());
    // Made safe at ingestion; wide and combining characters are cut on
    // character boundaries without a panic.
    let l = listener(1, 7, "服务服务服务服务服务\\x1b[2J", 1);
    a.on_monitor(event(Change::Opened, l, Source::Ebpf, t0()), &mut name);
    let text = screen(&mut a);
    assert!(!text.contains('\u{1b}'));
    assert!(text.contains("服务服务"));
}

/// A rule name from the file with control and bidi characters is shown
/// escaped, through the one escaping path, in the list and the form: not
/// stripped, not raw.
#[test]
fn rule_names_from_the_file_are_shown_escaped() {
    let mut a = app();
    let mut file = example_rules();
    file.rules[0].name = "evil\u{1b}[2J\u{202e}x".into();
    a.set_rules(Ok(file));
    press(&mut a, KeyCode::Char('E'));
    let list = screen(&mut a);
    assert!(list.contains("evil\\x1b[2J\\u{202e}x"), "{list}");
    press(&mut a, KeyCode::Enter);
    let form = screen(&mut a);
    assert!(form.contains("evil\\x1b[2J\\u{202e}x"), "{form}");
}

mod exposure;
mod truth;

#[test]
fn unexpected_listeners_are_marked_and_filtered_with_drift_yes() {
    use portwatch::policy::drift::{Drift, DriftKind};
    let mut a = app();
    let drift = |kind, l: Listener| {
        MonitorEvent::Drift(Drift {
            kind,
            listener: Some(l),
            entry: None,
            tags: vec!["PCI".into()],
            ts: t0(),
        })
    };
    a.on_monitor(
        drift(DriftKind::Unexpected, listener(22, 100, "sshd", 1)),
        &mut name,
    );
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "drift:yes");
    assert_eq!(ports(&mut a), [22]);
    let shown = screen(&mut a);
    assert!(shown.contains("LISTEN!"), "{shown}");
    assert!(
        shown.contains("unexpected tcp 127.0.0.1:22"),
        "the message line: {shown}"
    );
    typed(&mut a, " !drift:yes");
    assert_eq!(ports(&mut a), Vec::<u16>::new());
    press(&mut a, KeyCode::Esc);
    // Back to expected: no longer marked.
    a.on_monitor(
        drift(DriftKind::Expected, listener(22, 100, "sshd", 1)),
        &mut name,
    );
    press(&mut a, KeyCode::Char('/'));
    typed(&mut a, "drift:yes");
    assert_eq!(ports(&mut a), Vec::<u16>::new());
    typed(&mut a, "x");
    assert!(a.filter_error.as_deref().unwrap().contains("is no drift"));
}

#[test]
fn the_details_show_the_ports_last_holders_from_the_journal() {
    use portwatch::journal::history::Hold;
    let mut a = app();
    assert_eq!(a.pending_history(), None, "no details pane, no query");
    press(&mut a, KeyCode::Home);
    press(&mut a, KeyCode::Enter);
    a.on_inspected(Some(info(100)));
    assert_eq!(a.pending_history(), Some((Proto::Tcp, 22)));
    let hold = |pid: u32, comm: &str, from: i64, until: Option<i64>| Hold {
        proto: Proto::Tcp,
        address: "0.0.0.0".parse().unwrap(),
        port: 22,
        netns: 1,
        pid,
        uid: 0,
        comm: comm.into(),
        exe: None,
        container: None,
        opened: t0() + TimeDelta::seconds(from),
        opened_before: false,
        closed: until.map(|u| t0() + TimeDelta::seconds(u)),
        closed_unseen: false,
        context: None,
        exposure: None,
    };
    a.on_history(
        Proto::Tcp,
        22,
        Ok(vec![
            hold(100, "sshd", 60, None),
            hold(99, "evil\u{1b}[2J", 0, Some(30)),
        ]),
    );
    assert_eq!(a.pending_history(), None);
    let shown = screen_of(&mut a, 160, 40);
    assert!(shown.contains("history   sshd(100)"), "{shown}");
    assert!(shown.contains("evil\\x1b[2J(99)"), "escaped: {shown}");
    // A new holder of the port: read again.
    a.on_monitor(
        event(
            Change::Opened,
            listener(22, 7, "new", 9),
            Source::Ebpf,
            t0(),
        ),
        &mut name,
    );
    assert_eq!(a.pending_history(), Some((Proto::Tcp, 22)));
    a.on_history(Proto::Tcp, 22, Err("no journal at /x".into()));
    assert!(screen_of(&mut a, 160, 40).contains("no journal at /x"));
}
