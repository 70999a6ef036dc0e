//! The key map: one table that decides what each key does and that the
//! help screen is generated from, so the two cannot disagree. Pure.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for in the main screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Details,
    Filter,
    SortColumn,
    SortDirection,
    Pause,
    Terminate,
    Kill,
    Alerts,
    Log,
    Editor,
    Resync,
    ExportJson,
    ExportCsv,
    ViewAll,
    ViewTree,
    ViewGroups,
    Help,
    Back,
    Quit,
}

/// One key of the map.
pub struct Binding {
    pub code: KeyCode,
    pub ctrl: bool,
    /// As the help screen shows it.
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
    /// Hidden with `--read-only`: it changes the host or the rules.
    pub changes_things: bool,
}

const fn key(code: KeyCode, label: &'static str, action: Action, help: &'static str) -> Binding {
    Binding {
        code,
        ctrl: false,
        label,
        action,
        help,
        changes_things: false,
    }
}

const fn writes(binding: Binding) -> Binding {
    Binding {
        changes_things: true,
        ..binding
    }
}

pub const BINDINGS: &[Binding] = &[
    key(KeyCode::Up, "Up", Action::Up, "previous row"),
    key(KeyCode::Down, "Down", Action::Down, "next row"),
    key(KeyCode::PageUp, "PgUp", Action::PageUp, "a page up"),
    key(KeyCode::PageDown, "PgDn", Action::PageDown, "a page down"),
    key(KeyCode::Home, "Home", Action::Home, "first row"),
    key(KeyCode::End, "End", Action::End, "last row"),
    key(
        KeyCode::Enter,
        "Enter",
        Action::Details,
        "details of the selected process",
    ),
    key(
        KeyCode::Char('/'),
        "/",
        Action::Filter,
        "filter (port:80 proto:udp addr:10.0.0.0/8 !word ...)",
    ),
    key(
        KeyCode::Char('s'),
        "s",
        Action::SortColumn,
        "sort by the next column",
    ),
    key(
        KeyCode::Char('S'),
        "S",
        Action::SortDirection,
        "reverse the sort",
    ),
    key(
        KeyCode::Char('p'),
        "p",
        Action::Pause,
        "pause the view (events keep arriving)",
    ),
    writes(key(
        KeyCode::Char('k'),
        "k",
        Action::Terminate,
        "SIGTERM the selected process (asks first)",
    )),
    writes(key(
        KeyCode::Char('K'),
        "K",
        Action::Kill,
        "SIGKILL the selected process (asks first)",
    )),
    key(
        KeyCode::Char('l'),
        "l",
        Action::ViewAll,
        "all sockets, every state (or back to listeners)",
    ),
    key(
        KeyCode::Char('t'),
        "t",
        Action::ViewTree,
        "listeners under their process tree",
    ),
    key(
        KeyCode::Char('g'),
        "g",
        Action::ViewGroups,
        "listeners by container or service",
    ),
    key(
        KeyCode::Char('e'),
        "e",
        Action::Log,
        "event log: every open and close",
    ),
    key(
        KeyCode::Char('a'),
        "a",
        Action::Alerts,
        "alerts: the last 100 firings",
    ),
    writes(key(
        KeyCode::Char('E'),
        "E",
        Action::Editor,
        "edit the alert rules",
    )),
    key(
        KeyCode::Char('r'),
        "r",
        Action::Resync,
        "resync with procfs now",
    ),
    key(
        KeyCode::Char('x'),
        "x",
        Action::ExportJson,
        "export the view as JSON",
    ),
    key(
        KeyCode::Char('X'),
        "X",
        Action::ExportCsv,
        "export the view as CSV",
    ),
    key(KeyCode::Char('?'), "?", Action::Help, "this help"),
    key(
        KeyCode::Esc,
        "Esc",
        Action::Back,
        "close the details, then a pane, then clear the filter",
    ),
    key(KeyCode::Char('q'), "q", Action::Quit, "quit"),
    Binding {
        ctrl: true,
        ..key(KeyCode::Char('c'), "Ctrl-C", Action::Quit, "quit")
    },
];

/// The action of `key`, if any (with `read_only`, none that changes
/// things).
pub fn action_for(key: KeyEvent, read_only: bool) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    BINDINGS
        .iter()
        .find(|b| b.code == key.code && b.ctrl == ctrl && !(read_only && b.changes_things))
        .map(|b| b.action)
}

/// (key, what it does) for the help screen.
pub fn help(read_only: bool) -> Vec<(&'static str, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| !(read_only && b.changes_things))
        .map(|b| (b.label, b.help))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(
            action_for(press(KeyCode::Char('k')), false),
            Some(Action::Terminate)
        );
        assert_eq!(
            action_for(press(KeyCode::Char('K')), false),
            Some(Action::Kill)
        );
        assert_eq!(
            action_for(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                false
            ),
            Some(Action::Quit)
        );
        assert_eq!(action_for(press(KeyCode::Char('c')), false), None);
        assert_eq!(action_for(press(KeyCode::Char('z')), false), None);
    }

    #[test]
    fn read_only_hides_what_changes_things_from_keys_and_help() {
        for c in ['k', 'K', 'E'] {
            assert_eq!(action_for(press(KeyCode::Char(c)), true), None, "{c}");
        }
        assert!(!help(true).iter().any(|(k, _)| ["k", "K", "E"].contains(k)));
        assert!(help(false).iter().any(|(k, _)| *k == "K"));
    }

    #[test]
    fn every_key_is_bound_once() {
        let mut seen = std::collections::HashSet::new();
        for b in BINDINGS {
            assert!(
                seen.insert((format!("{:?}", b.code), b.ctrl)),
                "{}",
                b.label
            );
        }
    }
}
