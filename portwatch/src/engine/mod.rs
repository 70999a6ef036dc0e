//! The watch engine: attach, take the baseline, then turn kernel events
//! (or procfs polls) into reports, resynchronising with procfs when events
//! were lost, on a timer and on request.
//!
//! - [`ebpf`]: kernel events reconciled with procfs scans;
//! - [`poll`]: the fallback that compares procfs scans;
//! - [`resync`]: when to rescan (pure);
//! - [`udp_aggregate`]: the UDP aggregate mode's interval readings.

#[cfg(test)]
mod aggregate_tests;
mod ebpf;
mod poll;
mod resync;
#[cfg(test)]
mod tests;
mod udp_aggregate;
mod udp_seeds;
mod unseen;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::sys::bpf::Hook;
use crate::{
    error::{Error, Result},
    event::{Change, Listener, PortEvent, Proto, Source},
    filter::Filter,
    report::{Connection, ResyncSummary, Stats, UdpSummary},
    sys::{Host, Os, ProbeConfig, ProcessKind, SocketQuery, bpf},
};
use ebpf::EbpfWatch;
use poll::PollWatch;

/// Which event source to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum Backend {
    /// eBPF, or procfs polling with a warning when eBPF cannot load.
    #[default]
    Auto,
    Ebpf,
    Procfs,
}

/// Settings for [`Engine::start`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub backend: Backend,
    /// Ring buffer size in bytes: a power of two, at least 4096.
    pub ring_buffer_bytes: u32,
    pub hook: Hook,
    /// Report opens from the listen confirmation (a program at `listen()`'s
    /// return; other calls once the socket tables show them) when it can
    /// attach: only listens that succeeded, with their final port. Costs nothing per
    /// TCP connection; the syscall tracepoint costs every syscall of the
    /// host a few ns.
    pub listen_callback: bool,
    pub filter: Filter,
    /// Periodic procfs resynchronisation; `None` disables it (a resync
    /// still follows any lost event).
    pub resync_interval: Option<Duration>,
    /// Poll interval of the procfs backend.
    pub poll_interval: Duration,
    /// Report TCP connections too (for ExternalConnection rules). Costs a
    /// second program on the connection path while on.
    pub connections: bool,
    /// The UDP aggregate mode (`--udp-aggregate`), with its settle
    /// interval: the kernel only counts UDP binds, per process and port
    /// class; every interval the engine reports the counts
    /// ([`Report::UdpSummary`]) and, one by one, the sockets that are
    /// still open. `None`: every bind is reported as it happens.
    pub udp_aggregate: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            ring_buffer_bytes: bpf::DEFAULT_RING_BUFFER_BYTES,
            hook: Hook::Auto,
            listen_callback: true,
            filter: Filter::default(),
            resync_interval: Some(Duration::from_secs(60)),
            poll_interval: Duration::from_secs(1),
            connections: false,
            udp_aggregate: None,
        }
    }
}

impl EngineConfig {
    /// Checks what the types cannot: every setting the engine accepts is
    /// one it can run with.
    pub fn validate(&self) -> Result<()> {
        bpf::validate_ring_buffer_size(u64::from(self.ring_buffer_bytes))?;
        if self.poll_interval.is_zero() {
            return Err(Error::ZeroInterval("the procfs poll interval"));
        }
        if self.resync_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::ZeroInterval("the resync interval"));
        }
        if self.udp_aggregate.is_some_and(|d| d.is_zero()) {
            return Err(Error::ZeroInterval("the UDP settle interval"));
        }
        Ok(())
    }

    fn probe(&self) -> ProbeConfig {
        ProbeConfig {
            ring_buffer_bytes: self.ring_buffer_bytes,
            hook: self.hook,
            listen_callback: self.listen_callback,
            filter_tree: self.filter.pid.is_some(),
            connections: self.connections,
            tcp: self.filter.wants(Proto::Tcp),
            udp: self.filter.wants(Proto::Udp),
            udp_aggregate: self.udp_aggregate.is_some() && self.filter.wants(Proto::Udp),
        }
    }
}

/// Checks a ring buffer size given in bytes (e.g. from a command line).
pub fn ring_buffer_bytes(bytes: u64) -> Result<u32> {
    bpf::validate_ring_buffer_size(bytes)
}

/// One thing to tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    Port(PortEvent),
    Resync(ResyncSummary),
    /// A connection made or accepted (only with `connections` on).
    Connection(Connection),
    /// UDP binds of one process and port class in a settle interval (the
    /// aggregate mode only).
    UdpSummary(UdpSummary),
}

/// A running watcher.
pub struct Engine {
    inner: Inner,
    /// Why eBPF was not used, when `Backend::Auto` fell back to procfs.
    fallback_reason: Option<String>,
    /// Whether the watch follows process trees (`filter.pid`).
    tree_filter: bool,
}

enum Inner {
    Ebpf(Box<EbpfWatch>),
    Poll(Box<PollWatch>),
}

impl Engine {
    /// Starts watching and returns the engine with the baseline: the
    /// listeners that exist now, as `opened` events with `source: baseline`,
    /// after any listener that opened or closed while the engine started
    /// (`source: ebpf`, in the order they happened).
    pub fn start(config: &EngineConfig) -> Result<(Self, Vec<PortEvent>)> {
        Self::start_with(config, Os::system())
    }

    pub(crate) fn start_with(config: &EngineConfig, os: Os) -> Result<(Self, Vec<PortEvent>)> {
        config.validate()?;
        let Os { host, attach, .. } = os;
        if let Some(pid) = config.filter.pid {
            check_process(host.as_ref(), pid)?;
        }
        if let Some(ns) = config.filter.netns
            && !host.netns_exists(ns)
        {
            return Err(Error::NoSuchNetns(ns));
        }
        let source = match config.backend {
            Backend::Ebpf => Some(attach(&config.probe())?),
            Backend::Procfs => None,
            Backend::Auto => match attach(&config.probe()) {
                Ok(source) => Some(source),
                Err(e) => return Self::poll(config, host, Some(e.to_string())),
            },
        };
        match source {
            Some(source) => {
                let (w, baseline) = EbpfWatch::start(config, source, host)?;
                let engine = Self {
                    inner: Inner::Ebpf(Box::new(w)),
                    fallback_reason: None,
                    tree_filter: config.filter.pid.is_some(),
                };
                Ok((engine, baseline))
            }
            None => Self::poll(config, host, None),
        }
    }

    fn poll(
        config: &EngineConfig,
        host: Box<dyn Host>,
        fallback_reason: Option<String>,
    ) -> Result<(Self, Vec<PortEvent>)> {
        let (w, baseline) = PollWatch::start(config, host)?;
        let engine = Self {
            inner: Inner::Poll(Box::new(w)),
            fallback_reason,
            tree_filter: config.filter.pid.is_some(),
        };
        Ok((engine, baseline))
    }

    /// `"ebpf"` or `"procfs"`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner {
            Inner::Ebpf(_) => "ebpf",
            Inner::Poll(_) => "procfs",
        }
    }

    /// Why `Backend::Auto` fell back to procfs, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Why the listen confirmation is not in use though it was asked for (see
    /// [`EngineConfig::listen_callback`]).
    pub fn listen_callback_missing(&self) -> Option<&str> {
        match &self.inner {
            Inner::Ebpf(w) => w.listen_confirm_missing(),
            Inner::Poll(_) => None,
        }
    }

    /// Why UDP is not watched though it was asked for.
    pub fn udp_missing(&self) -> Option<&str> {
        match &self.inner {
            Inner::Ebpf(w) => w.udp_missing(),
            Inner::Poll(_) => None,
        }
    }

    /// Waits for the next reports (possibly none, when every event was
    /// already known). Cancel-safe: dropping the future loses nothing.
    pub async fn next_reports(&mut self) -> Result<Vec<Report>> {
        match &mut self.inner {
            Inner::Ebpf(w) => w.next_reports().await,
            Inner::Poll(w) => w.next_reports().await,
        }
    }

    /// Asks for a procfs resync as soon as possible: the next call to
    /// [`Self::next_reports`] does it (for the procfs backend: polls now).
    pub fn request_resync(&mut self) {
        match &mut self.inner {
            Inner::Ebpf(w) => w.request_resync(),
            Inner::Poll(w) => w.request_poll(),
        }
    }

    /// Watches the process tree of `pid` too, in a watch started with a
    /// tree filter (`filter.pid`): the listeners the tree holds already are
    /// reported opened by a resync (`source: resync`), new ones live.
    pub fn add_root(&mut self, pid: u32) -> Result<()> {
        self.check_tree_filter()?;
        check_process(self.host(), pid)?;
        match &mut self.inner {
            Inner::Ebpf(w) => w.add_root(pid),
            Inner::Poll(w) => {
                w.add_root(pid);
                Ok(())
            }
        }
    }

    /// Stops watching the process tree of `pid`; a resync reports its
    /// listeners closed (`source: resync`), as this watch no longer sees
    /// them. A pid that is no root is no error.
    pub fn remove_root(&mut self, pid: u32) -> Result<()> {
        self.check_tree_filter()?;
        match &mut self.inner {
            Inner::Ebpf(w) => w.remove_root(pid),
            Inner::Poll(w) => {
                w.remove_root(pid);
                Ok(())
            }
        }
    }

    fn check_tree_filter(&self) -> Result<()> {
        if !self.tree_filter {
            return Err(Error::Refused(
                "process trees can be added and removed only in a watch started with one (filter.pid)".into(),
            ));
        }
        Ok(())
    }

    /// Turns connection events on or off (eBPF backend with BTF only).
    pub fn set_connections(&mut self, on: bool) -> Result<()> {
        match &mut self.inner {
            Inner::Ebpf(w) => w.set_connections(on),
            Inner::Poll(_) if on => Err(Error::ConnectionsNeedEbpf),
            Inner::Poll(_) => Ok(()),
        }
    }

    /// Event, loss and resync counters.
    pub fn stats(&self) -> Stats {
        match &self.inner {
            Inner::Ebpf(w) => w.stats(),
            Inner::Poll(w) => w.stats(),
        }
    }

    /// The listeners open now, as far as the engine knows.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        let table = match &self.inner {
            Inner::Ebpf(w) => w.table(),
            Inner::Poll(w) => w.table(),
        };
        table.listeners()
    }

    /// The host the engine reads, for the monitor's process samples.
    pub(crate) fn host(&self) -> &dyn Host {
        match &self.inner {
            Inner::Ebpf(w) => w.host(),
            Inner::Poll(w) => w.host(),
        }
    }

    pub(crate) fn host_mut(&mut self) -> &mut dyn Host {
        match &mut self.inner {
            Inner::Ebpf(w) => w.host_mut(),
            Inner::Poll(w) => w.host_mut(),
        }
    }
}

/// Checks that `pid` names a process: not nothing, not one of its threads.
fn check_process(host: &dyn Host, pid: u32) -> Result<()> {
    match host.process_kind(pid) {
        ProcessKind::Process => Ok(()),
        ProcessKind::Missing => Err(Error::NoSuchProcess(pid)),
        ProcessKind::ThreadOf(tgid) => Err(Error::NotAProcess { tid: pid, tgid }),
    }
}

/// [`check_process`] on this host.
pub(crate) fn check_pid(pid: u32) -> Result<()> {
    check_process(Os::system().host.as_ref(), pid)
}

/// The socket tables the baseline and resyncs read: listening TCP
/// sockets, every UDP socket (see [`counts_as_bound`]).
pub(crate) fn scan_queries(filter: &Filter) -> Vec<SocketQuery> {
    let mut q = Vec::new();
    if filter.wants(Proto::Tcp) {
        q.push(SocketQuery::TCP_LISTEN);
    }
    if filter.wants(Proto::Udp) {
        q.push(SocketQuery::every_state(Proto::Udp));
    }
    q
}

/// Whether a scanned socket is a bound port: every TCP listener; a UDP
/// socket portwatch saw bound (`known`: live events report every explicit
/// bind()), or one on a port the kernel never hands out by itself. A scan
/// cannot tell how a socket on an ephemeral port got it: most often the
/// kernel bound a client at its first sendto() or connect() (every DNS
/// lookup), which no event reports, so no scan does either. The socket's
/// state does not matter: a server may connect() a bound socket.
pub(crate) fn counts_as_bound(
    l: &Listener,
    ephemeral: &std::ops::RangeInclusive<u16>,
    known: impl Fn(u64) -> bool,
) -> bool {
    l.proto == Proto::Tcp || !ephemeral.contains(&l.port) || l.cookie.is_some_and(known)
}

fn baseline_events(listeners: &[Listener], source: Source, now: DateTime<Utc>) -> Vec<PortEvent> {
    listeners
        .iter()
        .map(|l| PortEvent {
            change: Change::Opened,
            listener: l.clone(),
            ts: now,
            source,
        })
        .collect()
}
