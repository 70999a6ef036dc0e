//! `--metrics ADDR`: Prometheus metrics at `/metrics` (the prometheus
//! crate, text format),
//! `/healthz` and `/readyz`, served by axum. Labels take only values
//! from small fixed sets (event kind, protocol, resync reason, severity)
//! or from the rules file (rule ids) and the program names: never a pid,
//! port, address or process name, so 50,000 listeners make no more series
//! than one.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

mod connections;

use anyhow::Context as _;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use portwatch::{Change, MonitorEvent, Stats, host, monitor::NoticeKind};
use prometheus::{
    Counter, CounterVec, Encoder as _, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Cumulative counts read from elsewhere, as last seen: counters grow by
/// the difference.
#[derive(Default)]
struct Last {
    drops: u64,
    owners_full: u64,
    binds_full: u64,
    cpu_seconds: f64,
    programs: Vec<(String, u64, u64)>,
}

pub struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    drops: IntCounter,
    resyncs: IntCounterVec,
    corrections: IntCounterVec,
    owners_full: IntCounter,
    udp_binds: IntCounterVec,
    binds_full: IntCounter,
    listeners: IntGaugeVec,
    exposed: IntGaugeVec,
    exposure_changes: IntCounter,
    alerts: IntCounterVec,
    reloads: IntCounterVec,
    drifts: IntCounterVec,
    drifting: IntGaugeVec,
    journal_written: IntCounter,
    journal_lost: IntCounter,
    journal_failed: IntGauge,
    otlp_sent: IntCounter,
    otlp_lost: IntCounter,
    otlp_queued: IntGauge,
    clients: IntGauge,
    program_time: CounterVec,
    program_runs: IntCounterVec,
    cpu: Counter,
    rss: IntGauge,
    ready: AtomicBool,
    /// When the event loop last read the counters ([`Metrics::stats`],
    /// once a second), in ms since `born`; 0 before the first time.
    loop_seen_ms: AtomicU64,
    born: std::time::Instant,
    last: Mutex<Last>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("portwatch_{name}"), help)
}

impl Metrics {
    /// Every metric, registered. Fails only on a name or label mistake
    /// in this file.
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let m = Self {
            events: IntCounterVec::new(
                opts("events_total", "Listeners reported opened or closed"),
                &["event", "proto"],
            )?,
            drops: IntCounter::with_opts(opts(
                "kernel_drops_total",
                "Kernel events dropped because the ring buffer was full",
            ))?,
            resyncs: IntCounterVec::new(
                opts("resyncs_total", "procfs resyncs, by reason"),
                &["reason"],
            )?,
            corrections: IntCounterVec::new(
                opts(
                    "resync_corrections_total",
                    "Listeners a resync found opened or closed that events had missed",
                ),
                &["reason", "change"],
            )?,
            owners_full: IntCounter::with_opts(opts(
                "owners_untracked_total",
                "Listeners whose owner the kernel map had no room for",
            ))?,
            udp_binds: IntCounterVec::new(
                opts(
                    "udp_aggregated_binds_total",
                    "UDP binds the aggregate mode counted (--udp-aggregate), by port class",
                ),
                &["class"],
            )?,
            binds_full: IntCounter::with_opts(opts(
                "udp_binds_untallied_total",
                "UDP binds the aggregate mode's kernel tally had no room for",
            ))?,
            listeners: IntGaugeVec::new(
                opts("listeners", "Listeners open now (TCP listening, UDP bound)"),
                &["proto"],
            )?,
            exposed: IntGaugeVec::new(
                opts(
                    "listeners_by_exposure",
                    "Listeners open now, by who can reach them (loopback, filtered, reachable, unknown)",
                ),
                &["proto", "exposure"],
            )?,
            exposure_changes: IntCounter::with_opts(opts(
                "exposure_changes_total",
                "Listeners whose exposure changed while open",
            ))?,
            alerts: IntCounterVec::new(
                opts("alerts_total", "Alerts fired, by rule and severity"),
                &["rule_id", "severity"],
            )?,
            reloads: IntCounterVec::new(
                opts("rules_reloads_total", "Rules file reloads, by result"),
                &["result"],
            )?,
            drifts: IntCounterVec::new(
                opts(
                    "drifts_total",
                    "Drifts from the expected-listeners policy, by kind (unexpected, missing, expected)",
                ),
                &["kind"],
            )?,
            drifting: IntGaugeVec::new(
                opts(
                    "drifting",
                    "Listeners the policy does not expect (unexpected) and its entries no listener matches (missing), now",
                ),
                &["kind"],
            )?,
            journal_written: IntCounter::with_opts(opts(
                "journal_written_total",
                "Events written to the journal",
            ))?,
            journal_lost: IntCounter::with_opts(opts(
                "journal_lost_total",
                "Events not written to the journal (its writer fell behind, or stopped)",
            ))?,
            journal_failed: IntGauge::with_opts(opts(
                "journal_failed",
                "Whether the journal stopped on an error such as a full disk (then 1): events are no longer journaled",
            ))?,
            otlp_sent: IntCounter::with_opts(opts(
                "otlp_records_sent_total",
                "Log records the OTLP collector took (--otlp)",
            ))?,
            otlp_lost: IntCounter::with_opts(opts(
                "otlp_records_lost_total",
                "Log records not delivered to the OTLP collector: its queue was full, the collector refused them, or portwatch stopped first",
            ))?,
            otlp_queued: IntGauge::with_opts(opts(
                "otlp_records_queued",
                "Log records waiting for the OTLP collector, now",
            ))?,
            clients: IntGauge::with_opts(opts(
                "socket_clients",
                "Clients connected to the event socket",
            ))?,
            program_time: CounterVec::new(
                opts(
                    "bpf_program_run_time_seconds_total",
                    "Kernel run time of each eBPF program (while kernel.bpf_stats_enabled is 1)",
                ),
                &["program"],
            )?,
            program_runs: IntCounterVec::new(
                opts(
                    "bpf_program_runs_total",
                    "Runs of each eBPF program (while kernel.bpf_stats_enabled is 1)",
                ),
                &["program"],
            )?,
            cpu: Counter::with_opts(opts("process_cpu_seconds_total", "CPU time portwatch used"))?,
            rss: IntGauge::with_opts(opts(
                "process_resident_memory_bytes",
                "portwatch's resident memory",
            ))?,
            registry,
            ready: AtomicBool::new(false),
            loop_seen_ms: AtomicU64::new(0),
            born: std::time::Instant::now(),
            last: Mutex::new(Last::default()),
        };
        m.registry.register(Box::new(m.events.clone()))?;
        m.registry.register(Box::new(m.drops.clone()))?;
        m.registry.register(Box::new(m.resyncs.clone()))?;
        m.registry.register(Box::new(m.corrections.clone()))?;
        m.registry.register(Box::new(m.owners_full.clone()))?;
        m.registry.register(Box::new(m.udp_binds.clone()))?;
        m.registry.register(Box::new(m.binds_full.clone()))?;
        m.registry.register(Box::new(m.listeners.clone()))?;
        m.registry.register(Box::new(m.exposed.clone()))?;
        m.registry.register(Box::new(m.exposure_changes.clone()))?;
        m.registry.register(Box::new(m.alerts.clone()))?;
        m.registry.register(Box::new(m.reloads.clone()))?;
        m.registry.register(Box::new(m.drifts.clone()))?;
        m.registry.register(Box::new(m.drifting.clone()))?;
        m.registry.register(Box::new(m.journal_written.clone()))?;
        m.registry.register(Box::new(m.journal_lost.clone()))?;
        m.registry.register(Box::new(m.journal_failed.clone()))?;
        m.registry.register(Box::new(m.otlp_sent.clone()))?;
        m.registry.register(Box::new(m.otlp_lost.clone()))?;
        m.registry.register(Box::new(m.otlp_queued.clone()))?;
        m.registry.register(Box::new(m.clients.clone()))?;
        m.registry.register(Box::new(m.program_time.clone()))?;
        m.registry.register(Box::new(m.program_runs.clone()))?;
        m.registry.register(Box::new(m.cpu.clone()))?;
        m.registry.register(Box::new(m.rss.clone()))?;
        // Present from the start, at 0, for both protocols.
        for proto in ["tcp", "udp"] {
            m.listeners.with_label_values(&[proto]).set(0);
            for exposure in ["loopback", "filtered", "reachable", "unknown"] {
                m.exposed.with_label_values(&[proto, exposure]).set(0);
            }
        }
        Ok(m)
    }

    /// Counts what the monitor reported.
    pub fn observe(&self, ev: &MonitorEvent) {
        match ev {
            MonitorEvent::Port(p) => {
                let proto = p.listener.proto.as_str();
                self.events
                    .with_label_values(&[p.change.as_str(), proto])
                    .inc();
                let open = self.listeners.with_label_values(&[proto]);
                let exposed = p
                    .listener
                    .exposure
                    .as_ref()
                    .map(|e| self.exposed.with_label_values(&[proto, e.name()]));
                match p.change {
                    Change::Opened => {
                        open.inc();
                        exposed.inspect(|g| g.inc());
                    }
                    Change::Closed => {
                        open.dec();
                        exposed.inspect(|g| g.dec());
                    }
                }
            }
            MonitorEvent::ExposureChanged(c) => {
                let proto = c.listener.proto.as_str();
                self.exposure_changes.inc();
                self.exposed
                    .with_label_values(&[proto, c.before.name()])
                    .dec();
                if let Some(now) = &c.listener.exposure {
                    self.exposed.with_label_values(&[proto, now.name()]).inc();
                }
            }
            MonitorEvent::Ready(_) => self.ready.store(true, Ordering::Relaxed),
            MonitorEvent::Resync(s) => {
                let reason = s.reason.as_str();
                self.resyncs.with_label_values(&[reason]).inc();
                for (change, n) in [("opened", s.opened), ("closed", s.closed)] {
                    self.corrections
                        .with_label_values(&[reason, change])
                        .inc_by(n as u64);
                }
            }
            MonitorEvent::Alert(a) => {
                let rule = portwatch::safe_text::safe_str(&a.rule_id);
                self.alerts
                    .with_label_values(&[rule.as_str(), a.severity.as_str()])
                    .inc();
            }
            MonitorEvent::Notice(n) => {
                let result = match n.kind {
                    NoticeKind::RulesReloaded => "ok",
                    NoticeKind::RulesError => "failed",
                    _ => return,
                };
                self.reloads.with_label_values(&[result]).inc();
            }
            MonitorEvent::Drift(d) => {
                self.drifts.with_label_values(&[d.kind.as_str()]).inc();
            }
            MonitorEvent::UdpSummary(u) => {
                self.udp_binds
                    .with_label_values(&[u.class.as_str()])
                    .inc_by(u.binds);
            }
            // What a newer library adds has no metric yet.
            _ => {}
        }
    }

    /// Drifting now: (unexpected listeners, missing entries).
    pub fn drifting(&self, (unexpected, missing): (usize, usize)) {
        self.drifting
            .with_label_values(&["unexpected"])
            .set(unexpected as i64);
        self.drifting
            .with_label_values(&["missing"])
            .set(missing as i64);
    }

    /// The journal's counters (read about once a second).
    pub fn journal(&self, s: portwatch::journal::JournalStats) {
        // Counters grow to the journal's own totals.
        self.journal_written
            .inc_by(s.written.saturating_sub(self.journal_written.get()));
        self.journal_lost
            .inc_by(s.lost.saturating_sub(self.journal_lost.get()));
        self.journal_failed.set(i64::from(s.failed));
    }

    /// The OTLP exporter's counters (read about once a second).
    pub fn otlp(&self, s: crate::otlp::OtlpStats) {
        self.otlp_sent
            .inc_by(s.sent.saturating_sub(self.otlp_sent.get()));
        self.otlp_lost
            .inc_by(s.lost.saturating_sub(self.otlp_lost.get()));
        self.otlp_queued
            .set(i64::try_from(s.queued).unwrap_or(i64::MAX));
    }

    /// The engine's counters (read about once a second).
    pub fn stats(&self, stats: &Stats) {
        // The event loop is alive: /healthz says so from the last time.
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.loop_seen_ms.store(now.max(1), Ordering::Relaxed);
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        self.drops.inc_by(stats.drops.saturating_sub(last.drops));
        self.owners_full
            .inc_by(stats.owners_full.saturating_sub(last.owners_full));
        last.drops = last.drops.max(stats.drops);
        last.owners_full = last.owners_full.max(stats.owners_full);
        self.binds_full
            .inc_by(stats.binds_full.saturating_sub(last.binds_full));
        last.binds_full = last.binds_full.max(stats.binds_full);
    }

    pub fn set_clients(&self, n: usize) {
        self.clients.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// What is read when scraped: this process's own usage and programs.
    fn refresh(&self) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if let Some((cpu, rss)) = host::own_usage() {
            self.cpu.inc_by((cpu - last.cpu_seconds).max(0.0));
            last.cpu_seconds = last.cpu_seconds.max(cpu);
            self.rss.set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        for p in host::own_program_stats() {
            let seen = last.programs.iter_mut().find(|(n, _, _)| *n == p.name);
            let (time0, runs0) = seen.as_ref().map_or((0, 0), |(_, t, r)| (*t, *r));
            self.program_time
                .with_label_values(&[p.name.as_str()])
                .inc_by(p.run_time_ns.saturating_sub(time0) as f64 / 1e9);
            self.program_runs
                .with_label_values(&[p.name.as_str()])
                .inc_by(p.run_count.saturating_sub(runs0));
            match seen {
                Some(s) => *s = (p.name, p.run_time_ns.max(time0), p.run_count.max(runs0)),
                None => last.programs.push((p.name, p.run_time_ns, p.run_count)),
            }
        }
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    m.refresh();
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&m.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                encoder.format_type().to_string(),
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(axum::http::header::CONTENT_TYPE, "text/plain".to_string())],
            format!("cannot encode the metrics: {e}\n").into_bytes(),
        ),
    }
}

/// How long the event loop may go without reading the counters (it does
/// once a second) before /healthz says it is stuck.
const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Seconds the event loop has not been seen, when that is longer than
/// [`STALL`]; None while it is alive, or before it first ran.
fn stalled(now_ms: u64, seen_ms: u64) -> Option<u64> {
    let silent = now_ms.saturating_sub(seen_ms);
    (seen_ms > 0 && u128::from(silent) > STALL.as_millis()).then_some(silent / 1000)
}

/// Served by the metrics' own thread: it answers for the event loop by
/// when that last read the counters, so a stuck loop fails liveness
/// probes (Kubernetes' livenessProbe restarts the pod).
async fn healthz(State(m): State<Arc<Metrics>>) -> (StatusCode, String) {
    let now = u64::try_from(m.born.elapsed().as_millis()).unwrap_or(u64::MAX);
    match stalled(now, m.loop_seen_ms.load(Ordering::Relaxed)) {
        Some(s) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the event loop has not run for {s} s\n"),
        ),
        None => (StatusCode::OK, "ok\n".to_string()),
    }
}

async fn readyz(State(m): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "attaching the programs and taking the baseline\n",
        )
    }
}

/// With `--metrics ADDR`: the metrics, served from now on. Called before
/// the programs load, so that a taken address fails at once.
pub async fn start(addr: Option<SocketAddr>) -> anyhow::Result<Option<Arc<Metrics>>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let m = Arc::new(Metrics::new()?);
    serve(addr, m.clone())?;
    Ok(Some(m))
}

/// Binds `addr` and serves from a thread of its own: however many
/// scrapers (or local users) ask, the event loop's thread is not theirs.
pub fn serve(addr: SocketAddr, m: Arc<Metrics>) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the metrics server's event loop")?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(m);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => connections::Bounded::new(l),
                    Err(e) => {
                        tracing::warn!("the metrics server cannot start: {e}");
                        return;
                    }
                };
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::warn!("the metrics server stopped: {e}");
                }
            });
        })
        .context("cannot start the metrics server's thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use portwatch::{Listener, PortEvent, Proto, Source};

    use super::*;

    #[test]
    fn healthz_fails_once_the_event_loop_was_not_seen_for_the_stall() {
        // Before the loop first ran (start-up): alive.
        assert_eq!(stalled(120_000, 0), None);
        assert_eq!(stalled(31_000, 1_000), None);
        assert_eq!(stalled(31_001, 1_000), Some(30));
        assert_eq!(stalled(100_000, 5_000), Some(95));
    }

    fn open(port: u16, pid: u32) -> MonitorEvent {
        MonitorEvent::Port(PortEvent {
            change: Change::Opened,
            listener: Listener {
                pid,
                comm: format!("proc{pid}"),
                uid: pid,
                netns: u64::from(pid),
                cgroup: format!("/c{pid}"),
                ..Listener::new(Proto::Tcp, "10.0.0.1".parse().unwrap(), port)
            },
            ts: Utc::now(),
            source: Source::Ebpf,
        })
    }

    /// 10,000 listeners of 10,000 processes make no more series than one.
    #[test]
    fn series_stay_bounded_whatever_the_listeners() {
        let m = Metrics::new().unwrap();
        let series = |m: &Metrics| -> usize {
            m.registry
                .gather()
                .iter()
                .map(|f| f.get_metric().len())
                .sum()
        };
        m.observe(&open(1, 1));
        let one = series(&m);
        for i in 0..10_000u32 {
            m.observe(&open(u16::try_from(i % 60_000).unwrap(), i));
        }
        assert_eq!(series(&m), one);
        let text = {
            let mut body = Vec::new();
            TextEncoder::new()
                .encode(&m.registry.gather(), &mut body)
                .unwrap();
            String::from_utf8(body).unwrap()
        };
        assert!(
            text.contains("portwatch_listeners{proto=\"tcp\"} 10001"),
            "{text}"
        );
        assert!(text.contains("portwatch_events_total{event=\"opened\",proto=\"tcp\"} 10001"));
    }
}
