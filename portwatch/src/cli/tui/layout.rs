//! Where each part of the screen goes, computed once per frame from the
//! terminal's size and what is open; drawing and mouse handling read the
//! same areas. Pure.

use ratatui::layout::{Constraint, Direction, Layout, Rect};

use super::{text::wrap, view::Column};

/// The lines a status message takes at `width`: wrapped, at most three
/// (`draw` then shows its end, where the fix is).
pub fn message_lines(message: &str, width: u16) -> u16 {
    if message.is_empty() {
        return 0;
    }
    wrap(message, usize::from(width)).len().min(3) as u16
}

/// The screen's parts. Empty rectangles for what is not shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Areas {
    /// The table, with its border.
    pub table: Rect,
    pub details: Rect,
    /// The event log or the alerts.
    pub pane: Rect,
    /// The filter line, while editing or in force.
    pub filter: Rect,
    /// The latest message, wrapped.
    pub message: Rect,
    pub status: Rect,
    /// The columns that fit: (index in the view's columns, absolute x,
    /// width), left to right.
    pub columns: Vec<(usize, u16, u16)>,
}

/// Which columns go first when the table is too narrow for all.
const PRIORITY: [Column; 12] = [
    Column::Address,
    Column::Port,
    Column::Remote,
    Column::Proto,
    Column::State,
    Column::Exposure,
    Column::Process,
    Column::Pid,
    Column::User,
    Column::Age,
    Column::Container,
    Column::Netns,
];

/// The columns that fit in `room` cells (one between columns), the
/// sorted one first (a sort by a column not shown would puzzle), then the
/// most important, shown in their own order: (index, width).
fn fit(columns: &[Column], room: u16, sorted: Column) -> Vec<(usize, u16)> {
    let mut used: u16 = 0;
    let mut keep = vec![false; columns.len()];
    for p in std::iter::once(sorted).chain(PRIORITY) {
        if let Some(i) = columns.iter().position(|c| *c == p).filter(|i| !keep[*i]) {
            let need = width(p) + u16::from(used > 0);
            if used + need <= room {
                used += need;
                keep[i] = true;
            }
        }
    }
    columns
        .iter()
        .enumerate()
        .filter(|(i, _)| keep[*i])
        .map(|(i, c)| (i, width(*c)))
        .collect()
}

/// Width of each column, in cells.
pub fn width(c: Column) -> u16 {
    match c {
        Column::Address => 24,
        Column::Port => 6,
        Column::Remote => 26,
        // Room for the sort's arrow: `PROTO▲`.
        Column::Proto => 6,
        Column::State => 10,
        Column::Exposure => 10,
        Column::Process => 16,
        Column::Pid => 8,
        Column::User => 10,
        Column::Container => 24,
        Column::Netns => 11,
        Column::Age => 5,
    }
}

impl Areas {
    pub fn compute(
        area: Rect,
        columns: &[Column],
        sorted: Column,
        details: bool,
        pane: bool,
        filter: bool,
        message_lines: u16,
    ) -> Areas {
        let [main, filter_area, message, status] = Layout::new(
            Direction::Vertical,
            [
                Constraint::Min(3),
                Constraint::Length(u16::from(filter)),
                Constraint::Length(message_lines),
                Constraint::Length(1),
            ],
        )
        .areas(area);
        let [top, pane_area] = Layout::new(
            Direction::Vertical,
            [
                Constraint::Min(3),
                Constraint::Length(if pane { main.height / 3 } else { 0 }),
            ],
        )
        .areas(main);
        let [table, details_area] = Layout::new(
            Direction::Horizontal,
            [
                Constraint::Min(20),
                Constraint::Length(if details {
                    (top.width * 2 / 5).max(30)
                } else {
                    0
                }),
            ],
        )
        .areas(top);
        // Inside the border, one cell between columns.
        let mut x = table.x + 1;
        let mut cols = Vec::new();
        for (i, w) in fit(columns, table.width.saturating_sub(2), sorted) {
            cols.push((i, x, w));
            x = x.saturating_add(w + 1);
        }
        Areas {
            table,
            details: details_area,
            pane: pane_area,
            filter: filter_area,
            message,
            status,
            columns: cols,
        }
    }

    /// Rows of the table's body (inside the border, under the header).
    pub fn table_rows(&self) -> u16 {
        self.table.height.saturating_sub(3)
    }

    /// The column (index in the view's columns) under screen column `x`.
    pub fn column_at(&self, x: u16) -> Option<usize> {
        self.columns
            .iter()
            .find(|(_, start, w)| x >= *start && x < start + w)
            .map(|(i, _, _)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::view::LISTENER_COLUMNS;

    #[test]
    fn panes_share_the_screen_and_columns_are_found_by_position() {
        let a = Areas::compute(
            Rect::new(0, 0, 200, 50),
            &LISTENER_COLUMNS,
            Column::Port,
            true,
            true,
            true,
            2,
        );
        assert_eq!(a.status, Rect::new(0, 49, 200, 1));
        assert_eq!(a.message, Rect::new(0, 47, 200, 2));
        assert_eq!(a.filter.height, 1);
        assert!(a.details.width >= 30 && a.pane.height > 0);
        assert_eq!(a.column_at(1), Some(0));
        assert_eq!(a.column_at(26), Some(1));
        assert_eq!(a.column_at(25), None, "the gap between columns");
        let plain = Areas::compute(
            Rect::new(0, 0, 100, 20),
            &LISTENER_COLUMNS,
            Column::Port,
            false,
            false,
            false,
            0,
        );
        assert_eq!(
            (plain.details.width, plain.pane.height, plain.filter.height),
            (0, 0, 0)
        );
        assert_eq!(plain.table_rows(), 16);
        // Every header has room for the sort's arrow.
        for c in LISTENER_COLUMNS
            .iter()
            .chain(&crate::tui::view::SOCKET_COLUMNS)
        {
            assert!(usize::from(width(*c)) > c.title().chars().count(), "{c:?}");
        }
        // Too narrow for all: the netns and the container go first.
        let shown: Vec<Column> = plain
            .columns
            .iter()
            .map(|c| LISTENER_COLUMNS[c.0])
            .collect();
        assert_eq!(
            shown,
            [
                Column::Address,
                Column::Port,
                Column::Proto,
                Column::State,
                Column::Exposure,
                Column::Process,
                Column::Pid,
                Column::User,
            ]
        );
    }
}
