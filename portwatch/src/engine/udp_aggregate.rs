//! The UDP aggregate mode's reading, every settle interval: the kernel's
//! tally of binds turned into the interval's counts ([`Tally`]), and the
//! sockets still open among them found and reported one by one.
//!
//! A socket reported one by one has its owner seeded into the kernel's
//! owner map, so that its release is reported like any other's. One that
//! closed between the look and the seed would never be: a second look
//! finds it gone, and taking its seed back tells whether the kernel saw
//! its release (then its close is on the way) or not (then it is left
//! out, one of the interval's short-lived binds).

use std::{
    collections::{HashMap, HashSet},
    ops::RangeInclusive,
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::{
    error::Result,
    event::Listener,
    filter::Filter,
    report::{BindKey, PortClass, UdpSummary},
    safe_text::comm_text,
    sys::{EventSource, HeldUdp, Host, ProcessKind},
    table::ListenerTable,
    udp_tally::{Reading, Tally},
};

pub(super) struct UdpAggregate {
    every: Duration,
    /// The ephemeral range the kernel classes binds by.
    ephemeral: RangeInclusive<u16>,
    last: Instant,
    tally: Tally,
}

/// What one reading found.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Sockets to report as opened, with the time they were found.
    pub opened: Vec<(Listener, DateTime<Utc>)>,
    pub summaries: Vec<UdpSummary>,
    /// Binds off the ephemeral range that no binder holds a socket for:
    /// closed already, or held by another process now (a daemon that
    /// forked and exited, a descriptor passed on). A resync's scan of
    /// every process finds the second kind; on the ephemeral range a scan
    /// cannot tell a bound port from a client's, so none is asked for.
    pub unaccounted: bool,
}

impl UdpAggregate {
    pub(super) fn new(every: Duration, ephemeral: RangeInclusive<u16>, now: Instant) -> Self {
        Self {
            every,
            ephemeral,
            last: now,
            tally: Tally::default(),
        }
    }

    /// When the next reading is due.
    pub(super) fn next(&self) -> Instant {
        self.last + self.every
    }

    pub(super) fn read(
        &mut self,
        now: Instant,
        source: &mut dyn EventSource,
        host: &mut dyn Host,
        table: &ListenerTable,
        filter: &Filter,
        netns_known: bool,
    ) -> Result<Found> {
        let interval = now.saturating_duration_since(self.last);
        self.last = now;
        let totals = source.udp_binds()?;
        // An exited process's entry is read once more, then removed. A
        // pid reused between this read and the removal would lose the
        // binds it made in between: a window of microseconds, once per
        // exited binder.
        let reading = self.tally.read(&totals, |pid| {
            host.process_kind(pid) != ProcessKind::Missing
        });
        source.forget_udp_binds(&reading.forget)?;
        if reading.binds.is_empty() {
            return Ok(Found::default());
        }
        let ephemeral = &self.ephemeral;
        let mut pids: Vec<u32> = reading.binds.iter().map(|b| b.key.pid).collect();
        pids.dedup();
        let held = host.held_udp(&pids);
        let mut fresh = still_open(
            &reading,
            held,
            ephemeral,
            |c| table.has_id(c),
            |l| filter.admits(l),
        );
        for l in &mut fresh {
            if !netns_known {
                l.netns = 0;
            }
            l.container = host.container(&l.cgroup);
        }
        let seeds = super::udp_seeds::covered(source, &fresh);
        source.seed_owners(&seeds)?;
        if !fresh.is_empty() {
            let mut owners: Vec<u32> = fresh.iter().map(|l| l.pid).collect();
            owners.sort_unstable();
            owners.dedup();
            let again: HashSet<u64> = host
                .held_udp(&owners)
                .into_iter()
                .filter_map(|h| h.listener.cookie)
                .collect();
            let mut kept = Vec::with_capacity(fresh.len());
            for l in fresh {
                // Every socket here has a cookie (`still_open`).
                let cookie = l.cookie.unwrap_or_default();
                if again.contains(&cookie) || !source.unseed_owner(cookie)? {
                    kept.push(l);
                }
            }
            fresh = kept;
        }
        let ts = host.wall_now();
        let mut reported: HashMap<BindKey, u64> = HashMap::new();
        for l in &fresh {
            let key = BindKey {
                pid: l.pid,
                class: PortClass::of(l.port, ephemeral),
            };
            *reported.entry(key).or_default() += 1;
        }
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let summaries: Vec<UdpSummary> = reading
            .binds
            .iter()
            .map(|b| UdpSummary {
                pid: b.key.pid,
                comm: comm_text(&b.comm),
                class: b.key.class,
                binds: b.binds,
                reported: reported.get(&b.key).copied().unwrap_or(0),
                interval_ms,
                ts,
            })
            .collect();
        let unaccounted = summaries
            .iter()
            .any(|s| s.class != PortClass::Ephemeral && s.reported < s.binds);
        Ok(Found {
            opened: fresh.into_iter().map(|l| (l, ts)).collect(),
            summaries,
            unaccounted,
        })
    }
}

/// Pure: the sockets among `held` to report as bound ports. Each is one
/// the table does not hold (`known`), with a cookie, that the filter
/// `admits`, of a process and port class that bound in the interval, and
/// no more of a process and class than it bound. On an ephemeral port a
/// look cannot tell an explicit bind from the kernel's binding of a
/// client at its first send: a connected one (a client's, most often) is
/// left out there.
pub(super) fn still_open(
    reading: &Reading,
    held: Vec<HeldUdp>,
    ephemeral: &RangeInclusive<u16>,
    known: impl Fn(u64) -> bool,
    admits: impl Fn(&Listener) -> bool,
) -> Vec<Listener> {
    let mut budget: HashMap<BindKey, u64> =
        reading.binds.iter().map(|b| (b.key, b.binds)).collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for h in held {
        let l = h.listener;
        let Some(cookie) = l.cookie else { continue };
        if known(cookie) || !seen.insert(cookie) || !admits(&l) {
            continue;
        }
        let class = PortClass::of(l.port, ephemeral);
        if class == PortClass::Ephemeral && h.connected {
            continue;
        }
        let key = BindKey { pid: l.pid, class };
        match budget.get_mut(&key) {
            Some(left) if *left > 0 => *left -= 1,
            _ => continue,
        }
        out.push(l);
    }
    out
}
