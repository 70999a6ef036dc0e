//! `--otlp URL`: every event and alert as an OpenTelemetry log record,
//! POSTed to a collector over OTLP/HTTP (protobuf, gzip).
//!
//! The event loop only clones an event into a bounded queue; a thread of
//! its own (with a runtime of its own, so that a storm that keeps the
//! event loop busy does not starve it) batches (up to [`MAX_BATCH`]
//! records, or what came in [`LINGER`]), encodes, and retries with backoff
//! while the collector is down or busy (429, 502, 503, 504, no answer).
//! While it retries, records wait in the queue; when the queue is full,
//! new ones are dropped. Every record is counted as sent or lost
//! ([`OtlpStats`], the metrics) and every loss is said (`delivery_error`).
//!
//! The messages come from `opentelemetry-proto` (generated from the
//! OpenTelemetry protos); the batching is ours rather than the SDK's
//! exporter because the record time is the kernel's, the queue's losses
//! must be counted and reported, and the SDK's processor would bring a
//! runtime and a logs bridge of its own for what is one POST per batch.

mod record;

use std::{
    io::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use portwatch::{MonitorEvent, ResyncReason, safe_text::safe_str, wire::Line};
use prost::Message as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{mpsc, watch};

/// Records per request at most.
pub const MAX_BATCH: usize = 512;
/// How long a batch waits for more records after its first.
pub const LINGER: Duration = Duration::from_millis(200);
/// The first retry's wait; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest `Retry-After` heeded.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// At stop: how long what is queued may take to go out.
const GRACE: Duration = Duration::from_secs(3);
/// What the queue may hold at most, by the events' own size: a count
/// alone would let users whose events are large (a long cgroup path)
/// make a slow collector cost the daemon hundreds of MB.
const MAX_BYTES: u64 = 64 << 20;
/// The OpenTelemetry semantic conventions the attributes follow.
const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.38.0";

/// `--otlp` and its settings, checked.
#[derive(Clone)]
pub struct OtlpConfig {
    pub url: String,
    /// Sent with every request; never printed.
    pub headers: HeaderMap,
    pub timeout: Duration,
    /// Records queued before new ones are dropped.
    pub queue: usize,
}

impl OtlpConfig {
    /// Checks the URL and `NAME=VALUE` headers; an error quotes neither a
    /// header's value nor the URL's secrets.
    pub fn new(
        url: &str,
        headers: &[String],
        timeout: Duration,
        queue: usize,
    ) -> anyhow::Result<Self> {
        crate::deliver::webhook::check_url("otlp", url)?;
        if timeout.is_zero() {
            bail!("--otlp-timeout must be longer than 0");
        }
        if queue == 0 {
            bail!("--otlp-queue must be at least 1");
        }
        let mut map = HeaderMap::new();
        for (i, h) in headers.iter().enumerate() {
            let n = i + 1;
            let Some((name, value)) = h.split_once('=') else {
                bail!("--otlp-header #{n} is no NAME=VALUE");
            };
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                anyhow::anyhow!("--otlp-header #{n}: its name is no valid header name")
            })?;
            let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
                anyhow::anyhow!("--otlp-header #{n} ({name}): its value is no valid header value")
            })?;
            value.set_sensitive(true);
            map.append(name, value);
        }
        Ok(Self {
            url: url.to_string(),
            headers: map,
            timeout,
            queue,
        })
    }
}

/// Records sent and lost since the start, and queued now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtlpStats {
    pub sent: u64,
    pub lost: u64,
    pub queued: u64,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    lost: AtomicU64,
    /// Taken into the queue and not yet sent or lost.
    pending: AtomicU64,
    /// The queue's events' size ([`weight`]).
    bytes: AtomicU64,
    /// Held while the exporter's thread settles a batch, and while the
    /// stop gives up on it: a record is counted sent or lost, once.
    ledger: std::sync::Mutex<bool>,
}

impl Counts {
    /// `sent` and `lost` records are done with; nothing once the stop gave
    /// up on the thread (it counted them lost then).
    fn settle(&self, sent: u64, lost: u64) {
        self.settle_with(sent, lost, 0);
    }

    /// [`Self::settle`], and `other` events that made no record.
    fn settle_with(&self, sent: u64, lost: u64, other: u64) {
        let Ok(abandoned) = self.ledger.lock() else {
            return;
        };
        if *abandoned {
            return;
        }
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.lost.fetch_add(lost, Ordering::Relaxed);
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(sent + lost + other))
            });
    }

    /// At stop: what is still pending is lost; the thread counts nothing
    /// more. Returns how many.
    fn abandon(&self) -> u64 {
        let Ok(mut abandoned) = self.ledger.lock() else {
            return 0;
        };
        *abandoned = true;
        let left = self.pending.swap(0, Ordering::Relaxed);
        self.lost.fetch_add(left, Ordering::Relaxed);
        left
    }
}

/// An event's size in the queue, about: its own, and the text and lists
/// it holds. Not its owner's context: one per process, shared by its
/// events and the monitor's table, and capped in size.
fn weight(ev: &MonitorEvent) -> u64 {
    fn listener(l: &portwatch::event::Listener) -> usize {
        let exposure = match &l.exposure {
            Some(portwatch::event::Exposure::Reachable { reachable_via }) => {
                reachable_via.iter().map(|v| v.len() + 24).sum()
            }
            Some(portwatch::event::Exposure::Unknown { why }) => why.len(),
            _ => 0,
        };
        l.cgroup.len()
            + l.comm.len()
            + l.container
                .as_ref()
                .map_or(0, |c| c.id.len() + c.name.as_ref().map_or(0, String::len))
            + exposure
            + l.published_as.len() * 96
    }
    let own = std::mem::size_of::<MonitorEvent>();
    let held = match ev {
        MonitorEvent::Port(p) => listener(&p.listener),
        MonitorEvent::ExposureChanged(c) => {
            listener(&c.listener) + c.before_published.len() * 96 + 64
        }
        MonitorEvent::Drift(d) => {
            d.listener.as_ref().map_or(0, listener)
                + d.tags.iter().map(String::len).sum::<usize>()
                + 512
        }
        MonitorEvent::Alert(a) => {
            a.rule_id.len() + a.rule_name.len() + a.message.len() + a.comm.len() + 64
        }
        _ => 256,
    };
    (own + held) as u64
}

/// The exporter: its queue, its thread, and what it has to say.
pub struct Otlp {
    name: String,
    queue: usize,
    tx: Option<mpsc::Sender<MonitorEvent>>,
    counts: Arc<Counts>,
    /// Dropped because the queue was full, not yet said.
    dropped: u64,
    dropped_since: Option<chrono::DateTime<chrono::Utc>>,
    failures: mpsc::Receiver<String>,
    closing: watch::Sender<bool>,
    /// Fires when the exporter's thread is done.
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Otlp {
    /// Starts the exporter's thread.
    pub fn start(config: OtlpConfig) -> anyhow::Result<Self> {
        let client = crate::deliver::webhook::client(config.timeout)?;
        let name = format!("otlp {}", crate::deliver::webhook::shown(&config.url));
        let (tx, rx) = mpsc::channel(config.queue);
        let (failures_tx, failures) = mpsc::channel(64);
        let (closing, closing_rx) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let worker = Worker {
            client,
            config: config.clone(),
            name: name.clone(),
            resource: resource(),
            counts: counts.clone(),
            failures: failures_tx,
            unshown: 0,
            closing: closing_rx,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the OTLP exporter's runtime")?;
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("otlp".into())
            .spawn(move || {
                runtime.block_on(worker.run(rx));
                let _ = done_tx.send(());
            })
            .context("cannot start the OTLP exporter's thread")?;
        Ok(Self {
            name,
            queue: config.queue,
            tx: Some(tx),
            counts,
            dropped: 0,
            dropped_since: None,
            failures,
            closing,
            done: Some(done),
        })
    }

    /// Queues what `ev` exports, without waiting: a full queue drops it,
    /// counted. Only a clone on the event loop; the rest is the exporter thread's.
    ///
    /// What any user can cause (ports, drifts, exposure changes) may fill
    /// three quarters of the queue: the last quarter is kept for alerts
    /// and losses, so that a user who opens ports by the thousand while
    /// the collector is slow cannot crowd an alert out.
    pub fn send(&mut self, ev: &MonitorEvent) {
        let (reserved, max_bytes) = match ev {
            MonitorEvent::Port(_)
            | MonitorEvent::Drift(_)
            | MonitorEvent::ExposureChanged(_)
            | MonitorEvent::UdpSummary(_) => (self.queue / 4, MAX_BYTES / 4 * 3),
            MonitorEvent::Alert(_) => (0, MAX_BYTES),
            MonitorEvent::Resync(s) if s.reason == ResyncReason::Drops => (0, MAX_BYTES),
            _ => return,
        };
        let Some(tx) = &self.tx else {
            return;
        };
        let w = weight(ev);
        let room = self.counts.bytes.load(Ordering::Relaxed) + w <= max_bytes;
        self.counts.pending.fetch_add(1, Ordering::Relaxed);
        self.counts.bytes.fetch_add(w, Ordering::Relaxed);
        if !room || tx.capacity() <= reserved || tx.try_send(ev.clone()).is_err() {
            self.counts.pending.fetch_sub(1, Ordering::Relaxed);
            self.counts.bytes.fetch_sub(w, Ordering::Relaxed);
            self.counts.lost.fetch_add(1, Ordering::Relaxed);
            self.dropped += 1;
            self.dropped_since.get_or_insert_with(chrono::Utc::now);
        }
    }

    pub fn stats(&self) -> OtlpStats {
        OtlpStats {
            sent: self.counts.sent.load(Ordering::Relaxed),
            lost: self.counts.lost.load(Ordering::Relaxed),
            queued: self.counts.pending.load(Ordering::Relaxed),
        }
    }

    /// The next thing to say: drops since the last time, then the exporter thread's
    /// reports. Cancel-safe.
    pub async fn next_failure(&mut self) -> Option<String> {
        if let Some(said) = self.take_dropped() {
            return Some(said);
        }
        self.failures.recv().await
    }

    fn take_dropped(&mut self) -> Option<String> {
        if self.dropped == 0 {
            return None;
        }
        let count = std::mem::take(&mut self.dropped);
        let since = self
            .dropped_since
            .take()
            .map_or_else(String::new, |t| portwatch::wire::format_ts(&t));
        Some(safe_str(&format!(
            "{count} {} not delivered to {} since {since} (its queue of {} records or {} MiB was full; ports and drifts may take three quarters of it, the rest is kept for alerts)",
            records(count),
            self.name,
            self.queue,
            MAX_BYTES >> 20
        )))
    }

    /// At stop: what is queued gets [`GRACE`] to go out (one try per
    /// batch); what does not is counted lost. Returns what is left to say.
    pub async fn finish(&mut self) -> Vec<String> {
        let mut out: Vec<String> = self.take_dropped().into_iter().collect();
        let lost_before = self.counts.lost.load(Ordering::Relaxed);
        self.tx = None;
        let _ = self.closing.send(true);
        if let Some(done) = self.done.take() {
            // Past the grace, the thread is left to end with the process;
            // what it still holds is counted lost now, and by it never.
            let _ = tokio::time::timeout(GRACE, done).await;
        }
        self.counts.abandon();
        while let Ok(said) = self.failures.try_recv() {
            out.push(said);
        }
        // One sentence for every record not delivered while stopping.
        let lost = self.counts.lost.load(Ordering::Relaxed) - lost_before;
        if lost > 0 {
            out.push(safe_str(&format!(
                "{lost} {} still queued for {} when portwatch stopped: not delivered",
                records(lost),
                self.name
            )));
        }
        out
    }
}

/// An exit on an error (the output gone, say) does not call
/// [`Otlp::finish`]: what is still queued is said lost here.
impl Drop for Otlp {
    fn drop(&mut self) {
        if self.done.is_none() {
            return;
        }
        let left = self.counts.abandon();
        if left > 0 {
            crate::log::warn(&safe_str(&format!(
                "{left} {} still queued for {} when portwatch stopped: not delivered",
                records(left),
                self.name
            )));
        }
    }
}

/// The next thing `otlp` has to say; never, without one.
pub async fn next_failure(otlp: &mut Option<Otlp>) -> Option<String> {
    match otlp {
        Some(o) => o.next_failure().await,
        None => std::future::pending().await,
    }
}

fn records(n: u64) -> &'static str {
    if n == 1 { "record" } else { "records" }
}

/// Who sends: `service.*` and `host.*`, read once.
fn resource() -> Resource {
    let kv = |key: &str, value: String| KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
        ..KeyValue::default()
    };
    let mut attributes = vec![
        kv("service.name", "portwatch".into()),
        kv("service.version", env!("CARGO_PKG_VERSION").into()),
        kv("os.type", "linux".into()),
        kv(
            "host.arch",
            match std::env::consts::ARCH {
                "x86_64" => "amd64".into(),
                "aarch64" => "arm64".into(),
                other => other.into(),
            },
        ),
    ];
    // The host as OCSF records name it too.
    let host = crate::sink::this_host();
    attributes.push(kv("host.name", host.hostname));
    if let Some(id) = host.uid {
        attributes.push(kv("host.id", id));
    }
    Resource {
        attributes,
        ..Resource::default()
    }
}

/// One request's body, gzipped, and the records in it.
fn encode(resource: Resource, events: Vec<MonitorEvent>) -> (Vec<u8>, u64) {
    let observed = SystemTime::now();
    let log_records: Vec<_> = events
        .iter()
        .filter_map(line_of)
        .filter_map(|line| record::record(&line, observed))
        .collect();
    let n = log_records.len() as u64;
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "portwatch".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                log_records,
                schema_url: SCHEMA_URL.into(),
            }],
            schema_url: SCHEMA_URL.into(),
        }],
    };
    let raw = request.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let body = gz
        .write_all(&raw)
        .and_then(|()| gz.finish())
        .unwrap_or_default();
    (body, n)
}

/// The line an exported event is written as.
fn line_of(ev: &MonitorEvent) -> Option<Line> {
    Some(match ev {
        MonitorEvent::Port(p) => Line::from(p),
        MonitorEvent::Alert(a) => Line::from(a),
        MonitorEvent::Drift(d) => Line::from(d),
        MonitorEvent::ExposureChanged(c) => Line::from(c),
        MonitorEvent::Resync(s) => Line::events_lost(s),
        MonitorEvent::UdpSummary(u) => Line::from(u),
        _ => return None,
    })
}

/// How a request went.
enum Outcome {
    /// Taken; some records may have been rejected (with the collector's
    /// message).
    Taken { rejected: u64, message: String },
    /// Worth asking again (after at least this long, when it said).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Asking again gets the same answer.
    Refused(String),
}

struct Worker {
    client: reqwest::Client,
    config: OtlpConfig,
    name: String,
    resource: Resource,
    counts: Arc<Counts>,
    failures: mpsc::Sender<String>,
    /// Reports that found the queue of them full.
    unshown: u64,
    closing: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<MonitorEvent>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let Some(first) = rx.recv().await else {
                break;
            };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => batch.push(ev),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                    // At stop, what came so far goes at once.
                    _ = self.closing.changed() => break,
                }
            }
            let taken = batch.len() as u64;
            let resource = self.resource.clone();
            let events = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
            let held: u64 = events.iter().map(weight).sum();
            // On this thread: the event loop's is another.
            let (body, n) = encode(resource, events);
            // The events themselves are gone; only their records wait.
            let _ = self
                .counts
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(held))
                });
            // Events that make no record (none today) are done with.
            self.counts.settle_with(0, 0, taken - n.min(taken));
            if n > 0 {
                self.deliver(body, n).await;
            }
        }
    }

    /// Sends one batch until it is taken or refused; at stop, once.
    async fn deliver(&mut self, body: Vec<u8>, n: u64) {
        let mut backoff = FIRST_BACKOFF;
        let mut failing_since: Option<std::time::Instant> = None;
        loop {
            let outcome = self.post(body.clone()).await;
            let done = |w: &Self, sent: u64, lost: u64| w.counts.settle(sent, lost);
            match outcome {
                Outcome::Taken { rejected, message } => {
                    let rejected = rejected.min(n);
                    done(self, n - rejected, rejected);
                    if let Some(since) = failing_since {
                        self.report(format!(
                            "{}: delivering again after {} s of failures",
                            self.name,
                            since.elapsed().as_secs()
                        ));
                    }
                    if rejected > 0 {
                        self.report(format!(
                            "{}: the collector rejected {rejected} of {n} {}: {message}",
                            self.name,
                            records(n)
                        ));
                    }
                    return;
                }
                Outcome::Refused(why) => {
                    done(self, 0, n);
                    self.report(format!(
                        "{}: {why}; {n} {} not delivered",
                        self.name,
                        records(n)
                    ));
                    return;
                }
                Outcome::Retry { why, after } => {
                    if *self.closing.borrow() {
                        // Said with the rest at stop ([`Otlp::finish`]).
                        done(self, 0, n);
                        return;
                    }
                    if failing_since.is_none() {
                        failing_since = Some(std::time::Instant::now());
                        self.report(format!(
                            "{}: {why}; retrying with backoff, records wait in its queue of {}",
                            self.name, self.config.queue
                        ));
                    }
                    // A collector's `Retry-After: 0` does not undo the
                    // backoff: it is a floor.
                    let wait = after.map_or(backoff, |a| a.min(MAX_RETRY_AFTER).max(backoff));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = self.closing.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn post(&self, body: Vec<u8>) -> Outcome {
        let sent = self
            .client
            .post(&self.config.url)
            .headers(self.config.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Outcome::Retry {
                    why: "no answer in time".into(),
                    after: None,
                };
            }
            Err(e) => {
                return Outcome::Retry {
                    // Its message would quote the URL, secret and all.
                    why: crate::deliver::webhook::error_chain(&e.without_url()),
                    after: None,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            // Its answer is small; a larger one is not read.
            let mut response = response;
            let mut bytes = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                if bytes.len() + chunk.len() > 64 << 10 {
                    bytes.clear();
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            let partial = ExportLogsServiceResponse::decode(bytes.as_slice())
                .ok()
                .and_then(|r| r.partial_success);
            return match partial {
                Some(p) if p.rejected_log_records > 0 => Outcome::Taken {
                    rejected: u64::try_from(p.rejected_log_records).unwrap_or(0),
                    // Made safe with the report that quotes it.
                    message: p.error_message.chars().take(200).collect(),
                },
                _ => Outcome::Taken {
                    rejected: 0,
                    message: String::new(),
                },
            };
        }
        // The codes OTLP/HTTP says to retry.
        if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Outcome::Retry {
                why: format!("the collector answered {status}"),
                after,
            };
        }
        if status.is_redirection() {
            return Outcome::Refused(format!(
                "the collector answered {status} (redirects are not followed: give the final URL)"
            ));
        }
        Outcome::Refused(format!("the collector answered {status}"))
    }

    /// Queues a report without waiting; one that finds the queue full is
    /// counted and the count said with the next.
    fn report(&mut self, message: String) {
        let mut message = safe_str(&message);
        if self.unshown > 0 {
            message.push_str(&format!(
                " ({} earlier {} not shown)",
                self.unshown,
                if self.unshown == 1 {
                    "report"
                } else {
                    "reports"
                }
            ));
        }
        match self.failures.try_send(message) {
            Ok(()) => self.unshown = 0,
            Err(_) => self.unshown += 1,
        }
    }
}

#[cfg(test)]
mod tests;
