//! One pipeline for every consumer: the engine, the optional rule
//! evaluator with its process sampler and its rules-file reload, yielding
//! one stream of [`MonitorEvent`]s. `watch`, `daemon`, the library's
//! [`crate::watcher`] API and the TUI all read it.

mod exposure;
mod sampler;
mod settle;
#[cfg(test)]
mod tests;

use std::{collections::VecDeque, ops::ControlFlow, path::PathBuf, time::Duration};

use chrono::{DateTime, Utc};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::{
    engine::{Engine, EngineConfig, Report},
    error::{Error, Result},
    event::{Listener, PortEvent, Source},
    exposure::Exposure,
    report::{ResyncSummary, Stats, UdpSummary},
    rules::{
        eval::{Alert, Evaluator},
        store,
        validate::Rules,
    },
    sys::{Os, file_watch::FileWatch},
};
use exposure::Exposures;

use crate::{
    owner_cache::OwnerCache,
    policy::drift::{Drift, Drifts},
};
use sampler::Sampler;
use settle::Settle;

/// Alert rules and the file they come from: the monitor reloads them when
/// the file changes.
#[derive(Clone, Debug)]
pub struct RulesSource {
    pub path: PathBuf,
    pub rules: Rules,
}

/// An expected-listeners policy and its file: the monitor reloads it when
/// the file changes.
#[derive(Clone, Debug)]
pub struct PolicySource {
    pub path: PathBuf,
    pub policy: crate::policy::Policy,
}

/// What a monitor runs.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    pub engine: EngineConfig,
    /// Alert rules to evaluate; none by default.
    pub rules: Option<RulesSource>,
    /// How often the CPU and memory of listening processes are sampled,
    /// while a rule needs them.
    pub sample_interval: Duration,
    /// Report a live open only once it has lived this long; one that
    /// closes sooner is not reported at all (nor seen by the rules).
    pub settle: Option<Duration>,
    /// Judge each listener's exposure and report its changes (on by
    /// default; it reads and watches each namespace's netfilter rules
    /// and interfaces on a thread of its own).
    pub exposure: bool,
    /// Tell each listener's owner context ([`crate::owner`]): read once
    /// per process, when its first listener opens (on by default).
    pub context: bool,
    /// Report [`MonitorEvent::Drift`]s from this policy; none by default.
    pub policy: Option<PolicySource>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            rules: None,
            sample_interval: Duration::from_secs(1),
            settle: None,
            exposure: true,
            context: true,
            policy: None,
        }
    }
}

/// Everything a monitor reports, in order: listeners that opened or
/// closed while it started, the baseline's port events,
/// [`MonitorEvent::Ready`], then live events.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum MonitorEvent {
    /// A listener opened or closed. Before `Ready`: the baseline
    /// (`source: baseline`), after what came and went during start-up.
    Port(PortEvent),
    /// The baseline is complete; from here on events are live.
    Ready(Ready),
    /// A procfs resync ran.
    Resync(ResyncSummary),
    /// A rule fired.
    Alert(Alert),
    /// Something the user should know that is no port change.
    Notice(Notice),
    /// Who can reach an open listener changed.
    ExposureChanged(ExposureChange),
    /// The listeners differ from the policy, or no longer do.
    Drift(Drift),
    /// UDP binds of one process and port class in a settle interval
    /// (`--udp-aggregate` only).
    UdpSummary(UdpSummary),
}

/// See [`MonitorEvent::ExposureChanged`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExposureChange {
    /// The listener, with its exposure now.
    pub listener: Listener,
    pub before: Exposure,
    /// Its published ports before.
    pub before_published: Vec<crate::exposure::Published>,
    pub ts: DateTime<Utc>,
}

/// See [`MonitorEvent::Ready`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    /// `"ebpf"` or `"procfs"` (or what a daemon said, read from its line).
    pub backend: String,
    /// Listeners in the baseline.
    pub listeners: usize,
    pub ts: DateTime<Utc>,
}

/// See [`MonitorEvent::Notice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    /// One sentence.
    pub message: String,
    pub ts: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoticeKind {
    /// The rules file changed and its new rules are in force.
    RulesReloaded,
    /// The rules file changed but cannot be used: the previous rules stay.
    RulesError,
    /// A feature asked for cannot run here.
    Warning,
    /// The policy file changed and its new entries are in force.
    PolicyReloaded,
    /// The policy file changed but cannot be used: the previous one stays.
    PolicyError,
}

impl NoticeKind {
    /// The `event` name of the notice's JSON line.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::RulesReloaded => "rules_reloaded",
            NoticeKind::RulesError => "rules_error",
            NoticeKind::Warning => "warning",
            NoticeKind::PolicyReloaded => "policy_reloaded",
            NoticeKind::PolicyError => "policy_error",
        }
    }
}

/// The alert rules in force, with what they need.
struct Alerting {
    evaluator: Evaluator,
    path: PathBuf,
    watch: FileWatch,
    sampler: Sampler,
    tick: Interval,
}

/// The policy in force, its drift state and its file.
struct Expecting {
    drifts: Drifts,
    path: PathBuf,
    watch: FileWatch,
}

/// A running monitor. Dropping it stops everything and detaches the
/// kernel programs.
pub struct Monitor {
    engine: Engine,
    alerting: Option<Alerting>,
    queue: VecDeque<MonitorEvent>,
    settle: Option<Settle>,
    exposures: Option<Exposures>,
    owners: Option<OwnerCache>,
    expecting: Option<Expecting>,
}

impl Monitor {
    /// Attaches (or falls back to polling), takes the baseline and loads
    /// the rules. The baseline and the ready event are the first events
    /// [`Self::next`] returns. Needs a tokio runtime.
    pub fn start(config: MonitorConfig) -> Result<Self> {
        Self::start_with(config, Os::system())
    }

    pub(crate) fn start_with(config: MonitorConfig, mut os: Os) -> Result<Self> {
        if config.sample_interval.is_zero() {
            return Err(Error::ZeroInterval("the sample interval"));
        }
        let mut engine_config = config.engine;
        // Connection events cost a program on the connection path: only
        // on while a rule needs them.
        engine_config.connections = config
            .rules
            .as_ref()
            .is_some_and(|r| Evaluator::new(r.rules.clone(), []).wants_connections());
        // The file is watched before the engine starts: a change made
        // while it starts is not missed.
        let watch = match &config.rules {
            Some(r) => Some(FileWatch::new(&r.path).map_err(|source| Error::Io {
                what: "cannot watch the rules file for changes",
                source,
            })?),
            None => None,
        };
        let policy_watch = match &config.policy {
            Some(p) => Some(FileWatch::new(&p.path).map_err(|source| Error::Io {
                what: "cannot watch the policy file for changes",
                source,
            })?),
            None => None,
        };
        let start_facts = std::mem::replace(
            &mut os.facts,
            Box::new(|_| Err(std::io::Error::other("taken"))),
        );
        let (mut engine, mut baseline) = Engine::start_with(&engine_config, os)?;
        let owners = config.context.then(|| {
            let mut owners = OwnerCache::default();
            let started = std::time::Instant::now();
            let host = engine.host_mut();
            // The rest are live news, told as they are reported.
            owners.opened_all(
                baseline
                    .iter_mut()
                    .filter(|e| e.source == Source::Baseline)
                    .map(|e| &mut e.listener),
                host,
            );
            // The benchmark reads this line (`cargo xtask bench --only context`).
            tracing::debug!(
                "context: told {} listeners of {} processes in {} us",
                baseline
                    .iter()
                    .filter(|e| e.source == Source::Baseline)
                    .count(),
                owners.processes(),
                started.elapsed().as_micros()
            );
            owners
        });
        let now = engine.host().wall_now();
        let mut queue = VecDeque::new();
        let exposures = if config.exposure {
            match start_facts(crate::exposure::translate) {
                Ok(source) => {
                    let mut e = Exposures::new(source);
                    e.read_baseline(baseline.iter().map(|ev| &ev.listener));
                    let host = engine.host();
                    let mut judge_all = |e: &mut Exposures| {
                        let mut proxies = false;
                        for ev in baseline
                            .iter_mut()
                            .filter(|ev| ev.source == Source::Baseline)
                        {
                            let pid = ev.listener.pid;
                            proxies |= e.opened(&mut ev.listener, || host.cmdline(pid));
                        }
                        proxies
                    };
                    // Once more when a userland proxy was found: what it
                    // reaches may have been judged before it.
                    if judge_all(&mut e) {
                        judge_all(&mut e);
                    }
                    Some(e)
                }
                Err(e) => {
                    let message = format!("warning: exposure is not judged: {e}");
                    queue.push_back(notice(NoticeKind::Warning, message, now));
                    None
                }
            }
        } else {
            None
        };
        if let Some(reason) = engine.listen_callback_missing() {
            let message = format!(
                "warning: the listen confirmation is not attached ({reason}): a listen() that fails may be reported as a listener opened and closed, and the port of a listen() without bind() is looked up in /proc"
            );
            queue.push_back(notice(NoticeKind::Warning, message, now));
        }
        if let Some(reason) = engine.udp_missing() {
            let message = format!("warning: UDP ports are not watched: {reason}");
            queue.push_back(notice(NoticeKind::Warning, message, now));
        }
        if engine_config.connections && engine.fallback_reason().is_some() {
            queue.push_back(notice(
                NoticeKind::Warning,
                "warning: ExternalConnection rules need eBPF and will not fire".into(),
                now,
            ));
        }
        let is_baseline = |e: &&PortEvent| e.source == Source::Baseline;
        let alerting = config.rules.zip(watch).map(|(source, watch)| {
            let mut tick = tokio::time::interval(config.sample_interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Alerting {
                // Processes already listening are known to
                // UnknownProcessListening.
                evaluator: Evaluator::new(
                    source.rules,
                    baseline
                        .iter()
                        .filter(is_baseline)
                        .map(|e| e.listener.comm.clone()),
                ),
                path: source.path,
                watch,
                sampler: Sampler::default(),
                tick,
            }
        });
        let listeners = baseline.iter().filter(is_baseline).count();
        let mut monitor = Self {
            engine,
            alerting,
            queue,
            settle: config.settle.filter(|d| !d.is_zero()).map(Settle::new),
            exposures,
            owners,
            expecting: config
                .policy
                .zip(policy_watch)
                .map(|(source, watch)| Expecting {
                    drifts: Drifts::new(source.policy),
                    path: source.path,
                    watch,
                }),
        };
        // Start-up events that are no baseline are live news: rules see
        // them.
        for ev in baseline {
            if ev.source == Source::Baseline {
                if let Some(x) = &mut monitor.expecting {
                    x.drifts.opened(&ev.listener, ev.ts);
                }
                monitor.queue.push_back(MonitorEvent::Port(ev));
            } else {
                monitor.report(Report::Port(ev));
            }
        }
        let backend = monitor.engine.backend_name();
        monitor.queue.push_back(MonitorEvent::Ready(Ready {
            backend: backend.to_string(),
            listeners,
            ts: now,
        }));
        // The differences from the policy at start, after the baseline.
        if let Some(x) = &mut monitor.expecting {
            let drifts = x.drifts.ready(now);
            monitor
                .queue
                .extend(drifts.into_iter().map(MonitorEvent::Drift));
        }
        Ok(monitor)
    }

    /// The next event. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<MonitorEvent> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(ev);
            }
            self.fill().await?;
        }
    }

    /// Calls `handle` with every event until `stop` completes, `handle`
    /// breaks, or either fails. `handle`'s second argument says whether more
    /// events are already queued: a writer can hold its output until the last one
    /// and write a burst at once.
    pub async fn run_until<E, F>(
        &mut self,
        stop: impl Future<Output = ()>,
        mut handle: F,
    ) -> std::result::Result<(), E>
    where
        E: From<Error>,
        F: FnMut(MonitorEvent, bool) -> std::result::Result<ControlFlow<()>, E>,
    {
        tokio::pin!(stop);
        loop {
            let ev = tokio::select! {
                () = &mut stop => return Ok(()),
                ev = self.next() => ev?,
            };
            let more_queued = !self.queue.is_empty();
            if handle(ev, more_queued)?.is_break() {
                return Ok(());
            }
        }
    }

    /// Waits for whatever comes next and queues its events.
    async fn fill(&mut self) -> Result<()> {
        let sampling = self
            .alerting
            .as_ref()
            .is_some_and(|a| a.evaluator.wants_samples());
        let settle_due = self.settle.as_ref().and_then(Settle::next_due);
        // Owner checks are freshened between events (`OwnerCache::refresh`),
        // once everything handed out was written and the engine has nothing
        // waiting: one poll of it first (cancel-safe, as in the select).
        let now = std::time::Instant::now();
        if self.owners.as_mut().is_some_and(|o| o.refresh_wanted(now)) {
            let engine = &mut self.engine;
            let polled = std::future::poll_fn(|cx| {
                let next = std::pin::pin!(engine.next_reports());
                std::task::Poll::Ready(next.poll(cx))
            })
            .await;
            match polled {
                std::task::Poll::Ready(reports) => {
                    for r in reports? {
                        self.report(r);
                    }
                    return Ok(());
                }
                std::task::Poll::Pending => {
                    if let Some(o) = &mut self.owners {
                        o.refresh(self.engine.host());
                    }
                }
            }
        }
        let woke = {
            let Self {
                engine,
                alerting,
                exposures,
                expecting,
                ..
            } = self;
            let (tick, watch) = match alerting.as_mut() {
                Some(a) => (Some(&mut a.tick), Some(&mut a.watch)),
                None => (None, None),
            };
            tokio::select! {
                reports = engine.next_reports() => Woke::Reports(reports),
                _ = async {
                    match tick {
                        Some(t) => { t.tick().await; }
                        None => std::future::pending::<()>().await,
                    }
                }, if sampling => Woke::Tick,
                changed = async {
                    match watch {
                        Some(w) => std::future::poll_fn(|cx| w.poll_changed(cx)).await,
                        None => std::future::pending().await,
                    }
                } => Woke::RulesChanged(changed),
                () = async {
                    match settle_due {
                        Some(due) => tokio::time::sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                } => Woke::Settled,
                changed = async {
                    match exposures.as_mut() {
                        Some(e) => std::future::poll_fn(|cx| e.poll_changed(cx)).await,
                        None => std::future::pending().await,
                    }
                } => Woke::Facts(changed),
                changed = async {
                    match expecting.as_mut() {
                        Some(x) => std::future::poll_fn(|cx| x.watch.poll_changed(cx)).await,
                        None => std::future::pending().await,
                    }
                } => Woke::PolicyChanged(changed),
            }
        };
        match woke {
            Woke::Reports(reports) => {
                for r in reports? {
                    self.report(r);
                }
            }
            Woke::Tick => self.sample(),
            Woke::Facts(Some((netns, facts))) => self.new_facts(netns, facts),
            // The facts thread ended: exposure stays as last judged.
            Woke::Facts(None) => {
                self.exposures = None;
                let now = self.engine.host().wall_now();
                let message = "warning: exposure changes are no longer watched".to_string();
                self.queue
                    .push_back(notice(NoticeKind::Warning, message, now));
            }
            Woke::Settled => {
                let now = tokio::time::Instant::now();
                let due = self
                    .settle
                    .as_mut()
                    .map(|s| s.release(now))
                    .unwrap_or_default();
                for ev in due {
                    self.report_port(ev);
                }
            }
            Woke::RulesChanged(changed) => {
                changed.map_err(|source| Error::Io {
                    what: "watching the rules file failed",
                    source,
                })?;
                self.reload();
            }
            Woke::PolicyChanged(changed) => {
                changed.map_err(|source| Error::Io {
                    what: "watching the policy file failed",
                    source,
                })?;
                self.reload_policy();
            }
        }
        Ok(())
    }

    fn report(&mut self, r: Report) {
        match r {
            Report::Port(ev) => {
                let ev = match &mut self.settle {
                    Some(s) => s.offer(ev, tokio::time::Instant::now()),
                    None => Some(ev),
                };
                if let Some(ev) = ev {
                    self.report_port(ev);
                }
            }
            Report::Connection(c) => {
                if let Some(a) = &mut self.alerting {
                    let alerts = a.evaluator.on_connection(&c);
                    self.queue
                        .extend(alerts.into_iter().map(MonitorEvent::Alert));
                }
            }
            Report::Resync(summary) => self.queue.push_back(MonitorEvent::Resync(summary)),
            Report::UdpSummary(s) => self.queue.push_back(MonitorEvent::UdpSummary(s)),
        }
    }

    /// New exposure facts of a namespace: the listeners whose exposure
    /// changed are reported.
    fn new_facts(&mut self, netns: u64, facts: crate::sys::exposure_watch::FactsResult) {
        let Some(e) = &mut self.exposures else { return };
        let started = std::time::Instant::now();
        let open = self.engine.listeners().count();
        let changed = e.new_facts(netns, facts, self.engine.listeners());
        // The benchmark reads this line (`cargo xtask bench --only exposure`).
        tracing::debug!(
            "exposure: re-judged {open} listeners for netns {netns} in {} us, {} changed",
            started.elapsed().as_micros(),
            changed.len()
        );
        self.exposure_changes(changed);
    }

    /// Queues an exposure_changed event for each judgement that changed,
    /// and the alerts it fires.
    fn exposure_changes(&mut self, changed: Vec<(Listener, exposure::Judgement)>) {
        let now = self.engine.host().wall_now();
        for (listener, (before, before_published)) in changed {
            let change = ExposureChange {
                listener,
                before,
                before_published,
                ts: now,
            };
            let alerts = self
                .alerting
                .as_mut()
                .map(|a| {
                    a.evaluator
                        .on_exposure(&change.listener, &change.before, change.ts)
                })
                .unwrap_or_default();
            let drifts = self
                .expecting
                .as_mut()
                .map(|x| x.drifts.changed(&change.listener, change.ts))
                .unwrap_or_default();
            self.queue.push_back(MonitorEvent::ExposureChanged(change));
            self.queue
                .extend(alerts.into_iter().map(MonitorEvent::Alert));
            self.queue
                .extend(drifts.into_iter().map(MonitorEvent::Drift));
        }
    }

    /// A port event that is to be reported: queued, and evaluated.
    fn report_port(&mut self, mut ev: PortEvent) {
        if let Some(o) = &mut self.owners {
            match ev.change {
                crate::event::Change::Opened => o.opened(&mut ev.listener, self.engine.host_mut()),
                crate::event::Change::Closed => o.closed(&mut ev.listener),
            }
        }
        let proxy = match &mut self.exposures {
            Some(e) => {
                let host = self.engine.host();
                let pid = ev.listener.pid;
                match ev.change {
                    crate::event::Change::Opened => {
                        e.opened(&mut ev.listener, || host.cmdline(pid))
                    }
                    crate::event::Change::Closed => e.closed(&mut ev.listener),
                }
            }
            None => false,
        };
        let alerts = self
            .alerting
            .as_mut()
            .map(|a| a.evaluator.on_port(&ev))
            .unwrap_or_default();
        let drifts = match &mut self.expecting {
            Some(x) => match ev.change {
                crate::event::Change::Opened => x.drifts.opened(&ev.listener, ev.ts),
                crate::event::Change::Closed => x.drifts.closed(&ev.listener, ev.ts),
            },
            None => Vec::new(),
        };
        self.queue.push_back(MonitorEvent::Port(ev));
        self.queue
            .extend(alerts.into_iter().map(MonitorEvent::Alert));
        self.queue
            .extend(drifts.into_iter().map(MonitorEvent::Drift));
        // A userland proxy came or went: what it reaches is published
        // anew.
        if proxy && let Some(e) = &mut self.exposures {
            let changed = e.rejudge(self.engine.listeners());
            self.exposure_changes(changed);
        }
    }

    fn reload(&mut self) {
        let Some(a) = &mut self.alerting else { return };
        let now = self.engine.host().wall_now();
        match store::load(&a.path) {
            Ok(rules) => {
                let n = rules.file.rules.len();
                a.evaluator.replace_rules(rules);
                let message = format!("reloaded {n} rules from {}", a.path.display());
                self.queue
                    .push_back(notice(NoticeKind::RulesReloaded, message, now));
                // A reload may enable or disable connection rules.
                let wants = a.evaluator.wants_connections();
                if let Err(e) = self.engine.set_connections(wants) {
                    let message = format!("connection rules cannot run: {e}");
                    self.queue
                        .push_back(notice(NoticeKind::Warning, message, now));
                }
            }
            Err(e) => {
                let message = format!("{e}; the previous rules stay in force");
                self.queue
                    .push_back(notice(NoticeKind::RulesError, message, now));
            }
        }
    }

    /// Reads the policy file again: its drifts follow a notice, or an
    /// error notice says why the previous policy stays.
    pub fn reload_policy(&mut self) {
        let Some(x) = &mut self.expecting else { return };
        let now = self.engine.host().wall_now();
        match crate::policy::load(&x.path) {
            Ok(policy) => {
                let message = format!(
                    "reloaded {} expected listeners from {}",
                    policy.entries().len(),
                    x.path.display()
                );
                let drifts = x.drifts.replace(policy, now);
                self.queue
                    .push_back(notice(NoticeKind::PolicyReloaded, message, now));
                self.queue
                    .extend(drifts.into_iter().map(MonitorEvent::Drift));
            }
            Err(e) => {
                let message = format!("{e}; the previous policy stays in force");
                self.queue
                    .push_back(notice(NoticeKind::PolicyError, message, now));
            }
        }
    }

    /// The policy's drift state, when a policy is in force.
    pub fn drifts(&self) -> Option<&Drifts> {
        self.expecting.as_ref().map(|x| &x.drifts)
    }

    /// Samples the owners of open listeners and evaluates the resource
    /// rules on them.
    fn sample(&mut self) {
        let Some(a) = &mut self.alerting else { return };
        let mut pids: Vec<(u32, String)> = self
            .engine
            .listeners()
            .filter(|l| l.pid != 0)
            .map(|l| (l.pid, l.comm.clone()))
            .collect();
        pids.sort();
        pids.dedup_by_key(|p| p.0);
        let host = self.engine.host();
        let samples = a
            .sampler
            .sample(host, &pids, Instant::now(), host.wall_now());
        for s in &samples {
            let alerts = a.evaluator.on_sample(s);
            self.queue
                .extend(alerts.into_iter().map(MonitorEvent::Alert));
        }
    }

    /// Reads the rules file again now (on SIGHUP), as a change to it
    /// would: a notice says how it went.
    pub fn reload_rules(&mut self) {
        self.reload();
    }

    /// Whether events are queued that [`Self::next`] returns at once.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Watches the process tree of `pid` too (a monitor started with a
    /// tree filter): see [`Engine::add_root`].
    pub fn add_root(&mut self, pid: u32) -> Result<()> {
        self.engine.add_root(pid)
    }

    /// Stops watching the process tree of `pid`: see
    /// [`Engine::remove_root`].
    pub fn remove_root(&mut self, pid: u32) -> Result<()> {
        self.engine.remove_root(pid)
    }

    /// Asks for a procfs resync now; its summary follows as an event.
    pub fn resync_now(&mut self) {
        self.engine.request_resync();
    }

    /// The listeners open now, as far as the monitor knows.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.engine.listeners()
    }

    /// The exposure of an open listener, as last judged (`None` when
    /// exposure is not judged).
    pub fn exposure_of(&self, listener: &Listener) -> Option<&Exposure> {
        self.exposures.as_ref()?.of(&listener.key())
    }

    /// The owner context of an open listener (`None` when not told).
    pub fn context_of(
        &self,
        listener: &Listener,
    ) -> Option<&std::sync::Arc<crate::owner::OwnerContext>> {
        self.owners.as_ref()?.of(listener)
    }

    /// Event, loss and resync counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// `"ebpf"` or `"procfs"`.
    pub fn backend_name(&self) -> &'static str {
        self.engine.backend_name()
    }

    /// Why eBPF is not used, when the engine fell back to procfs.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.engine.fallback_reason()
    }

    /// The alert rules in force, if any.
    pub fn rules(&self) -> Option<&Rules> {
        self.alerting.as_ref().map(|a| a.evaluator.rules())
    }
}

/// What ended a wait in [`Monitor::fill`].
enum Woke {
    Reports(Result<Vec<Report>>),
    Tick,
    RulesChanged(std::io::Result<()>),
    /// A held open lived out the settle time.
    Settled,
    /// A namespace's exposure facts were read (None: no more will be).
    Facts(Option<(u64, crate::sys::exposure_watch::FactsResult)>),
    PolicyChanged(std::io::Result<()>),
}

fn notice(kind: NoticeKind, message: String, ts: DateTime<Utc>) -> MonitorEvent {
    MonitorEvent::Notice(Notice { kind, message, ts })
}
