//! The watch engine: attach, take the baseline, then turn kernel events
//! into reports.

use chrono::Utc;

use crate::{
    error::Result,
    event::{Change, KernelEvent, PortEvent, Source},
    sys::{bpf::KernelProbe, clock::BootClock, privilege, procfs_scan},
    table::ListenerTable,
};

/// Settings for [`Engine::start`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Ring buffer size in bytes: a power of two, at least 4096.
    pub ring_buffer_bytes: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: crate::sys::bpf::DEFAULT_RING_BUFFER_BYTES,
        }
    }
}

/// Counters a caller can read at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Kernel events received.
    pub events: u64,
    /// Events the kernel dropped because the ring buffer was full.
    pub drops: u64,
}

/// A running watcher over every TCP listener of the host.
pub struct Engine {
    probe: KernelProbe,
    table: ListenerTable,
    clock: BootClock,
    /// Boot time at which the start-up scan finished.
    scan_end_ns: u64,
    pending: Vec<KernelEvent>,
    events: u64,
}

impl Engine {
    /// Attaches the kernel programs, then scans procfs, and returns the
    /// engine with the baseline. Attaching first means no listener opened
    /// or closed during start-up is missed: its event waits in the ring
    /// buffer and is reconciled with the scan by [`Engine::next_events`].
    pub fn start(config: &EngineConfig) -> Result<(Self, Vec<PortEvent>)> {
        privilege::require_ebpf_privileges()?;
        let probe = KernelProbe::attach(config.ring_buffer_bytes)?;
        let listeners = procfs_scan::scan_listeners()?;
        let scan_end_ns = BootClock::boot_now_ns();
        let now = Utc::now();
        let baseline = listeners
            .iter()
            .map(|l| PortEvent {
                change: Change::Opened,
                listener: l.clone(),
                ts: now,
                source: Source::Baseline,
            })
            .collect();
        let mut table = ListenerTable::new();
        table.seed(listeners);
        let engine = Self {
            probe,
            table,
            clock: BootClock::new(),
            scan_end_ns,
            pending: Vec::new(),
            events: 0,
        };
        Ok((engine, baseline))
    }

    /// Waits for kernel events and returns the reports they make (possibly
    /// none, when every event was already known).
    pub async fn next_events(&mut self) -> Result<Vec<PortEvent>> {
        if self.pending.is_empty() {
            self.probe.read(&mut self.pending).await?;
        }
        self.events += self.pending.len() as u64;
        let mut out = Vec::with_capacity(self.pending.len());
        for ev in self.pending.drain(..) {
            let ts = self.clock.to_wall(ev.ts_ns);
            if let Some(report) = self.table.apply(&ev, ts, self.scan_end_ns) {
                out.push(report);
            }
        }
        Ok(out)
    }

    /// Event and loss counters.
    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            events: self.events,
            drops: self.probe.drops()?,
        })
    }

    /// The listeners open now, as far as the events tell.
    pub fn table(&self) -> &ListenerTable {
        &self.table
    }
}
