//! The TUI's state and what each input does to it. Pure: the inputs are
//! monitor events, keys, mouse events, ticks and the answers to the
//! effects it asks the runtime for; the time is passed in.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use portwatch::{
    Change, Listener, MonitorEvent, PortEvent, Source, Stats, process::ProcessInfo,
    rules::eval::Alert, rules::model::AlertsFile, socket::SocketInfo,
};
use ratatui::layout::Rect;

use super::{
    editor::{Editor, Outcome},
    filter::Query,
    keys::{Action, action_for},
    layout::Areas,
    view::{self, Column, Item, Kind, Line, ProcSummary, RowKey, Sort},
};

/// How long a new row is highlighted, and a closed row stays dimmed.
pub const HIGHLIGHT: TimeDelta = TimeDelta::seconds(3);
pub const LINGER: TimeDelta = TimeDelta::seconds(3);
const LOG_CAP: usize = 1000;
const ALERTS_CAP: usize = 100;

/// What the runtime is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Quit,
    Resync,
    /// Full details of a process, for the details pane.
    Inspect(u32),
    /// Executable, command line and ancestry of new owners, for the filter
    /// and the tree.
    Describe(Vec<u32>),
    /// Every socket, for the all-sockets view.
    LoadSockets,
    /// Pin a process for a signal (`kill`: SIGKILL, else SIGTERM), if it
    /// still holds the row's socket (`proto`, `local`, `netns`).
    Pin {
        pid: u32,
        kill: bool,
        socket: (portwatch::Proto, std::net::SocketAddr, u64),
    },
    /// The user confirmed: signal the pinned process (`kill`: SIGKILL).
    Signal {
        kill: bool,
    },
    /// The user declined: let the pinned process go.
    Unpin,
    Export {
        csv: bool,
        text: String,
    },
    /// Save `file` over the file the editor read (`base`), unless another
    /// writer changed it since.
    SaveRules {
        base: AlertsFile,
        file: AlertsFile,
    },
}

/// One line of the event log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub ts: DateTime<Utc>,
    pub opened: bool,
    pub text: String,
    /// How long the listener lived, for a close.
    pub lived: Option<TimeDelta>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    None,
    Log,
    Alerts,
}

/// The kill confirmation: what the signal would hit.
#[derive(Clone, Debug, PartialEq)]
pub struct KillDialog {
    pub pid: u32,
    pub kill: bool,
    /// The pinned process, once pinned.
    pub info: Option<Box<ProcessInfo>>,
    /// Ports the process holds, as `proto address:port`.
    pub ports: Vec<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Dialog {
    Help,
    Kill(KillDialog),
    Editor(Editor),
}

/// The last holders of the selected row's port, from the journal.
#[derive(Clone, Debug, PartialEq)]
pub struct PortHistory {
    pub proto: portwatch::Proto,
    pub port: u16,
    /// Newest first; or why there is no history.
    pub holds: Result<Vec<portwatch::journal::history::Hold>, String>,
}

/// The details pane.
#[derive(Clone, Debug, PartialEq)]
pub struct Details {
    pub pid: u32,
    pub info: Option<ProcessInfo>,
    pub cpu_percent: Option<f64>,
    /// The previous sample: (cpu ticks, when).
    prev: Option<(u64, DateTime<Utc>)>,
    /// /proc was read for this pid (`info` None then means it is gone).
    pub read: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    pub backend: String,
    /// Why the eBPF backend could not be used, when it could not.
    pub fallback: Option<String>,
    /// The kernel's counters, when this process can read them.
    pub stats: Stats,
    /// Opens and closes this screen received after the baseline.
    pub events: u64,
    /// Resyncs this screen was told of.
    pub resyncs: u64,
    /// Events a daemon dropped for this screen (`--connect`).
    pub lost: u64,
    pub message: String,
    pub ready: bool,
}

/// What the table holds at the frame it is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Open rows that the filter admits.
    pub open: usize,
    /// Closed rows that the filter admits (dimmed until they go).
    pub closed: usize,
    /// Lines of the table, headers included.
    pub lines: usize,
}

/// Live listeners by protocol, whatever the filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub tcp: usize,
    pub udp: usize,
}

struct Tracked {
    listener: Listener,
    user: String,
    /// When it opened; unknown for what was listening before portwatch.
    opened_at: Option<DateTime<Utc>>,
    /// When a live open appeared here (highlighted until HIGHLIGHT after).
    seen_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    /// The policy expects no such listener.
    unexpected: bool,
}

/// Everything the screen shows.
pub struct App {
    pub read_only: bool,
    listeners: BTreeMap<RowKey, Tracked>,
    sockets: Vec<Item>,
    procs: BTreeMap<u32, ProcSummary>,
    pub log: VecDeque<LogEntry>,
    pub alerts: VecDeque<Alert>,
    pub kind: Kind,
    pub sort: Sort,
    pub filter_text: String,
    pub filter_error: Option<String>,
    query: Query,
    pub editing_filter: bool,
    selected: Option<RowKey>,
    /// The selection's line when last seen: where the next one is taken
    /// from if its row goes.
    selected_at: usize,
    /// The view sits at the top: the selection is the first row, whatever
    /// arrives above it (at start, after Home, after a change of view).
    at_top: bool,
    pub offset: usize,
    /// While paused: the frozen view, and the events since.
    frozen: Option<(Vec<Item>, Vec<Line>, u64)>,
    pub pane: Pane,
    pub details: Option<Details>,
    /// The journal's last holders of the selected port (None: to read).
    pub history: Option<PortHistory>,
    pub dialog: Option<Dialog>,
    pub status: Status,
    /// The rules file the editor edits, or why it cannot.
    rules: Result<AlertsFile, String>,
    items: Vec<Item>,
    lines: Vec<Line>,
    pub areas: Areas,
    pub now: DateTime<Utc>,
    dirty: bool,
    /// Events changed the rows; `prepare` rebuilds them.
    stale: bool,
}

/// The key of a listener's row.
pub fn row_key(l: &Listener) -> RowKey {
    match l.cookie {
        Some(c) => RowKey::Cookie(c),
        None => RowKey::Socket {
            proto: l.proto,
            netns: l.netns,
            local: l.socket(),
            pid: l.pid,
        },
    }
}

impl App {
    pub fn new(read_only: bool, filter: &str, now: DateTime<Utc>) -> Self {
        let mut app = App {
            read_only,
            listeners: BTreeMap::new(),
            sockets: Vec::new(),
            procs: BTreeMap::new(),
            log: VecDeque::new(),
            alerts: VecDeque::new(),
            kind: Kind::Listeners,
            sort: Sort::default(),
            filter_text: filter.to_string(),
            filter_error: None,
            query: Query::default(),
            editing_filter: false,
            selected: None,
            selected_at: 0,
            at_top: true,
            offset: 0,
            frozen: None,
            pane: Pane::None,
            details: None,
            history: None,
            dialog: None,
            status: Status::default(),
            rules: Err("no alerts file has been read".into()),
            items: Vec::new(),
            lines: Vec::new(),
            areas: Areas::default(),
            now,
            dirty: true,
            stale: false,
        };
        app.set_filter(filter.to_string());
        app
    }

    /// The rules file as read (or why it cannot be edited).
    pub fn set_rules(&mut self, rules: Result<AlertsFile, String>) {
        self.rules = rules;
    }

    /// Whether anything changed since the last call: the screen needs a
    /// redraw.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Rebuilds the rows if events changed them since: a burst of events
    /// costs one rebuild per frame, not one per event.
    pub fn prepare(&mut self) {
        if self.stale {
            self.refresh();
        }
    }

    // ---- what the table shows ----

    /// The items and lines on screen (frozen while paused).
    pub fn visible(&self) -> (&[Item], &[Line]) {
        match &self.frozen {
            Some((items, lines, _)) => (items, lines),
            None => (&self.items, &self.lines),
        }
    }

    /// Events that arrived while paused.
    pub fn paused_events(&self) -> Option<u64> {
        self.frozen.as_ref().map(|f| f.2)
    }

    /// The rows the table shows now, counted from its lines.
    pub fn counts(&self) -> Counts {
        let (items, lines) = self.visible();
        let mut c = Counts {
            lines: lines.len(),
            ..Counts::default()
        };
        for l in lines {
            if let Line::Item { index, .. } = l {
                if items[*index].closed {
                    c.closed += 1;
                } else {
                    c.open += 1;
                }
            }
        }
        c
    }

    /// The listeners open now, by protocol (live even while paused).
    pub fn live(&self) -> Live {
        let mut live = Live::default();
        for t in self.listeners.values().filter(|t| t.closed_at.is_none()) {
            match t.listener.proto {
                portwatch::Proto::Tcp => live.tcp += 1,
                portwatch::Proto::Udp => live.udp += 1,
            }
        }
        live
    }

    /// The first and last line on screen (from 1) and how many there are,
    /// when some are off screen.
    pub fn scroll_position(&self) -> Option<(usize, usize, usize)> {
        let height = usize::from(self.areas.table_rows());
        let total = self.visible().1.len();
        (height > 0 && total > height)
            .then(|| (self.offset + 1, (self.offset + height).min(total), total))
    }

    /// The line index of the selection.
    pub fn selected_line(&self) -> Option<usize> {
        let (items, lines) = self.visible();
        let key = self.selected.as_ref()?;
        lines.iter().position(|l| match l {
            Line::Item { index, .. } => items[*index].key == *key,
            Line::Header { .. } => false,
        })
    }

    pub fn selected_item(&self) -> Option<&Item> {
        let (items, lines) = self.visible();
        match lines.get(self.selected_line()?)? {
            Line::Item { index, .. } => items.get(*index),
            Line::Header { .. } => None,
        }
    }

    /// The message line's text, and whether it is a problem: a filter
    /// that does not parse says why there, in full; else the latest
    /// message.
    pub fn message(&self) -> (&str, bool) {
        match &self.filter_error {
            Some(e) => (e, true),
            None => (&self.status.message, false),
        }
    }

    /// Places the screen's parts for a terminal of `size`, then scrolls
    /// for that height.
    pub fn lay_out(&mut self, size: Rect) {
        self.areas = Areas::compute(
            size,
            self.columns(),
            self.sort.column,
            self.details.is_some(),
            self.pane != Pane::None,
            self.editing_filter || !self.filter_text.is_empty(),
            super::layout::message_lines(self.message().0, size.width),
        );
        self.scroll_to_selection();
    }

    /// Rebuilds the rows now (after a change of view, filter or sort).
    fn refresh(&mut self) {
        self.stale = false;
        self.items = match self.kind {
            Kind::AllSockets => self.sockets.clone(),
            _ => self
                .listeners
                .iter()
                .map(|(key, t)| Item {
                    key: key.clone(),
                    proto: t.listener.proto,
                    // A UDP port is bound, not listening (0.1.8 said LISTEN).
                    state: match (t.closed_at, t.listener.proto) {
                        (Some(_), _) => "CLOSED",
                        (None, portwatch::Proto::Udp) => "BOUND",
                        (None, portwatch::Proto::Tcp) => "LISTEN",
                    },
                    local: t.listener.socket(),
                    remote: None,
                    pid: t.listener.pid,
                    process: t.listener.comm.clone(),
                    uid: t.listener.uid,
                    user: t.user.clone(),
                    container: t
                        .listener
                        .container
                        .as_ref()
                        .map(|c| c.label())
                        .unwrap_or_default(),
                    netns: t.listener.netns,
                    exposure: t.listener.exposure.clone(),
                    published: t.listener.published_as.clone(),
                    context: t.listener.context.clone(),
                    opened_at: t.opened_at,
                    fresh: t.closed_at.is_none()
                        && t.seen_at.is_some_and(|s| self.now - s < HIGHLIGHT),
                    closed: t.closed_at.is_some(),
                    unexpected: t.unexpected,
                })
                .collect(),
        };
        self.lines = view::build(&self.items, &self.procs, &self.query, self.sort, self.kind);
        self.keep_selection();
        self.dirty = true;
    }

    /// Keeps the selection on its row (by identity) while that row is
    /// shown; at the top, on the first row; when its row went, on the row
    /// that took its place.
    fn keep_selection(&mut self) {
        let (items, lines) = self.visible();
        let key_at = |i: usize| match lines.get(i) {
            Some(Line::Item { index, .. }) => Some(items[*index].key.clone()),
            _ => None,
        };
        let item_lines = || (0..lines.len()).filter(|&i| key_at(i).is_some());
        let line = if self.at_top {
            item_lines().next()
        } else if let Some(i) = self.selected_line() {
            Some(i)
        } else {
            // The nearest item line at or before where it was, else after.
            let was = self.selected_at;
            item_lines()
                .take_while(|&i| i <= was)
                .last()
                .or_else(|| item_lines().next())
        };
        // With no row to select (a filter that matches nothing, the
        // moment before a fresh baseline), the chosen row is kept for when
        // it shows again.
        if let Some(line) = line {
            self.selected = key_at(line);
            self.selected_at = line;
        }
        self.scroll_to_selection();
        self.follow_details();
    }

    /// Scrolls so that the screen is full and the selection on it (once
    /// the layout is known). Called again after each layout.
    pub fn scroll_to_selection(&mut self) {
        let height = usize::from(self.areas.table_rows());
        if height == 0 {
            return;
        }
        let total = self.visible().1.len();
        // No empty screen below the last line: rows that went (a burst
        // closing) give their room back to the rows above.
        self.offset = self.offset.min(total.saturating_sub(height));
        if self.at_top {
            self.offset = 0;
        }
        if let Some(i) = self.selected_line() {
            self.selected_at = i;
            if i < self.offset {
                self.offset = i;
            } else if i >= self.offset + height {
                self.offset = i + 1 - height;
            }
        }
    }

    fn set_filter(&mut self, text: String) {
        match Query::parse(&text) {
            Ok(q) => {
                self.query = q;
                self.filter_error = None;
            }
            // A wrong filter filters nothing: every row and the error,
            // never rows picked by a part of it.
            // The error quotes what was typed (or pasted): escaped.
            Err(e) => {
                self.query = Query::default();
                self.filter_error = Some(portwatch::safe_text::safe_str(&e));
            }
        }
        self.filter_text = text;
        self.refresh();
    }

    // ---- inputs ----

    /// A monitor event. `user` names uids.
    pub fn on_monitor(
        &mut self,
        ev: MonitorEvent,
        user: &mut dyn FnMut(u32) -> String,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Some((_, _, pending)) = &mut self.frozen
            && matches!(ev, MonitorEvent::Port(_))
        {
            *pending += 1;
        }
        match ev {
            MonitorEvent::Port(ev) => {
                if let Some(e) = self.on_port(ev, user) {
                    effects.push(e);
                }
            }
            MonitorEvent::ExposureChanged(c) => {
                let key = c.listener.key();
                for t in self.listeners.values_mut() {
                    if t.closed_at.is_none() && t.listener.key() == key {
                        t.listener.exposure.clone_from(&c.listener.exposure);
                        t.listener.published_as.clone_from(&c.listener.published_as);
                    }
                }
                self.status.message = portwatch::output::exposure_change_line(&c);
                self.stale = true;
                self.dirty = true;
            }
            MonitorEvent::Ready(r) => {
                self.status.ready = true;
                // The count is the status bar's, live; the reason for a
                // fallback stays until something else is said.
                self.status.message = match &self.status.fallback {
                    Some(why) => format!("watching with {}: {why}", r.backend),
                    None => format!("watching with {}", r.backend),
                };
            }
            MonitorEvent::Resync(s) => {
                self.status.resyncs += 1;
                if s.opened + s.closed > 0 {
                    self.status.message = format!(
                        "resync ({}): {} opened, {} closed",
                        s.reason.as_str(),
                        s.opened,
                        s.closed
                    );
                }
            }
            MonitorEvent::Alert(a) => {
                self.status.message = format!("{} alert: {}", a.severity.as_str(), a.message);
                self.alerts.push_front(a);
                self.alerts.truncate(ALERTS_CAP);
            }
            MonitorEvent::Notice(n) => self.status.message = n.message,
            MonitorEvent::Drift(d) => {
                if let Some(l) = &d.listener
                    && let Some(t) = self.listeners.get_mut(&row_key(l))
                {
                    // Unexpected, or back to expected (closed or now
                    // matched by a new policy).
                    t.unexpected = d.kind == portwatch::policy::drift::DriftKind::Unexpected;
                }
                if d.kind != portwatch::policy::drift::DriftKind::Expected {
                    self.status.message = portwatch::output::drift_line(&d);
                }
                self.stale = true;
            }
            // What a newer library adds is not shown.
            _ => {}
        }
        self.dirty = true;
        effects
    }

    fn on_port(&mut self, ev: PortEvent, user: &mut dyn FnMut(u32) -> String) -> Option<Effect> {
        let key = row_key(&ev.listener);
        let l = &ev.listener;
        let what = format!(
            "{} {}:{} {} ({})",
            l.proto,
            view::address_text(l.socket()),
            l.port,
            if l.comm.is_empty() { "?" } else { &l.comm },
            l.pid
        );
        let opened = ev.change == Change::Opened;
        let lived = match (&ev.change, self.listeners.get(&key)) {
            (Change::Closed, Some(t)) => t.opened_at.map(|o| ev.ts - o),
            _ => None,
        };
        // The log tells what happens; the baseline is what was.
        if ev.source != Source::Baseline {
            self.status.events += 1;
            self.log.push_front(LogEntry {
                ts: ev.ts,
                opened,
                text: what,
                lived,
            });
            self.log.truncate(LOG_CAP);
        }
        // A new holder of the port shown: its history is read again.
        if self
            .history
            .as_ref()
            .is_some_and(|h| (h.proto, h.port) == (ev.listener.proto, ev.listener.port))
        {
            self.history = None;
        }
        let describe = (ev.listener.pid != 0 && !self.procs.contains_key(&ev.listener.pid))
            .then(|| Effect::Describe(vec![ev.listener.pid]));
        match ev.change {
            Change::Opened => {
                let name = user(ev.listener.uid);
                let live = ev.source != Source::Baseline;
                self.listeners.insert(
                    key,
                    Tracked {
                        opened_at: ev.listener.opened_at.or(live.then_some(ev.ts)),
                        listener: ev.listener,
                        user: name,
                        seen_at: live.then_some(self.now),
                        closed_at: None,
                        unexpected: false,
                    },
                );
            }
            Change::Closed => {
                if let Some(t) = self.listeners.get_mut(&key) {
                    t.closed_at = Some(self.now);
                }
            }
        }
        if self.kind != Kind::AllSockets {
            self.stale = true;
        }
        describe
    }

    /// The daemon dropped events of this client: what it showed may be
    /// stale, and the fresh baseline that follows replaces it.
    pub fn on_lost(&mut self, events: u64) {
        self.listeners.clear();
        self.status.lost += events;
        self.stale = true;
        self.status.message =
            format!("fell behind the daemon and lost {events} events; showing a fresh baseline");
        self.dirty = true;
    }

    pub fn set_stats(&mut self, stats: Stats) {
        if self.status.stats != stats {
            self.status.stats = stats;
            self.dirty = true;
        }
    }

    /// The clock's second: highlights end, closed rows go, ages grow; the
    /// sampling tick (`sample`) also refreshes the details and the
    /// all-sockets view.
    pub fn on_tick(&mut self, now: DateTime<Utc>, sample: bool) -> Vec<Effect> {
        self.now = now;
        self.listeners
            .retain(|_, t| t.closed_at.is_none_or(|c| now - c < LINGER));
        let mut effects = Vec::new();
        if sample {
            if let Some(d) = &self.details {
                effects.push(Effect::Inspect(d.pid));
            }
            if self.kind == Kind::AllSockets {
                effects.push(Effect::LoadSockets);
            }
        }
        if self.kind != Kind::AllSockets {
            self.stale = true;
        }
        // The age column changes every second.
        self.dirty = true;
        effects
    }

    pub fn on_described(&mut self, pid: u32, summary: ProcSummary) {
        self.procs.insert(pid, summary);
        // Rebuilt once per frame: a burst of new owners is one rebuild.
        self.stale = true;
        self.dirty = true;
    }

    pub fn on_sockets(&mut self, sockets: Vec<SocketInfo>, user: &mut dyn FnMut(u32) -> String) {
        self.sockets = sockets
            .into_iter()
            .map(|s| Item {
                key: match s.cookie {
                    Some(c) => RowKey::Cookie(c),
                    None => RowKey::Socket {
                        proto: s.proto,
                        netns: s.netns,
                        local: s.local,
                        pid: s.pid,
                    },
                },
                proto: s.proto,
                state: s.state.as_str(),
                local: s.local,
                remote: s.remote,
                pid: s.pid,
                user: user(s.uid),
                uid: s.uid,
                process: s.comm,
                container: s.container.as_ref().map(|c| c.label()).unwrap_or_default(),
                netns: s.netns,
                exposure: None,
                published: Vec::new(),
                context: None,
                opened_at: None,
                fresh: false,
                closed: false,
                unexpected: false,
            })
            .collect();
        if self.kind == Kind::AllSockets {
            self.refresh();
        }
    }

    pub fn on_inspected(&mut self, info: Option<ProcessInfo>) {
        let Some(d) = &mut self.details else { return };
        if let Some(i) = &info {
            if i.pid != d.pid {
                return;
            }
            if let Some((ticks, at)) = d.prev {
                let secs = (self.now - at).num_milliseconds() as f64 / 1000.0;
                if secs > 0.0 {
                    let used =
                        i.cpu_ticks.saturating_sub(ticks) as f64 / i.ticks_per_second.max(1) as f64;
                    d.cpu_percent = Some(100.0 * used / secs);
                }
            }
            d.prev = Some((i.cpu_ticks, self.now));
        }
        d.info = info;
        d.read = true;
        self.dirty = true;
    }

    pub fn on_pinned(&mut self, result: Result<ProcessInfo, String>) {
        let Some(Dialog::Kill(k)) = &mut self.dialog else {
            return;
        };
        match result {
            Ok(info) => {
                k.ports = self
                    .listeners
                    .values()
                    .filter(|t| t.listener.pid == info.pid && t.closed_at.is_none())
                    .map(|t| format!("{} {}", t.listener.proto, t.listener.socket()))
                    .collect();
                k.info = Some(Box::new(info));
            }
            Err(e) => k.error = Some(e),
        }
        self.dirty = true;
    }

    pub fn on_signalled(&mut self, result: Result<String, String>) {
        self.status.message = match result {
            Ok(m) | Err(m) => m,
        };
        self.dirty = true;
    }

    pub fn on_exported(&mut self, result: Result<String, String>) {
        self.status.message = match result {
            Ok(path) => format!("exported the view to {path}"),
            Err(e) => format!("export failed: {e}"),
        };
        self.dirty = true;
    }

    /// The save was refused because another writer changed the file:
    /// the editor shows the file as it is now, and why nothing was saved.
    pub fn on_rules_changed_on_disk(&mut self, why: String, now: Result<AlertsFile, String>) {
        if let Some(Dialog::Editor(e)) = &mut self.dialog {
            match &now {
                Ok(file) => e.saved(file.clone()),
                Err(bad) => e.read_only = Some(bad.clone()),
            }
            e.error = Some(why);
        }
        self.rules = now;
        self.dirty = true;
    }

    pub fn on_rules_saved(&mut self, result: Result<AlertsFile, String>) {
        match result {
            Ok(file) => {
                self.status.message = "rules saved (the previous file is alerts.json.bak)".into();
                if let Some(Dialog::Editor(e)) = &mut self.dialog {
                    e.saved(file.clone());
                }
                self.rules = Ok(file);
            }
            Err(e) => {
                if let Some(Dialog::Editor(ed)) = &mut self.dialog {
                    ed.error = Some(e);
                }
            }
        }
        self.dirty = true;
    }

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.prepare();
        self.dirty = true;
        if let Some(dialog) = &mut self.dialog {
            return match dialog {
                Dialog::Help => {
                    self.dialog = None;
                    Vec::new()
                }
                Dialog::Kill(k) => match key.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') if k.info.is_some() => {
                        let kill = k.kill;
                        self.dialog = None;
                        vec![Effect::Signal { kill }]
                    }
                    KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                        self.dialog = None;
                        vec![Effect::Unpin]
                    }
                    _ => Vec::new(),
                },
                Dialog::Editor(e) => match e.on_key(key) {
                    Outcome::Stay => Vec::new(),
                    Outcome::Close => {
                        self.dialog = None;
                        Vec::new()
                    }
                    Outcome::Save(file) => vec![Effect::SaveRules {
                        base: e.file.clone(),
                        file,
                    }],
                },
            };
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                // Esc cancels: no filter, as in portwatch 0.1.8.
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.set_filter(String::new());
                }
                KeyCode::Backspace => {
                    let mut t = self.filter_text.clone();
                    t.pop();
                    self.set_filter(t);
                }
                KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                    let t = format!("{}{c}", self.filter_text);
                    self.set_filter(t);
                }
                _ => {}
            }
            return Vec::new();
        }
        let Some(action) = action_for(key, self.read_only) else {
            return Vec::new();
        };
        let mut effects = self.on_action(action);
        // A selection that moved under an open details pane.
        if let Some(pid) = self.pending_inspect()
            && !effects.contains(&Effect::Inspect(pid))
        {
            effects.push(Effect::Inspect(pid));
        }
        effects
    }

    fn on_action(&mut self, action: Action) -> Vec<Effect> {
        let page = usize::from(self.areas.table_rows()).max(1);
        match action {
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PageUp => self.move_selection(-(page as isize)),
            Action::PageDown => self.move_selection(page as isize),
            Action::Home => {
                self.at_top = true;
                self.keep_selection();
                self.follow_details();
            }
            Action::End => self.move_selection(isize::MAX / 2),
            Action::Details => {
                if self.details.is_some() {
                    self.details = None;
                } else if let Some(item) = self.selected_item().filter(|i| i.pid != 0) {
                    let pid = item.pid;
                    // Details are about this row: it stays selected.
                    self.at_top = false;
                    self.details = Some(Details {
                        pid,
                        info: None,
                        cpu_percent: None,
                        prev: None,
                        read: false,
                    });
                    return vec![Effect::Inspect(pid)];
                }
            }
            Action::Filter => self.editing_filter = true,
            Action::SortColumn => {
                let cols = self.kind.columns();
                let i = cols
                    .iter()
                    .position(|c| *c == self.sort.column)
                    .unwrap_or(0);
                self.sort.column = cols[(i + 1) % cols.len()];
                self.refresh();
            }
            Action::SortDirection => {
                self.sort.ascending = !self.sort.ascending;
                self.refresh();
            }
            Action::Pause => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => Some((self.items.clone(), self.lines.clone(), 0)),
                };
                self.keep_selection();
            }
            Action::Terminate | Action::Kill => {
                let kill = action == Action::Kill;
                match self
                    .selected_item()
                    .map(|i| (i.pid, (i.proto, i.local, i.netns)))
                {
                    Some((pid, socket)) if pid != 0 => {
                        self.dialog = Some(Dialog::Kill(KillDialog {
                            pid,
                            kill,
                            info: None,
                            ports: Vec::new(),
                            error: None,
                        }));
                        return vec![Effect::Pin { pid, kill, socket }];
                    }
                    _ => self.status.message = "no process to signal on this row".into(),
                }
            }
            Action::ViewAll => {
                self.kind = if self.kind == Kind::AllSockets {
                    Kind::Listeners
                } else {
                    Kind::AllSockets
                };
                self.after_view_change();
                if self.kind == Kind::AllSockets {
                    return vec![Effect::LoadSockets];
                }
            }
            Action::ViewTree => {
                self.kind = if self.kind == Kind::Tree {
                    Kind::Listeners
                } else {
                    Kind::Tree
                };
                self.after_view_change();
            }
            Action::ViewGroups => {
                self.kind = if self.kind == Kind::Groups {
                    Kind::Listeners
                } else {
                    Kind::Groups
                };
                self.after_view_change();
            }
            Action::Log => {
                self.pane = if self.pane == Pane::Log {
                    Pane::None
                } else {
                    Pane::Log
                }
            }
            Action::Alerts => {
                self.pane = if self.pane == Pane::Alerts {
                    Pane::None
                } else {
                    Pane::Alerts
                }
            }
            Action::Editor => {
                self.dialog = Some(Dialog::Editor(match &self.rules {
                    Ok(file) => Editor::new(file.clone(), None),
                    Err(why) => Editor::new(AlertsFile::default(), Some(why.clone())),
                }));
            }
            Action::Resync => {
                self.status.message = "resync asked for".into();
                return vec![Effect::Resync];
            }
            Action::ExportJson | Action::ExportCsv => {
                let csv = action == Action::ExportCsv;
                return vec![Effect::Export {
                    csv,
                    text: {
                        let (items, lines) = self.visible();
                        super::export::view(self.columns(), items, lines, self.now, csv)
                    },
                }];
            }
            Action::Help => self.dialog = Some(Dialog::Help),
            // The innermost thing open closes first; last, the filter.
            Action::Back => {
                if self.details.is_some() {
                    self.details = None;
                } else if self.pane != Pane::None {
                    self.pane = Pane::None;
                } else if !self.filter_text.is_empty() {
                    self.set_filter(String::new());
                }
            }
            Action::Quit => return vec![Effect::Quit],
        }
        Vec::new()
    }

    fn after_view_change(&mut self) {
        self.sort = Sort::default();
        self.offset = 0;
        self.at_top = true;
        self.refresh();
    }

    /// Moves the selection by `delta` item lines (headers are skipped).
    fn move_selection(&mut self, delta: isize) {
        let (items, lines) = self.visible();
        let rows: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, Line::Item { .. }))
            .map(|(i, _)| i)
            .collect();
        if rows.is_empty() {
            return;
        }
        let current = self
            .selected_line()
            .and_then(|l| rows.iter().position(|r| *r == l))
            .unwrap_or(0);
        let next = (current as isize)
            .saturating_add(delta)
            .clamp(0, rows.len() as isize - 1) as usize;
        if let Line::Item { index, .. } = &lines[rows[next]] {
            self.selected = Some(items[*index].key.clone());
        }
        // The user chose a row: it stays selected wherever it moves.
        self.at_top = false;
        self.scroll_to_selection();
        self.follow_details();
    }

    /// The details pane follows the selection (see `pending_inspect`).
    fn follow_details(&mut self) {
        let Some(pid) = self.selected_item().map(|i| i.pid) else {
            return;
        };
        if let Some(d) = &mut self.details
            && d.pid != pid
            && pid != 0
        {
            *d = Details {
                pid,
                info: None,
                cpu_percent: None,
                prev: None,
                read: false,
            };
        }
    }

    /// The port whose last holders the details pane waits for.
    pub fn pending_history(&self) -> Option<(portwatch::Proto, u16)> {
        self.details.as_ref()?;
        let item = self.selected_item()?;
        let want = (item.proto, item.local.port());
        match &self.history {
            Some(h) if (h.proto, h.port) == want => None,
            _ => Some(want),
        }
    }

    /// The journal's answer for [`Self::pending_history`].
    pub fn on_history(
        &mut self,
        proto: portwatch::Proto,
        port: u16,
        holds: Result<Vec<portwatch::journal::history::Hold>, String>,
    ) {
        self.history = Some(PortHistory { proto, port, holds });
        self.dirty = true;
    }

    /// The process whose details the pane waits for (not read yet).
    pub fn pending_inspect(&self) -> Option<u32> {
        self.details.as_ref().filter(|d| !d.read).map(|d| d.pid)
    }

    /// A mouse event: select, scroll, sort by a clicked header.
    pub fn on_mouse(&mut self, ev: MouseEvent) -> Vec<Effect> {
        self.prepare();
        let table = self.areas.table;
        let inside = |r: Rect| {
            ev.column >= r.x
                && ev.column < r.x + r.width
                && ev.row >= r.y
                && ev.row < r.y + r.height
        };
        match ev.kind {
            MouseEventKind::ScrollDown if inside(table) => self.move_selection(3),
            MouseEventKind::ScrollUp if inside(table) => self.move_selection(-3),
            MouseEventKind::Down(MouseButton::Left) if inside(table) => {
                // The table has a border, then the header row.
                let header_row = table.y + 1;
                if ev.row == header_row {
                    if let Some(col) = self.areas.column_at(ev.column) {
                        let column = self.kind.columns()[col];
                        if self.sort.column == column {
                            self.sort.ascending = !self.sort.ascending;
                        } else {
                            self.sort = Sort {
                                column,
                                ascending: true,
                            };
                        }
                        self.refresh();
                    }
                } else if ev.row > header_row {
                    let line = self.offset + usize::from(ev.row - header_row - 1);
                    let (items, lines) = self.visible();
                    if let Some(Line::Item { index, .. }) = lines.get(line) {
                        self.selected = Some(items[*index].key.clone());
                        self.at_top = false;
                        self.follow_details();
                    }
                }
            }
            _ => return Vec::new(),
        }
        self.dirty = true;
        self.pending_inspect()
            .map(Effect::Inspect)
            .into_iter()
            .collect()
    }

    /// Columns of the current view, for drawing and export.
    pub fn columns(&self) -> &'static [Column] {
        self.kind.columns()
    }
}

#[cfg(test)]
pub(crate) mod tests;
