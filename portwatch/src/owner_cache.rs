//! Owner contexts ([`OwnerContext`]), told once per process (by pid and
//! start time) through the [`Host`] boundary and kept while the process
//! has a listener open, so that a close, and a listener of a process that
//! exited or re-parented since, still tell the story as it was.

use std::{collections::HashMap, sync::Arc, time::Instant};

use crate::{
    event::{Listener, ListenerKey},
    owner::{AncestorMemo, OwnerContext},
    sys::Host,
};

/// Processes whose context is kept at most, besides those of open
/// listeners (which are all kept: the engine bounds them).
const MAX_PROCESSES: usize = 16_384;

/// A process's context, and what names the process and what it runs:
/// its start time, and its executable's (device, inode), which an
/// `execve` changes though the start time stays.
struct Told {
    start_time: u64,
    exe_id: Option<(u64, u64)>,
    ctx: Arc<OwnerContext>,
    /// When that was last checked against /proc.
    checked_at: Instant,
    /// When a listener was last told from it.
    used_at: Instant,
}

impl Told {
    /// Whether `pid` is still the process told: same start, same
    /// executable (two /proc reads).
    fn still_is(&self, pid: u32, host: &dyn Host) -> bool {
        host.start_time(pid) == Some(self.start_time) && host.exe_id(pid) == self.exe_id
    }
}

/// How long a check that a pid is still the process told holds for its
/// next listeners of the same name: a process that opens listeners by
/// the thousand is checked ten times a second, not per listener (two
/// /proc reads each). No pid is reused that fast, and an `execve`
/// within it that kept the name is told at the next check.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// A process told from within the last [`RECHECK`] whose check is this
/// old is checked again by [`OwnerCache::refresh`], between events: on
/// a path gone cold its two /proc reads cost tens of microseconds, which
/// its next listener would otherwise wait for.
const REFRESH: std::time::Duration = std::time::Duration::from_millis(50);

/// How often the monitor looks for a moment to refresh, at most.
const REFRESH_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Processes one [`OwnerCache::refresh`] checks at most.
const REFRESH_CHECKS: usize = 16;

/// Processes kept fresh at most: each call walks them all, and another
/// user can start processes by the thousand. Beyond it, a process is
/// checked on its next listener's path, as without the refresh.
const RECENT_MAX: usize = 64;

/// What one snapshot has read already, and when it was taken.
struct Batch {
    /// Processes whose start time was checked (or read) in it.
    checked: std::collections::HashSet<u32>,
    ancestors: AncestorMemo,
    now: Instant,
}

impl Batch {
    fn at(now: Instant) -> Self {
        Self {
            checked: Default::default(),
            ancestors: AncestorMemo::default(),
            now,
        }
    }
}

#[derive(Default)]
pub(crate) struct OwnerCache {
    /// By pid: the process's start time and context.
    by_pid: HashMap<u32, Told>,
    /// The context of each open listener (by key and owner), with the
    /// number of sockets open under that key.
    open: HashMap<(ListenerKey, u32), (Arc<OwnerContext>, usize)>,
    /// Processes that opened a listener while watched, within the last
    /// [`RECHECK`] (a baseline's are not): those [`Self::refresh`] looks
    /// at, and prunes. At most [`RECENT_MAX`].
    recent: std::collections::HashSet<u32>,
    /// When [`Self::refresh_wanted`] may say yes again.
    wanted_after: Option<Instant>,
}

impl OwnerCache {
    /// Gives an opened listener its owner's context.
    pub(crate) fn opened(&mut self, l: &mut Listener, host: &mut dyn Host) {
        self.opened_at(l, host, Instant::now());
    }

    fn opened_at(&mut self, l: &mut Listener, host: &mut dyn Host, now: Instant) {
        self.tell(l, host, &mut Batch::at(now));
        // One that opens listeners now may well open more soon: its check
        // is kept fresh between events (`refresh`). Not the baseline's
        // thousands of processes.
        if let Some(told) = self.by_pid.get_mut(&l.pid) {
            told.used_at = now;
            if self.recent.len() < RECENT_MAX {
                self.recent.insert(l.pid);
            }
        }
    }

    /// Gives listeners of one snapshot (a baseline) their owners'
    /// contexts: each process, and each shared ancestor, read once.
    pub(crate) fn opened_all<'l>(
        &mut self,
        listeners: impl Iterator<Item = &'l mut Listener>,
        host: &mut dyn Host,
    ) {
        let mut batch = Batch::at(Instant::now());
        let mut listeners: Vec<&mut Listener> = listeners.collect();
        // The processes to read: neither told yet nor still the same.
        let mut to_read: Vec<u32> = Vec::new();
        let mut containers = HashMap::new();
        for l in listeners.iter().filter(|l| l.pid != 0) {
            if batch.checked.contains(&l.pid) || containers.contains_key(&l.pid) {
                continue;
            }
            if self.still_told(l.pid, None, host, batch.now) {
                batch.checked.insert(l.pid);
            } else {
                containers.insert(l.pid, l.container.clone());
                to_read.push(l.pid);
            }
        }
        let read = host.owner_facts_all(&to_read, &mut batch.ancestors);
        for (pid, facts) in to_read.iter().zip(read) {
            // Gone: its listeners have no story (and are not read again).
            batch.checked.insert(*pid);
            if let Some(facts) = facts {
                let container = containers.remove(pid).flatten();
                self.remember(*pid, facts, container.as_ref(), host, batch.now);
            }
        }
        for l in listeners.iter_mut() {
            self.tell(l, host, &mut batch);
        }
    }

    /// Whether the context kept for `pid` is still its process's (same
    /// start, same executable; a listener named `comm` was just opened by
    /// it): checked against /proc unless it was a moment ago, with the
    /// same name.
    fn still_told(&mut self, pid: u32, comm: Option<&str>, host: &dyn Host, now: Instant) -> bool {
        let Some(told) = self.by_pid.get_mut(&pid) else {
            return false;
        };
        let same_name =
            comm.is_some_and(|c| told.ctx.ancestry.first().is_some_and(|a| a.comm == c));
        if same_name && now.duration_since(told.checked_at) < RECHECK {
            return true;
        }
        let still = told.still_is(pid, host);
        if still {
            told.checked_at = now;
        }
        still
    }

    /// Checks again, now, the processes told from within the last
    /// [`RECHECK`] whose check is older than [`REFRESH`], so that their
    /// next listeners find it fresh; one that is no longer the process
    /// told is forgotten (its next listener is told anew). For the time
    /// between events, when nothing waits to be read: each process costs
    /// two /proc reads at most every [`REFRESH`].
    pub(crate) fn refresh(&mut self, host: &dyn Host) {
        self.refresh_at(host, Instant::now());
    }

    /// Whether [`Self::refresh`] has something to look at, at most once
    /// every [`REFRESH_POLL`]: the monitor first polls its engine once
    /// to know that nothing waits, and while events keep coming that poll
    /// must not take every turn from its other sources.
    pub(crate) fn refresh_wanted(&mut self, now: Instant) -> bool {
        if self.recent.is_empty() || self.wanted_after.is_some_and(|t| now < t) {
            return false;
        }
        self.wanted_after = Some(now + REFRESH_POLL);
        true
    }

    fn refresh_at(&mut self, host: &dyn Host, now: Instant) {
        let by_pid = &mut self.by_pid;
        // A bound on one call's reads: beyond it, a process is checked at
        // a later call, or on its next listener's path as before.
        let mut checks = REFRESH_CHECKS;
        self.recent.retain(|pid| {
            let Some(told) = by_pid.get_mut(pid) else {
                return false;
            };
            if now.duration_since(told.used_at) >= RECHECK {
                return false;
            }
            if now.duration_since(told.checked_at) < REFRESH || checks == 0 {
                return true;
            }
            checks -= 1;
            if told.still_is(*pid, host) {
                told.checked_at = now;
                true
            } else {
                by_pid.remove(pid);
                false
            }
        });
    }

    fn tell(&mut self, l: &mut Listener, host: &mut dyn Host, batch: &mut Batch) {
        if l.pid == 0 {
            return;
        }
        let Some(ctx) = self.of_process(l, host, batch) else {
            return;
        };
        let entry = self
            .open
            .entry((l.key(), l.pid))
            .or_insert_with(|| (ctx.clone(), 0));
        entry.0 = ctx.clone();
        entry.1 += 1;
        l.context = Some(ctx);
    }

    /// Gives a closed listener the context it opened with.
    pub(crate) fn closed(&mut self, l: &mut Listener) {
        let key = (l.key(), l.pid);
        let Some((ctx, n)) = self.open.get_mut(&key) else {
            return;
        };
        l.context = Some(ctx.clone());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.open.remove(&key);
        }
    }

    /// Processes whose context is kept.
    pub(crate) fn processes(&self) -> usize {
        self.by_pid.len()
    }

    /// The context of an open listener.
    pub(crate) fn of(&self, l: &Listener) -> Option<&Arc<OwnerContext>> {
        self.open.get(&(l.key(), l.pid)).map(|(c, _)| c)
    }

    fn of_process(
        &mut self,
        l: &Listener,
        host: &mut dyn Host,
        batch: &mut Batch,
    ) -> Option<Arc<OwnerContext>> {
        // Within one snapshot a process checked once is the same one.
        if batch.checked.contains(&l.pid) || self.still_told(l.pid, Some(&l.comm), host, batch.now)
        {
            batch.checked.insert(l.pid);
            return self.by_pid.get(&l.pid).map(|t| t.ctx.clone());
        }
        let started = std::time::Instant::now();
        let facts = host.owner_facts(l.pid, &mut batch.ancestors)?;
        batch.checked.insert(l.pid);
        let ctx = self.remember(l.pid, facts, l.container.as_ref(), host, batch.now);
        // The benchmark reads this line (`cargo xtask bench --only context`).
        tracing::debug!(
            "context: told pid {} in {} us",
            l.pid,
            started.elapsed().as_micros()
        );
        Some(ctx)
    }

    /// The context `facts` tell, kept for `pid`.
    fn remember(
        &mut self,
        pid: u32,
        facts: crate::owner::OwnerFacts,
        container: Option<&crate::container::Container>,
        host: &mut dyn Host,
        now: Instant,
    ) -> Arc<OwnerContext> {
        let package = facts
            .exe
            .as_deref()
            .zip(facts.exe_id)
            .and_then(|(e, id)| host.package_of(e, id));
        let ctx = Arc::new(OwnerContext {
            source: facts.origin(container),
            ancestry: facts.ancestry.into_iter().map(|f| f.ancestor).collect(),
            cwd: facts.cwd,
            git: facts.git,
            exe: facts.exe,
            exe_deleted: facts.exe_deleted,
            cmdline: facts.cmdline,
            package,
            exe_sha256: None,
        });
        if self.by_pid.len() >= MAX_PROCESSES {
            // Those of open listeners stay (theirs are referenced there).
            self.by_pid.retain(|_, t| Arc::strong_count(&t.ctx) > 1);
            if self.by_pid.len() >= MAX_PROCESSES {
                self.by_pid.clear();
            }
        }
        self.by_pid.insert(
            pid,
            Told {
                start_time: facts.start_time,
                exe_id: facts.exe_id,
                ctx: ctx.clone(),
                checked_at: now,
                used_at: now,
            },
        );
        ctx
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        event::Proto,
        owner::{Ancestor, Forebear, OriginKind, OwnerFacts},
        sys::fake::FakeOs,
    };

    fn facts(pid: u32, start: u64, parent: &str) -> OwnerFacts {
        OwnerFacts {
            start_time: start,
            ancestry: vec![
                Forebear {
                    ancestor: Ancestor {
                        pid,
                        comm: "server".into(),
                    },
                    cgroup: "/".into(),
                    root: false,
                },
                Forebear {
                    ancestor: Ancestor {
                        pid: 2,
                        comm: parent.into(),
                    },
                    cgroup: "/".into(),
                    root: true,
                },
            ],
            exe_id: Some((1, 2)),
            exe: Some("/usr/bin/server".into()),
            ..OwnerFacts::default()
        }
    }

    fn listener(pid: u32, port: u16) -> Listener {
        Listener {
            pid,
            ..Listener::new(Proto::Tcp, Ipv4Addr::LOCALHOST.into(), port)
        }
    }

    #[test]
    fn a_process_is_read_once_and_its_story_outlives_it() {
        let fake = FakeOs::new();
        let mut host = fake.os().host;
        fake.world().owners.insert(10, facts(10, 100, "sshd"));
        fake.world()
            .packages
            .insert("/usr/bin/server".into(), "server-pkg".into());
        let mut cache = OwnerCache::default();
        let (mut a, mut b) = (listener(10, 80), listener(10, 81));
        cache.opened(&mut a, host.as_mut());
        cache.opened(&mut b, host.as_mut());
        assert_eq!(fake.world().owner_reads, 1);
        let ctx = a.context.clone().unwrap();
        assert_eq!(ctx.source.kind, OriginKind::Ssh);
        assert_eq!(ctx.package.as_deref(), Some("server-pkg"));
        assert!(Arc::ptr_eq(&ctx, b.context.as_ref().unwrap()));
        // The process exits: its close still tells the story.
        fake.world().owners.clear();
        let mut closed = listener(10, 80);
        cache.closed(&mut closed);
        assert_eq!(closed.context, Some(ctx));
        assert!(cache.of(&listener(10, 81)).is_some());
        assert!(cache.of(&listener(10, 80)).is_none());
    }

    #[test]
    fn a_reused_pid_is_read_anew() {
        let fake = FakeOs::new();
        let mut host = fake.os().host;
        fake.world().owners.insert(10, facts(10, 100, "sshd"));
        let mut cache = OwnerCache::default();
        let mut a = listener(10, 80);
        cache.opened(&mut a, host.as_mut());
        fake.world().owners.insert(10, facts(10, 200, "cron"));
        let mut b = listener(10, 81);
        cache.opened(&mut b, host.as_mut());
        assert_eq!(fake.world().owner_reads, 2);
        assert_eq!(b.context.unwrap().source.kind, OriginKind::Cron);
        // The same process (same start) after an execve: read anew.
        let mut exec = facts(10, 200, "sshd");
        exec.exe_id = Some((1, 3));
        fake.world().owners.insert(10, exec);
        let mut c = listener(10, 82);
        cache.opened(&mut c, host.as_mut());
        assert_eq!(fake.world().owner_reads, 3);
        assert_eq!(c.context.unwrap().source.kind, OriginKind::Ssh);
    }

    fn named(pid: u32, port: u16) -> Listener {
        Listener {
            comm: "server".into(),
            ..listener(pid, port)
        }
    }

    #[test]
    fn checks_are_freshened_between_events_not_on_their_path() {
        let fake = FakeOs::new();
        let mut host = fake.os().host;
        fake.world().owners.insert(10, facts(10, 100, "sshd"));
        let mut cache = OwnerCache::default();
        let t0 = Instant::now();
        let ms = std::time::Duration::from_millis;
        cache.opened_at(&mut named(10, 80), host.as_mut(), t0);
        // Checked a moment ago: nothing to do between events.
        cache.refresh_at(host.as_ref(), t0 + ms(10));
        assert_eq!(fake.world().start_time_reads, 0);
        // 60 ms on, older than REFRESH: checked between events...
        cache.refresh_at(host.as_ref(), t0 + ms(60));
        assert_eq!(fake.world().start_time_reads, 1);
        // ... so that a listener 120 ms after the first check finds it
        // fresh: without the refresh, it would read /proc on its path.
        cache.opened_at(&mut named(10, 81), host.as_mut(), t0 + ms(120));
        assert_eq!(fake.world().start_time_reads, 1);
        assert_eq!(fake.world().owner_reads, 1);
        // A process that exec'd meanwhile is forgotten at the refresh...
        let mut exec = facts(10, 100, "cron");
        exec.exe_id = Some((1, 3));
        fake.world().owners.insert(10, exec);
        cache.refresh_at(host.as_ref(), t0 + ms(180));
        assert_eq!(fake.world().start_time_reads, 2);
        assert!(!cache.by_pid.contains_key(&10));
        // ... and its next listener is told anew, within RECHECK of the
        // last check and under the same name.
        let mut c = named(10, 82);
        cache.opened_at(&mut c, host.as_mut(), t0 + ms(190));
        assert_eq!(fake.world().owner_reads, 2);
        assert_eq!(c.context.unwrap().source.kind, OriginKind::Cron);
    }

    #[test]
    fn the_baseline_and_idle_processes_are_not_freshened() {
        let fake = FakeOs::new();
        let mut host = fake.os().host;
        fake.world().owners.insert(10, facts(10, 100, "sshd"));
        fake.world().owners.insert(11, facts(11, 100, "sshd"));
        let mut cache = OwnerCache::default();
        let mut baseline = [listener(10, 80)];
        cache.opened_all(baseline.iter_mut(), host.as_mut());
        let t0 = Instant::now();
        let ms = std::time::Duration::from_millis;
        cache.opened_at(&mut listener(11, 81), host.as_mut(), t0);
        // Only the process that opened a listener while watched.
        cache.refresh_at(host.as_ref(), t0 + ms(60));
        assert_eq!(fake.world().start_time_reads, 1);
        // Idle for RECHECK: no longer looked at.
        cache.refresh_at(host.as_ref(), t0 + RECHECK + ms(60));
        assert_eq!(fake.world().start_time_reads, 1);
        assert!(!cache.refresh_wanted(t0 + RECHECK + ms(60)));
    }

    #[test]
    fn a_refresh_is_wanted_at_most_every_refresh_poll() {
        let fake = FakeOs::new();
        let mut host = fake.os().host;
        fake.world().owners.insert(10, facts(10, 100, "sshd"));
        let mut cache = OwnerCache::default();
        let t0 = Instant::now();
        assert!(!cache.refresh_wanted(t0));
        cache.opened_at(&mut listener(10, 80), host.as_mut(), t0);
        assert!(cache.refresh_wanted(t0));
        assert!(!cache.refresh_wanted(t0 + REFRESH_POLL / 2));
        assert!(cache.refresh_wanted(t0 + REFRESH_POLL));
    }

    #[test]
    fn the_processes_kept_fresh_are_bounded() {
        let fake = FakeOs::new();
        let mut host = fake.os().host;
        let mut cache = OwnerCache::default();
        let t0 = Instant::now();
        for pid in 10..10 + 2 * RECENT_MAX as u32 {
            fake.world().owners.insert(pid, facts(pid, 100, "sshd"));
            cache.opened_at(&mut listener(pid, 80), host.as_mut(), t0);
        }
        assert_eq!(cache.recent.len(), RECENT_MAX);
        // One call checks at most REFRESH_CHECKS of them.
        cache.refresh_at(host.as_ref(), t0 + REFRESH);
        assert_eq!(fake.world().start_time_reads, REFRESH_CHECKS);
    }

    #[test]
    fn no_owner_no_story() {
        let mut host = FakeOs::new().os().host;
        let mut cache = OwnerCache::default();
        let mut gone = listener(10, 80);
        cache.opened(&mut gone, host.as_mut());
        let mut unowned = listener(0, 81);
        cache.opened(&mut unowned, host.as_mut());
        assert_eq!((gone.context, unowned.context), (None, None));
    }
}
