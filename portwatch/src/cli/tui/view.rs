//! What the table shows: rows of sockets, filtered, sorted and, in the tree
//! and group views, placed under headers. Pure.

use std::{cmp::Ordering, collections::BTreeMap, net::SocketAddr};

use chrono::{DateTime, Utc};
use portwatch::Proto;

use super::filter::{Fields, Query};

/// A row's identity, stable while it lives: its socket cookie where known.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowKey {
    Cookie(u64),
    Socket {
        proto: Proto,
        netns: u64,
        local: SocketAddr,
        pid: u32,
    },
}

/// One socket, as the table shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub key: RowKey,
    pub proto: Proto,
    pub state: &'static str,
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
    pub pid: u32,
    pub process: String,
    pub uid: u32,
    pub user: String,
    /// `runtime:name`, or empty on the host.
    pub container: String,
    pub netns: u64,
    /// Who can reach it (`None`: not judged, as for the sockets view).
    pub exposure: Option<portwatch::exposure::Exposure>,
    /// DNAT rules that publish it.
    pub published: Vec<portwatch::exposure::Published>,
    /// Why its owner is there (`None`: not told, as for the sockets view).
    pub context: Option<std::sync::Arc<portwatch::owner::OwnerContext>>,
    pub opened_at: Option<DateTime<Utc>>,
    /// Opened a moment ago: highlighted.
    pub fresh: bool,
    /// Closed a moment ago: dimmed, then gone.
    pub closed: bool,
    /// The policy (`--policy`) expects no such listener.
    pub unexpected: bool,
}

/// What a process adds to the filter and the tree view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcSummary {
    pub exe: String,
    pub cmdline: String,
    /// From the root down to the process's parent: (pid, name).
    pub ancestry: Vec<(u32, String)>,
}

/// The table's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Address,
    Port,
    Remote,
    Proto,
    State,
    Exposure,
    Process,
    Pid,
    User,
    Container,
    Netns,
    Age,
}

impl Column {
    pub fn title(self) -> &'static str {
        match self {
            Column::Address => "ADDRESS",
            Column::Port => "PORT",
            Column::Remote => "REMOTE",
            Column::Proto => "PROTO",
            Column::State => "STATE",
            Column::Exposure => "EXPOSURE",
            Column::Process => "PROCESS",
            Column::Pid => "PID",
            Column::User => "USER",
            Column::Container => "CONTAINER",
            Column::Netns => "NETNS",
            Column::Age => "AGE",
        }
    }
}

pub const LISTENER_COLUMNS: [Column; 11] = [
    Column::Address,
    Column::Port,
    Column::Proto,
    Column::State,
    Column::Exposure,
    Column::Process,
    Column::Pid,
    Column::User,
    Column::Container,
    Column::Netns,
    Column::Age,
];

pub const SOCKET_COLUMNS: [Column; 10] = [
    Column::Address,
    Column::Port,
    Column::Remote,
    Column::Proto,
    Column::State,
    Column::Process,
    Column::Pid,
    Column::User,
    Column::Container,
    Column::Netns,
];

/// Which table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Listeners,
    AllSockets,
    Tree,
    Groups,
}

impl Kind {
    pub fn columns(self) -> &'static [Column] {
        match self {
            Kind::AllSockets => &SOCKET_COLUMNS,
            _ => &LISTENER_COLUMNS,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::Listeners => "listeners",
            Kind::AllSockets => "all sockets",
            Kind::Tree => "listeners by process tree",
            Kind::Groups => "listeners by container or service",
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Header { text: String, depth: usize },
    Item { index: usize, depth: usize },
}

/// The sort: a column and a direction; ties fall back to port, address,
/// pid, so equal keys never swap places between frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub column: Column,
    pub ascending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            column: Column::Port,
            ascending: true,
        }
    }
}

/// `0.0.0.0` and `::` as `*`, as portwatch 0.1.8 showed them.
pub fn address_text(a: SocketAddr) -> String {
    if a.ip().is_unspecified() {
        "*".into()
    } else {
        a.ip().to_string()
    }
}

/// Whole seconds as `45s`, `12m`, `3h`, `2d`.
pub fn age_text(opened: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = opened else {
        return "-".into();
    };
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The text of one cell.
pub fn cell(item: &Item, column: Column, now: DateTime<Utc>) -> String {
    match column {
        Column::Address => address_text(item.local),
        Column::Port => item.local.port().to_string(),
        Column::Remote => item.remote.map(|r| r.to_string()).unwrap_or_default(),
        Column::Proto => item.proto.as_str().into(),
        // Marked in text too: colour alone is lost on some terminals.
        Column::State if item.unexpected => format!("{}!", item.state),
        Column::State => item.state.into(),
        Column::Exposure => exposure_name(item).into(),
        Column::Process => item.process.clone(),
        Column::Pid => {
            if item.pid == 0 {
                "-".into()
            } else {
                item.pid.to_string()
            }
        }
        Column::User => item.user.clone(),
        Column::Container => item.container.clone(),
        Column::Netns => item.netns.to_string(),
        Column::Age => age_text(item.opened_at, now),
    }
}

fn compare(a: &Item, b: &Item, column: Column) -> Ordering {
    match column {
        Column::Address => a.local.ip().cmp(&b.local.ip()),
        Column::Port => a.local.port().cmp(&b.local.port()),
        Column::Remote => a.remote.cmp(&b.remote),
        Column::Proto => a.proto.cmp(&b.proto),
        Column::State => a.state.cmp(b.state),
        Column::Exposure => exposure_name(a).cmp(exposure_name(b)),
        Column::Process => a.process.to_lowercase().cmp(&b.process.to_lowercase()),
        Column::Pid => a.pid.cmp(&b.pid),
        Column::User => a.user.cmp(&b.user),
        Column::Container => a.container.cmp(&b.container),
        Column::Netns => a.netns.cmp(&b.netns),
        // Youngest first reads naturally as "ascending age".
        Column::Age => b.opened_at.cmp(&a.opened_at),
    }
}

/// `reachable`, `filtered`, `loopback`, `unknown`, or `-` when not
/// judged.
pub fn exposure_name(item: &Item) -> &'static str {
    item.exposure.as_ref().map_or("-", |e| e.name())
}

fn fields<'a>(item: &'a Item, proc: Option<&'a ProcSummary>) -> Fields<'a> {
    Fields {
        exposure: exposure_name(item),
        address: Some(item.local.ip()),
        port: item.local.port(),
        proto: item.proto.as_str(),
        state: item.state,
        process: &item.process,
        pid: item.pid,
        user: &item.user,
        container: &item.container,
        netns: item.netns,
        exe: proc.map_or("", |p| p.exe.as_str()),
        cmdline: proc.map_or("", |p| p.cmdline.as_str()),
        drift: item.unexpected,
    }
}

/// The lines of `kind` for `items`: those `query` admits, sorted, and
/// (tree, groups) under their headers.
pub fn build(
    items: &[Item],
    procs: &BTreeMap<u32, ProcSummary>,
    query: &Query,
    sort: Sort,
    kind: Kind,
) -> Vec<Line> {
    let mut shown: Vec<usize> = (0..items.len())
        .filter(|&i| query.matches(&fields(&items[i], procs.get(&items[i].pid))))
        .collect();
    shown.sort_by(|&a, &b| {
        let (x, y) = (&items[a], &items[b]);
        let primary = compare(x, y, sort.column);
        let primary = if sort.ascending {
            primary
        } else {
            primary.reverse()
        };
        primary
            .then(x.local.port().cmp(&y.local.port()))
            .then(x.local.ip().cmp(&y.local.ip()))
            .then(x.pid.cmp(&y.pid))
            .then(x.key.cmp(&y.key))
    });
    match kind {
        Kind::Listeners | Kind::AllSockets => shown
            .into_iter()
            .map(|index| Line::Item { index, depth: 0 })
            .collect(),
        Kind::Groups => {
            let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for i in shown {
                groups
                    .entry(items[i].container.as_str())
                    .or_default()
                    .push(i);
            }
            let mut lines = Vec::new();
            for (group, members) in groups {
                let name = if group.is_empty() { "host" } else { group };
                lines.push(Line::Header {
                    text: format!("{name} ({})", members.len()),
                    depth: 0,
                });
                lines.extend(
                    members
                        .into_iter()
                        .map(|index| Line::Item { index, depth: 1 }),
                );
            }
            lines
        }
        Kind::Tree => {
            // Each owner's chain from the root, then the owner itself.
            let chain = |i: usize| -> Vec<(u32, String)> {
                let item = &items[i];
                let mut c = procs
                    .get(&item.pid)
                    .map(|p| p.ancestry.clone())
                    .unwrap_or_default();
                c.push((item.pid, item.process.clone()));
                c
            };
            // Owners by their pid path from the root: the chain's names,
            // and the owner's rows.
            type Chain = Vec<(u32, String)>;
            let mut owners: BTreeMap<Vec<u32>, (Chain, Vec<usize>)> = BTreeMap::new();
            for i in shown {
                let c = chain(i);
                let path: Vec<u32> = c.iter().map(|(p, _)| *p).collect();
                owners
                    .entry(path)
                    .or_insert_with(|| (c, Vec::new()))
                    .1
                    .push(i);
            }
            let mut lines = Vec::new();
            let mut printed: Vec<u32> = Vec::new();
            for (path, (c, members)) in owners {
                // Headers for the part of the chain not printed just above.
                let common = printed
                    .iter()
                    .zip(&path)
                    .take_while(|(a, b)| a == b)
                    .count();
                for (depth, (pid, name)) in c.iter().enumerate().skip(common) {
                    lines.push(Line::Header {
                        text: if *pid == 0 {
                            "(no visible owner)".into()
                        } else {
                            format!("{name} ({pid})")
                        },
                        depth,
                    });
                }
                printed = path.clone();
                lines.extend(members.into_iter().map(|index| Line::Item {
                    index,
                    depth: path.len(),
                }));
            }
            lines
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn item(port: u16, pid: u32, process: &str, container: &str) -> Item {
        Item {
            key: RowKey::Cookie(u64::from(port) * 1000 + u64::from(pid)),
            proto: Proto::Tcp,
            state: "LISTEN",
            local: SocketAddr::from(([127, 0, 0, 1], port)),
            remote: None,
            pid,
            process: process.into(),
            uid: 0,
            user: "root".into(),
            container: container.into(),
            netns: 1,
            exposure: None,
            published: Vec::new(),
            context: None,
            opened_at: None,
            fresh: false,
            closed: false,
            unexpected: false,
        }
    }

    fn ports(items: &[Item], lines: &[Line]) -> Vec<u16> {
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Item { index, .. } => Some(items[*index].local.port()),
                Line::Header { .. } => None,
            })
            .collect()
    }

    #[test]
    fn sorting_is_stable_and_reversible() {
        let items = vec![
            item(80, 3, "nginx", ""),
            item(22, 1, "sshd", ""),
            item(8080, 2, "node", ""),
            item(443, 3, "nginx", ""),
        ];
        let q = Query::default();
        let by = |column, ascending| {
            ports(
                &items,
                &build(
                    &items,
                    &BTreeMap::new(),
                    &q,
                    Sort { column, ascending },
                    Kind::Listeners,
                ),
            )
        };
        assert_eq!(by(Column::Port, true), [22, 80, 443, 8080]);
        assert_eq!(by(Column::Port, false), [8080, 443, 80, 22]);
        // Two nginx rows tie on the process: the port decides, both ways.
        assert_eq!(by(Column::Process, true), [80, 443, 8080, 22]);
        assert_eq!(by(Column::Process, false), [22, 8080, 80, 443]);
    }

    #[test]
    fn the_filter_sees_the_command_line() {
        let items = vec![item(80, 3, "nginx", ""), item(3000, 9, "node", "")];
        let mut procs = BTreeMap::new();
        procs.insert(
            9,
            ProcSummary {
                exe: "/usr/bin/node".into(),
                cmdline: "node vite --host".into(),
                ancestry: vec![],
            },
        );
        let q = Query::parse("vite").unwrap();
        let lines = build(&items, &procs, &q, Sort::default(), Kind::Listeners);
        assert_eq!(ports(&items, &lines), [3000]);
    }

    #[test]
    fn groups_and_trees_put_rows_under_headers() {
        let items = vec![
            item(80, 3, "nginx", "docker:web"),
            item(22, 2, "sshd", "service:ssh.service"),
            item(81, 4, "worker", "docker:web"),
        ];
        let lines = build(
            &items,
            &BTreeMap::new(),
            &Query::default(),
            Sort::default(),
            Kind::Groups,
        );
        let headers: Vec<&str> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Header { text, .. } => Some(text.as_str()),
                Line::Item { .. } => None,
            })
            .collect();
        assert_eq!(headers, ["docker:web (2)", "service:ssh.service (1)"]);

        let mut procs = BTreeMap::new();
        let chain = vec![(1, "systemd".to_string()), (3, "nginx".to_string())];
        for pid in [2, 3] {
            procs.insert(
                pid,
                ProcSummary {
                    ancestry: chain[..1].to_vec(),
                    ..Default::default()
                },
            );
        }
        procs.insert(
            4,
            ProcSummary {
                ancestry: chain.clone(),
                ..Default::default()
            },
        );
        let lines = build(
            &items,
            &procs,
            &Query::default(),
            Sort::default(),
            Kind::Tree,
        );
        let shape: Vec<String> = lines
            .iter()
            .map(|l| match l {
                Line::Header { text, depth } => format!("{depth} {text}"),
                Line::Item { index, depth } => format!("{depth} :{}", items[*index].local.port()),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "0 systemd (1)",
                "1 sshd (2)",
                "2 :22",
                "1 nginx (3)",
                "2 :80",
                "2 worker (4)",
                "3 :81"
            ]
        );
    }

    #[test]
    fn cells_read_like_0_1_8() {
        let mut i = item(8080, 0, "", "");
        i.local = "0.0.0.0:8080".parse().unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(cell(&i, Column::Address, now), "*");
        assert_eq!(cell(&i, Column::Pid, now), "-");
        i.opened_at = Some(now - chrono::TimeDelta::seconds(4000));
        assert_eq!(cell(&i, Column::Age, now), "1h");
    }
}
