//! The fallback backend: compares procfs scans at a fixed interval.

use std::time::Duration;

use tokio::time::Instant;

use super::{EngineConfig, Report, baseline_events, scan_queries};
use crate::{
    error::Result,
    event::{PortEvent, Scan, Source},
    filter::{Filter, descendants},
    report::Stats,
    sys::{Host, SocketQuery},
    table::{ListenerTable, Unsettled},
};

pub(super) struct PollWatch {
    host: Box<dyn Host>,
    table: ListenerTable,
    filter: Filter,
    queries: Vec<SocketQuery>,
    interval: Duration,
    next: Instant,
    polls: u64,
    /// The roots of the watched process trees (tree filter on).
    roots: Vec<u32>,
}

impl PollWatch {
    pub(super) fn start(
        config: &EngineConfig,
        host: Box<dyn Host>,
    ) -> Result<(Self, Vec<PortEvent>)> {
        let mut w = Self {
            host,
            // Scans compare with scans: sock_diag cookies name sockets
            // exactly.
            table: ListenerTable::new(true),
            filter: config.filter.clone(),
            queries: scan_queries(&config.filter),
            interval: config.poll_interval,
            next: Instant::now() + config.poll_interval,
            polls: 0,
            roots: config.filter.pid.into_iter().collect(),
        };
        let scan = w.scan()?;
        w.table.seed(scan.listeners.clone());
        let now = w.host.wall_now();
        Ok((w, baseline_events(&scan.listeners, Source::Baseline, now)))
    }

    pub(super) fn table(&self) -> &ListenerTable {
        &self.table
    }

    pub(super) fn host(&self) -> &dyn Host {
        self.host.as_ref()
    }

    pub(super) fn host_mut(&mut self) -> &mut dyn Host {
        self.host.as_mut()
    }

    /// Watches the tree of `root` too, from the next poll (now).
    pub(super) fn add_root(&mut self, root: u32) {
        if !self.roots.contains(&root) {
            self.roots.push(root);
        }
        self.request_poll();
    }

    /// Stops watching the tree of `root`; the next poll (now) reports its
    /// listeners closed to this watch.
    pub(super) fn remove_root(&mut self, root: u32) {
        self.roots.retain(|&r| r != root);
        self.request_poll();
    }

    pub(super) fn request_poll(&mut self) {
        self.next = Instant::now();
    }

    pub(super) fn stats(&self) -> Stats {
        Stats {
            resyncs: self.polls,
            ..Stats::default()
        }
    }

    fn scan(&mut self) -> Result<Scan> {
        // Without fork events, the trees are what the parent links show now.
        let tree = match self.filter.pid {
            Some(_) => {
                let links = self.host.parent_links()?;
                let mut all = std::collections::HashSet::new();
                for &root in &self.roots {
                    all.extend(descendants(root, &links));
                }
                Some(all)
            }
            None => None,
        };
        let owner_ok = |pid: u32| tree.as_ref().is_none_or(|t| t.contains(&pid));
        let mut scan = self.host.scan_listeners(&self.queries, &owner_ok)?;
        let ephemeral = self.host.ephemeral_ports();
        let table = &self.table;
        scan.listeners.retain(|l| {
            self.filter.admits(l) && super::counts_as_bound(l, &ephemeral, |c| table.has_id(c))
        });
        for l in &mut scan.listeners {
            l.container = self.host.container(&l.cgroup);
        }
        Ok(scan)
    }

    pub(super) async fn next_reports(&mut self) -> Result<Vec<Report>> {
        tokio::time::sleep_until(self.next).await;
        self.next = Instant::now() + self.interval;
        let scan = self.scan()?;
        self.polls += 1;
        let now = self.host.wall_now();
        Ok(self
            .table
            .reconcile(scan, &Unsettled::default(), now)
            .into_iter()
            .map(|mut e| {
                e.source = Source::Procfs;
                Report::Port(e)
            })
            .collect())
    }
}
