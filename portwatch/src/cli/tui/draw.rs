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
    view::{Column, Item, Line, cell},
};

/// Shortens `s` to at most `max` characters (never inside one), with `…`
/// where it was cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

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
    draw_status(frame, app, areas.status);
    match &app.dialog {
        Some(Dialog::Help) => draw_help(frame, app),
        Some(Dialog::Kill(k)) => draw_kill(frame, k),
        Some(Dialog::Editor(e)) => draw_editor(frame, e),
        None => {}
    }
}

fn row_style(item: &Item) -> Style {
    if item.closed {
        Style::default()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::CROSSED_OUT)
    } else if item.fresh {
        Style::default().fg(Color::Black).bg(Color::Yellow)
    } else {
        Style::default()
    }
}

fn cell_style(item: &Item, column: Column) -> Style {
    match column {
        Column::Proto if item.proto == portwatch::Proto::Udp => Style::default().fg(Color::Magenta),
        Column::Proto => Style::default().fg(Color::Cyan),
        Column::State => match item.state {
            "LISTEN" | "BOUND" => Style::default().fg(Color::Green),
            "ESTAB" => Style::default().fg(Color::Blue),
            "UNCONN" => Style::default().fg(Color::Magenta),
            "CLOSED" => Style::default().fg(Color::DarkGray),
            _ => Style::default().fg(Color::Yellow),
        },
        _ => Style::default(),
    }
}

fn draw_table(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (items, lines) = app.visible();
    let columns = app.columns();
    let (shown, total) = app.counts();
    let mut title = format!(" portwatch · {} · {total}", app.kind.title());
    if !app.filter_text.is_empty() {
        title.push_str(&format!(" ({shown} match)"));
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
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(table, area);
}

fn kv<'a>(key: &'a str, value: String) -> TextLine<'a> {
    TextLine::from(vec![
        Span::styled(format!("{key:<10}"), Style::default().fg(Color::Cyan)),
        Span::raw(value),
    ])
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

fn details_lines(app: &App, d: &Details, w: usize) -> Vec<TextLine<'static>> {
    let mut out = Vec::new();
    let item = app.selected_item();
    if let Some(i) = item {
        out.push(kv("local", shorten(&i.local.to_string(), w)));
        if let Some(r) = i.remote {
            out.push(kv("remote", r.to_string()));
        }
    }
    let Some(p) = &d.info else {
        out.push(TextLine::from(format!(
            "process {} is gone, or not readable",
            d.pid
        )));
        return out;
    };
    let now: DateTime<Utc> = app.now;
    out.push(kv("pid", p.pid.to_string()));
    out.push(kv("name", p.comm.clone()));
    out.push(kv("exe", shorten(&p.exe, w)));
    out.push(kv("cwd", shorten(&p.cwd, w)));
    let chain: Vec<String> = p
        .ancestry
        .iter()
        .rev()
        .map(|(pid, name)| format!("{name}({pid})"))
        .collect();
    out.push(kv(
        "parent",
        shorten(&format!("{} · {}", p.ppid, chain.join(" > ")), w),
    ));
    out.push(kv(
        "user",
        format!(
            "{} ({})",
            item.map_or(String::new(), |i| i.user.clone()),
            p.uid
        ),
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
    out.push(kv("children", p.children.to_string()));
    out.push(kv("cmdline", shorten(&p.cmdline, w * 3)));
    out.push(kv("cgroup", shorten(&p.cgroup, w)));
    out.push(kv(
        "container",
        p.container.as_ref().map_or("-".into(), |c| c.label()),
    ));
    out.push(kv("netns", p.netns.map_or("?".into(), |n| n.to_string())));
    let (items, _) = app.visible();
    let sockets: Vec<String> = items
        .iter()
        .filter(|i| i.pid == p.pid && !i.closed)
        .map(|i| format!("{} {} {}", i.proto, i.local, i.state))
        .collect();
    out.push(kv("sockets", sockets.len().to_string()));
    for s in sockets.iter().take(8) {
        out.push(TextLine::from(format!("  {}", shorten(s, w))));
    }
    out.push(TextLine::from(Span::styled(
        "environment",
        Style::default().fg(Color::Cyan),
    )));
    for (k, v) in p.environ.iter().take(12) {
        out.push(TextLine::from(format!(
            "  {}",
            shorten(&format!("{k}={v}"), w)
        )));
    }
    out
}

fn draw_details(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(d) = &app.details else { return };
    let w = usize::from(area.width.saturating_sub(13));
    let p = Paragraph::new(details_lines(app, d, w)).block(
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

fn draw_filter(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut spans = vec![
        Span::raw("/ "),
        Span::raw(app.filter_text.clone()),
        Span::raw("▏"),
    ];
    match &app.filter_error {
        Some(e) => spans.push(Span::styled(
            format!("  {e}"),
            Style::default().fg(Color::Red),
        )),
        None => spans.push(Span::styled(
            format!("  {} match", app.counts().0),
            Style::default().fg(Color::DarkGray),
        )),
    }
    frame.render_widget(Paragraph::new(TextLine::from(spans)), area);
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let s = &app.status;
    let sep = Span::styled(" │ ", Style::default().fg(Color::DarkGray));
    let mut spans = vec![
        Span::styled(
            s.backend.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        sep.clone(),
        Span::raw(format!("{} events", s.stats.events)),
        sep.clone(),
        Span::styled(
            format!("{} drops", s.stats.drops),
            if s.stats.drops > 0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            },
        ),
        sep.clone(),
        Span::raw(format!("{} resyncs", s.stats.resyncs)),
    ];
    if app.read_only {
        spans.push(sep.clone());
        spans.push(Span::raw("read-only"));
    }
    spans.push(sep);
    spans.push(Span::raw(s.message.clone()));
    let help = Span::styled("  ? help  q quit", Style::default().fg(Color::DarkGray));
    let used: usize = spans.iter().map(|sp| sp.content.chars().count()).sum();
    let room = usize::from(area.width).saturating_sub(used + 16);
    spans.push(Span::raw(" ".repeat(room)));
    spans.push(help);
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
            lines.push(kv("children", p.children.to_string()));
            lines.push(kv("ports", k.ports.len().to_string()));
            for port in k.ports.iter().take(6) {
                lines.push(TextLine::from(format!("  {port}")));
            }
            if k.ports.len() > 6 {
                lines.push(TextLine::from(format!("  … {} more", k.ports.len() - 6)));
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
                    "{} {:<24} {:<8} {:<24} {}s",
                    if r.enabled { "[x]" } else { "[ ]" },
                    shorten(&safe_str(&r.name), 24),
                    r.severity.as_str(),
                    r.condition.type_name(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortening_keeps_whole_characters() {
        assert_eq!(shorten("nginx", 10), "nginx");
        assert_eq!(shorten("服务服务服务", 4), "服务服…");
        assert_eq!(shorten("abc", 0), "");
        assert_eq!(shorten("\u{1f600}\u{1f600}", 1), "…");
    }
}
