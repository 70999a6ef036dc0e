//! Draws the app. No I/O: everything shown comes from `App`, whose texts
//! were made safe when read.

use chrono::{DateTime, Utc};
use portwatch::safe_text::safe_str;
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    text::{Line as TextLine, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table},
};

use super::{
    app::{App, Details, Dialog, KillDialog, Pane},
    editor::{CONDITIONS, Editor},
    keys,
    text::{shorten, wrap},
    view::{Column, Item, Line, cell},
};

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let areas = &app.areas;
    draw_table(frame, app, areas.table);
    if areas.details.width > 0 {
        draw_details(frame, app, areas.details);
    }
    if areas.pane.height > 0 {
        match app.pane {
            Pane::Log => draw_log(frame, app, areas.pane),
            Pane::Alerts => draw_alerts(frame, app, areas.pane),
            Pane::None => {}
        }
    }
    if areas.filter.height > 0 {
        draw_filter(frame, app, areas.filter);
    }
    if areas.message.height > 0 {
        draw_message(frame, app, areas.message);
    }
    draw_status(frame, app, areas.status);
    match &app.dialog {
        Some(Dialog::Help) => draw_help(frame, app),
        Some(Dialog::Kill(k)) => draw_kill(frame, k),
        Some(Dialog::Editor(e)) => draw_editor(frame, e),
        None => {}
    }
}

/// A new row: black on yellow, bold, in every cell (no column colour on
/// it: green or cyan on yellow cannot be read in 16 or 256 colours).
pub const FRESH: Style = Style::new()
    .fg(Color::Black)
    .bg(Color::Yellow)
    .add_modifier(Modifier::BOLD);

fn row_style(item: &Item) -> Style {
    if item.closed {
        Style::default()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::CROSSED_OUT)
    } else if item.fresh {
        FRESH
    } else {
        Style::default()
    }
}

fn cell_style(item: &Item, column: Column) -> Style {
    if item.fresh || item.closed {
        return Style::default();
    }
    match column {
        Column::State if item.unexpected => {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        }
        Column::Proto if item.proto == portwatch::Proto::Udp => Style::default().fg(Color::Magenta),
        Column::Proto => Style::default().fg(Color::Cyan),
        Column::State => match item.state {
            "LISTEN" | "BOUND" => Style::default().fg(Color::Green),
            "ESTAB" => Style::default().fg(Color::Blue),
            "UNCONN" => Style::default().fg(Color::Magenta),
            "CLOSED" => Style::default().fg(Color::DarkGray),
            _ => Style::default().fg(Color::Yellow),
        },
        // What the outside reaches stands out; what is sure not to, not.
        Column::Exposure => match item.exposure {
            Some(portwatch::exposure::Exposure::Reachable { .. }) => Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
            Some(portwatch::exposure::Exposure::Unknown { .. }) => {
                Style::default().fg(Color::Magenta)
            }
            _ => Style::default().fg(Color::DarkGray),
        },
        _ => Style::default(),
    }
}

fn draw_table(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (items, lines) = app.visible();
    let columns = app.columns();
    // Counted from the lines drawn: open rows the filter admits; the
    // closed ones still shown apart.
    let counts = app.counts();
    let mut title = format!(" portwatch · {} · {}", app.kind.title(), counts.open);
    if counts.closed > 0 {
        title.push_str(&format!(" +{} closed", counts.closed));
    }
    if let Some(n) = app.paused_events() {
        title.push_str(&format!(" · PAUSED, {n} new events"));
    }
    title.push(' ');
    let shown: Vec<(Column, u16)> = app
        .areas
        .columns
        .iter()
        .map(|(i, _, w)| (columns[*i], *w))
        .collect();
    let header = Row::new(shown.iter().map(|(c, _)| {
        let mut t = c.title().to_string();
        if app.sort.column == *c {
            t.push(if app.sort.ascending { '▲' } else { '▼' });
        }
        Cell::from(t)
    }))
    .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let height = usize::from(app.areas.table_rows());
    let selected = app.selected_line();
    let rows: Vec<Row<'_>> = lines
        .iter()
        .enumerate()
        .skip(app.offset)
        .take(height)
        .map(|(i, line)| {
            let row = match line {
                Line::Header { text, depth } => {
                    Row::new(vec![Cell::from(format!("{}{}", "  ".repeat(*depth), text))])
                        .style(Style::default().add_modifier(Modifier::BOLD))
                }
                Line::Item { index, depth } => {
                    let item = &items[*index];
                    Row::new(shown.iter().enumerate().map(|(n, (c, w))| {
                        let mut text = cell(item, *c, app.now);
                        if n == 0 && *depth > 0 {
                            text = format!("{}{text}", "  ".repeat(*depth));
                        }
                        Cell::from(shorten(&text, usize::from(*w))).style(cell_style(item, *c))
                    }))
                    .style(row_style(item))
                }
            };
            if Some(i) == selected {
                row.style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let widths: Vec<Constraint> = shown.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    let mut block = Block::default().borders(Borders::ALL).title(title);
    if let Some((first, last, total)) = app.scroll_position() {
        block = block
            .title_bottom(TextLine::from(format!(" {first}-{last} of {total} ")).right_aligned());
    }
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block);
    frame.render_widget(table, area);
}

fn kv<'a>(key: &'a str, value: String) -> TextLine<'a> {
    TextLine::from(vec![
        Span::styled(format!("{key:<10}"), Style::default().fg(Color::Cyan)),
        Span::raw(value),
    ])
}

/// `kv` for a long value: wrapped to `w`, the lines after the first
/// under the value.
fn kv_wrapped(key: &'static str, value: &str, w: usize) -> Vec<TextLine<'static>> {
    wrap(value, w)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                kv(key, part)
            } else {
                TextLine::from(format!("{:10}{part}", ""))
            }
        })
        .collect()
}

/// The most lines a command line takes in the details.
const CMDLINE_LINES: usize = 12;

/// `kv_wrapped` in at most `max` lines; the last says how much is left.
/// Only what can show is wrapped (a frame may come every 16 ms).
fn kv_wrapped_at_most(
    key: &'static str,
    value: &str,
    w: usize,
    max: usize,
) -> Vec<TextLine<'static>> {
    let room = w.max(1) * max;
    let total = value.chars().count();
    if total <= room {
        return kv_wrapped(key, value, w);
    }
    let head: String = value.chars().take(room).collect();
    let mut lines = kv_wrapped(key, &head, w);
    lines.truncate(max.saturating_sub(1));
    let shown: usize = lines
        .iter()
        .map(|l| {
            l.spans
                .last()
                .map_or(0, |s| s.content.trim().chars().count() + 1)
        })
        .sum();
    lines.push(TextLine::from(format!(
        "{:10}… {} more characters",
        "",
        total.saturating_sub(shown)
    )));
    lines
}

/// `children` as `pid name` lines, at most `cap`, then how many more.
fn children_lines(children: &[(u32, String)], cap: usize) -> Vec<TextLine<'static>> {
    let mut out: Vec<TextLine<'static>> = children
        .iter()
        .take(cap)
        // A name escaped from 15 raw bytes is 60 characters: shortened to
        // fit the kill dialog's box.
        .map(|(pid, name)| TextLine::from(format!("  {pid:>7} {}", shorten(name, 50))))
        .collect();
    if children.len() > cap {
        out.push(TextLine::from(format!(
            "  and {} more",
            children.len() - cap
        )));
    }
    out
}

/// `1d 2h`, `3h 4m`, `5m 6s`, `7s`.
fn duration_text(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// The "why" section: what started the owner, its project, its
/// ancestry on one line, its package, and warnings in colour.
fn why_lines(i: &Item, w: usize) -> Vec<TextLine<'static>> {
    let mut out = Vec::new();
    let Some(c) = &i.context else { return out };
    out.extend(kv_wrapped("why", &c.source.to_string(), w));
    if let Some(g) = &c.git {
        let project = match &g.branch {
            Some(b) => format!("{} · {b}", g.root),
            None => format!("{} · detached", g.root),
        };
        out.extend(kv_wrapped("project", &project, w));
    }
    let chain: Vec<String> = c
        .ancestry
        .iter()
        .map(|a| format!("{}({})", a.comm, a.pid))
        .collect();
    out.extend(kv_wrapped("ancestry", &chain.join(" < "), w));
    if let Some(p) = &c.package {
        out.push(kv("package", p.clone()));
    }
    // Wrapped like every value, in the warning's colour.
    let warn = |out: &mut Vec<TextLine<'static>>, text: &str, color: Color| {
        for (n, part) in wrap(text, w).into_iter().enumerate() {
            let key = if n == 0 { "warning" } else { "" };
            out.push(TextLine::from(vec![
                Span::styled(format!("{key:<10}"), Style::default().fg(Color::Cyan)),
                Span::styled(part, Style::default().fg(color)),
            ]));
        }
    };
    if c.exe_deleted {
        let text = "its executable was deleted or replaced since it started";
        warn(&mut out, text, Color::Red);
    }
    if c.package.is_none() && c.exe.is_some() {
        warn(
            &mut out,
            "its executable is not from a package",
            Color::Yellow,
        );
    }
    if i.local.ip().is_unspecified() {
        warn(&mut out, "bound to every address", Color::Yellow);
    }
    if i.unexpected {
        warn(&mut out, "the policy expects no such listener", Color::Red);
    }
    out
}

/// The port's last holders, from the journal: `nginx(42) 12-04
/// 03:12:00 – 03:40:10`, newest first.
fn history_lines(app: &App, i: &Item, w: usize) -> Vec<TextLine<'static>> {
    let Some(h) = app
        .history
        .as_ref()
        .filter(|h| (h.proto, h.port) == (i.proto, i.local.port()))
    else {
        return Vec::new();
    };
    let short = |t: &DateTime<Utc>| t.format("%m-%d %H:%M:%S").to_string();
    match &h.holds {
        Err(why) => kv_wrapped("history", why, w),
        Ok(holds) if holds.is_empty() => kv_wrapped("history", "none in the journal", w),
        Ok(holds) => {
            let mut out = Vec::new();
            for (n, hold) in holds.iter().enumerate() {
                let until = match hold.closed {
                    Some(c) => short(&c),
                    None => "now".into(),
                };
                let text = format!(
                    "{}({}) {}{} – {until}",
                    portwatch::safe_text::safe_str(&hold.comm),
                    hold.pid,
                    if hold.opened_before { "≤" } else { "" },
                    short(&hold.opened)
                );
                out.extend(kv_wrapped(if n == 0 { "history" } else { "" }, &text, w));
            }
            out
        }
    }
}

fn details_lines(app: &App, d: &Details, w: usize) -> Vec<TextLine<'static>> {
    let mut out = Vec::new();
    let item = app.selected_item();
    if let Some(i) = item {
        out.extend(why_lines(i, w));
        out.extend(kv_wrapped("local", &i.local.to_string(), w));
        if let Some(r) = i.remote {
            out.extend(kv_wrapped("remote", &r.to_string(), w));
        }
        if let Some(e) = &i.exposure {
            out.extend(kv_wrapped(
                "exposure",
                &portwatch::output::exposure_text(e),
                w,
            ));
        }
        for p in &i.published {
            let text = format!(
                "{} (netns {}): {}",
                std::net::SocketAddr::new(p.address, p.port),
                p.netns,
                portwatch::output::exposure_text(&p.exposure)
            );
            out.extend(kv_wrapped("published", &text, w));
        }
        out.extend(history_lines(app, i, w));
    }
    let Some(p) = &d.info else {
        out.push(TextLine::from(if d.read {
            format!("process {} is gone, or not readable", d.pid)
        } else {
            format!("reading process {}…", d.pid)
        }));
        return out;
    };
    let now: DateTime<Utc> = app.now;
    out.push(kv("pid", p.pid.to_string()));
    out.push(kv("name", p.comm.clone()));
    out.push(kv(
        "user",
        format!(
            "{} ({})",
            item.map_or(String::new(), |i| i.user.clone()),
            p.uid
        ),
    ));
    let chain: Vec<String> = p
        .ancestry
        .iter()
        .rev()
        .map(|(pid, name)| format!("{name}({pid})"))
        .collect();
    out.extend(kv_wrapped(
        "parent",
        &format!("{} · {}", p.ppid, chain.join(" > ")),
        w,
    ));
    out.extend(kv_wrapped("exe", &p.exe, w));
    out.extend(kv_wrapped(
        "sha256",
        p.exe_sha256.as_deref().unwrap_or_else(|why| why),
        w,
    ));
    // Wrapped, not cut at the edge: the flags that matter are often last.
    // A process may make it megabytes long: at most CMDLINE_LINES.
    out.extend(kv_wrapped_at_most("cmdline", &p.cmdline, w, CMDLINE_LINES));
    out.extend(kv_wrapped("cwd", &p.cwd, w));
    out.extend(kv_wrapped("cgroup", &p.cgroup, w));
    out.push(kv(
        "container",
        p.container.as_ref().map_or("-".into(), |c| c.label()),
    ));
    out.push(kv(
        "memory",
        format!("{:.1} MiB", p.rss_bytes as f64 / 1048576.0),
    ));
    out.push(kv(
        "cpu",
        d.cpu_percent.map_or("…".into(), |c| format!("{c:.1}%")),
    ));
    out.push(kv(
        "uptime",
        p.start_time
            .map_or("?".into(), |t| duration_text((now - t).num_seconds())),
    ));
    out.push(kv("threads", p.threads.to_string()));
    out.push(kv("children", p.children.len().to_string()));
    out.extend(children_lines(&p.children, 5));
    out.push(kv("netns", p.netns.map_or("?".into(), |n| n.to_string())));
    let (items, _) = app.visible();
    let sockets: Vec<String> = items
        .iter()
        .filter(|i| i.pid == p.pid && !i.closed)
        .map(|i| format!("{} {} {}", i.proto, i.local, i.state))
        .collect();
    out.push(kv("sockets", sockets.len().to_string()));
    for s in sockets.iter().take(8) {
        out.extend(
            wrap(s, w + 8)
                .into_iter()
                .map(|l| TextLine::from(format!("  {l}"))),
        );
    }
    if sockets.len() > 8 {
        out.push(TextLine::from(format!("  and {} more", sockets.len() - 8)));
    }
    out.push(TextLine::from(Span::styled(
        "environment",
        Style::default().fg(Color::Cyan),
    )));
    for (k, v) in p.environ.iter().take(12) {
        out.extend(
            wrap(&format!("{k}={v}"), w + 8)
                .into_iter()
                .map(|l| TextLine::from(format!("  {l}"))),
        );
    }
    if p.environ.len() > 12 {
        out.push(TextLine::from(format!(
            "  and {} more",
            p.environ.len() - 12
        )));
    }
    out
}

fn draw_details(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(d) = &app.details else { return };
    // Inside the border, after the 10 cells of the key.
    let w = usize::from(area.width.saturating_sub(12));
    let mut lines = details_lines(app, d, w);
    // Too long for the pane: the last line says how much is below.
    let room = usize::from(area.height.saturating_sub(2));
    if lines.len() > room && room > 0 {
        let hidden = lines.len() - room + 1;
        lines.truncate(room - 1);
        lines.push(TextLine::from(Span::styled(
            format!("… {hidden} more lines (a taller terminal shows them)"),
            Style::default().fg(Color::DarkGray),
        )));
    }
    let p = Paragraph::new(lines).block(
        Block::default()
            .borders(Borders::ALL)
            .title(format!(" details · pid {} ", d.pid)),
    );
    frame.render_widget(p, area);
}

fn draw_log(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let lines: Vec<TextLine<'_>> = app
        .log
        .iter()
        .take(usize::from(area.height.saturating_sub(2)))
        .map(|e| {
            let (word, color) = if e.opened {
                ("opened", Color::Green)
            } else {
                ("closed", Color::Red)
            };
            let lived = e.lived.map_or(String::new(), |d| {
                let us = d.num_microseconds().unwrap_or(i64::MAX);
                if us < 1000 {
                    format!(" after {us} µs")
                } else if us < 1_000_000 {
                    format!(" after {:.1} ms", us as f64 / 1000.0)
                } else {
                    format!(" after {}", duration_text(us / 1_000_000))
                }
            });
            TextLine::from(vec![
                Span::raw(e.ts.format("%H:%M:%S%.6f ").to_string()),
                Span::styled(word, Style::default().fg(color)),
                Span::raw(format!(" {}{lived}", e.text)),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" event log ")),
        area,
    );
}

fn severity_style(s: &str) -> Style {
    match s {
        "Critical" => Style::default().fg(Color::White).bg(Color::Red),
        "Warning" => Style::default().fg(Color::Yellow),
        _ => Style::default().fg(Color::Cyan),
    }
}

fn draw_alerts(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let lines: Vec<TextLine<'_>> = if app.alerts.is_empty() {
        vec![TextLine::from("no alert has fired")]
    } else {
        app.alerts
            .iter()
            .take(usize::from(area.height.saturating_sub(2)))
            .map(|a| {
                TextLine::from(vec![
                    Span::raw(a.ts.format("%H:%M:%S ").to_string()),
                    Span::styled(
                        format!("{:<8}", a.severity.as_str()),
                        severity_style(a.severity.as_str()),
                    ),
                    // Rule names come from a file: escaped like every
                    // untrusted string, never stripped.
                    Span::raw(format!(" {}: {}", safe_str(&a.rule_name), a.message)),
                ])
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" alerts · last {} ", app.alerts.len())),
        ),
        area,
    );
}

/// The filter: being typed (`/ text▏`), or in force (`filter: 'text'`),
/// with its match count or its error, and how to leave it.
fn draw_filter(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let text = safe_str(&app.filter_text);
    let mut spans = if app.editing_filter {
        vec![Span::raw("/ "), Span::raw(text), Span::raw("▏")]
    } else {
        vec![
            Span::styled("filter: ", Style::default().fg(Color::Cyan)),
            Span::raw(format!("'{text}'")),
        ]
    };
    let dim = Style::default().fg(Color::DarkGray);
    match &app.filter_error {
        // The error itself is in the message line, wrapped.
        Some(_) => spans.push(Span::styled(
            "  not applied: every row is shown",
            Style::default().fg(Color::Red),
        )),
        None => {
            let n = app.counts().open as u64;
            spans.push(Span::styled(
                format!("  {}", count(n, "match", "matches")),
                dim,
            ));
        }
    }
    spans.push(Span::styled(
        if app.editing_filter {
            "  · Enter keep  Esc clear"
        } else {
            "  · / change  Esc clear"
        },
        dim,
    ));
    frame.render_widget(Paragraph::new(TextLine::from(spans)), area);
}

/// The latest message, wrapped: a fix at its end is never cut off.
fn draw_message(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (text, problem) = app.message();
    let style = if problem {
        Style::default().fg(Color::Red)
    } else {
        Style::default()
    };
    // Longer than its lines: its end shows (the fix is there), after `…`.
    let mut wrapped = wrap(text, usize::from(area.width));
    let room = usize::from(area.height);
    if wrapped.len() > room && room > 0 {
        wrapped.drain(..wrapped.len() - room);
        let first = &mut wrapped[0];
        first.replace_range(..first.chars().next().map_or(0, char::len_utf8), "…");
    }
    let lines: Vec<TextLine<'_>> = wrapped
        .into_iter()
        .map(|l| TextLine::from(Span::styled(l, style)))
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}

/// `1 event`, `2 events`.
fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The keys a newcomer needs, in the order they are dropped last.
fn key_hints(read_only: bool) -> Vec<(&'static str, &'static str)> {
    let mut hints = vec![("/", "filter"), ("Enter", "details")];
    if !read_only {
        hints.extend([("k", "kill"), ("E", "rules")]);
    }
    hints.extend([("?", "help"), ("q", "quit")]);
    hints
}

/// Live counts, from the state they describe, then the key hints that fit.
fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let s = &app.status;
    let live = app.live();
    let sep = Span::styled(" │ ", Style::default().fg(Color::DarkGray));
    let drops = s.stats.drops + s.lost;
    let mut spans = vec![
        Span::styled(
            s.backend.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        sep.clone(),
        Span::raw(format!(
            "{} tcp listening, {} udp bound",
            live.tcp, live.udp
        )),
        sep.clone(),
        Span::raw(count(s.events, "event", "events")),
        sep.clone(),
        Span::styled(
            count(drops, "drop", "drops"),
            if drops > 0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            },
        ),
        sep.clone(),
        Span::raw(count(s.resyncs, "resync", "resyncs")),
    ];
    if app.read_only {
        spans.push(sep);
        spans.push(Span::raw("read-only"));
    }
    let used: usize = spans.iter().map(|sp| sp.content.chars().count()).sum();
    let room = usize::from(area.width).saturating_sub(used + 2);
    // As many hints as fit, in their order; `? help` (which lists every
    // key) before any other.
    let all = key_hints(app.read_only);
    let len = |h: &[&(&str, &str)]| -> usize {
        h.iter()
            .map(|(k, w)| k.chars().count() + w.chars().count() + 3)
            .sum::<usize>()
    };
    let mut kept: Vec<&(&str, &str)> = all.iter().filter(|(k, _)| *k == "?").collect();
    for h in all.iter().filter(|(k, _)| *k != "?") {
        let mut with = kept.clone();
        with.push(h);
        if len(&with) <= room + 2 {
            kept = with;
        }
    }
    let hints = all
        .iter()
        .filter(|h| kept.contains(h))
        .map(|(k, w)| format!("{k} {w}"))
        .collect::<Vec<_>>()
        .join("  ");
    let pad = room.saturating_sub(hints.chars().count()) + 2;
    spans.push(Span::raw(" ".repeat(pad)));
    spans.push(Span::styled(hints, Style::default().fg(Color::DarkGray)));
    frame.render_widget(Paragraph::new(TextLine::from(spans)), area);
}

/// A box of `w` x `h` in the middle of the screen.
fn centered(frame: &Frame<'_>, w: u16, h: u16) -> Rect {
    let a = frame.area();
    let w = w.min(a.width);
    let h = h.min(a.height);
    Rect::new(a.x + (a.width - w) / 2, a.y + (a.height - h) / 2, w, h)
}

fn draw_help(frame: &mut Frame<'_>, app: &App) {
    let entries = keys::help(app.read_only);
    let lines: Vec<TextLine<'_>> = entries
        .iter()
        .map(|(k, what)| {
            TextLine::from(vec![
                Span::styled(format!("{k:>8}  "), Style::default().fg(Color::Cyan)),
                Span::raw(*what),
            ])
        })
        .collect();
    let area = centered(frame, 70, entries.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys · any key closes "),
        ),
        area,
    );
}

fn draw_kill(frame: &mut Frame<'_>, k: &KillDialog) {
    let signal = if k.kill { "SIGKILL" } else { "SIGTERM" };
    let mut lines = vec![TextLine::from(Span::styled(
        format!("Send {signal} to process {}?", k.pid),
        Style::default().add_modifier(Modifier::BOLD),
    ))];
    match (&k.info, &k.error) {
        (_, Some(e)) => lines.push(TextLine::from(Span::styled(
            e.clone(),
            Style::default().fg(Color::Red),
        ))),
        (None, None) => lines.push(TextLine::from("pinning the process…")),
        (Some(p), None) => {
            lines.push(kv("exe", shorten(&p.exe, 50)));
            lines.push(kv("name", p.comm.clone()));
            lines.push(kv(
                "started",
                p.start_time.map_or("?".into(), |t| {
                    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                }),
            ));
            lines.push(kv(
                "container",
                p.container.as_ref().map_or("-".into(), |c| c.label()),
            ));
            lines.push(kv("children", p.children.len().to_string()));
            lines.extend(children_lines(&p.children, 5));
            lines.push(kv("ports", k.ports.len().to_string()));
            for port in k.ports.iter().take(6) {
                lines.push(TextLine::from(format!("  {port}")));
            }
            if k.ports.len() > 6 {
                lines.push(TextLine::from(format!("  and {} more", k.ports.len() - 6)));
            }
        }
    }
    lines.push(TextLine::from(""));
    lines.push(TextLine::from(if k.info.is_some() {
        "y: send it   n / Esc: cancel"
    } else {
        "n / Esc: cancel"
    }));
    // The refusal says why and what to do: wrapped, never cut.
    let wrapped = k.error.as_ref().map_or(0, |e| e.chars().count() / 64);
    let area = centered(frame, 66, (lines.len() + wrapped) as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(Style::default().fg(Color::Red))
                    .title(format!(" {signal} ")),
            ),
        area,
    );
}

fn draw_editor(frame: &mut Frame<'_>, e: &Editor) {
    let mut lines = Vec::new();
    if let Some(why) = &e.read_only {
        lines.push(TextLine::from(Span::styled(
            format!("read-only: {why}"),
            Style::default().fg(Color::Red),
        )));
    }
    match &e.form {
        None => {
            if e.file.rules.is_empty() {
                lines.push(TextLine::from("no rules yet"));
            }
            for (i, r) in e.file.rules.iter().enumerate() {
                let line = format!(
                    "{} {:<24} {:<8} {:<38} {}s",
                    if r.enabled { "[x]" } else { "[ ]" },
                    shorten(&safe_str(&r.name), 24),
                    r.severity.as_str(),
                    shorten(&safe_str(&r.condition.summary()), 38),
                    r.cooldown_seconds
                );
                let style = if i == e.selected {
                    Style::default().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default()
                };
                lines.push(TextLine::from(Span::styled(line, style)));
            }
            lines.push(TextLine::from(""));
            lines.push(TextLine::from(
                "Enter edit  n new  d delete  Space on/off  Esc close",
            ));
        }
        Some(form) => {
            lines.push(TextLine::from(if form.index.is_some() {
                format!("editing rule `{}`", safe_str(&form.id))
            } else {
                "new rule".to_string()
            }));
            for (i, f) in form.fields.iter().enumerate() {
                let focused = i == form.focus;
                let value = match &f.kind {
                    super::editor::Kind::Choice(_) => format!("< {} >", safe_str(&f.value)),
                    super::editor::Kind::Text if focused => format!("{}▏", safe_str(&f.value)),
                    super::editor::Kind::Text => safe_str(&f.value),
                };
                lines.push(TextLine::from(vec![
                    Span::styled(
                        format!("{:>18}  ", f.label),
                        if focused {
                            Style::default()
                                .fg(Color::Yellow)
                                .add_modifier(Modifier::BOLD)
                        } else {
                            Style::default().fg(Color::Cyan)
                        },
                    ),
                    Span::raw(value),
                ]));
            }
            lines.push(TextLine::from(""));
            lines.push(TextLine::from(format!(
                "Tab/Shift-Tab move  ←/→ change  Enter save  Esc cancel   ({} types)",
                CONDITIONS.len()
            )));
        }
    }
    if let Some(err) = &e.error {
        lines.push(TextLine::from(Span::styled(
            err.clone(),
            Style::default().fg(Color::Red),
        )));
    }
    // A long problem wraps: room for its every line.
    let wrapped = e.error.as_ref().map_or(0, |err| err.chars().count() / 88);
    let area = centered(frame, 90, (lines.len() + wrapped) as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" alert rules "),
            ),
        area,
    );
}
