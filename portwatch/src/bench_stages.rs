//! Where an event's userspace microseconds go, for the benchmark only
//! (`PORTWATCH_BENCH_STAGES=1`, which `cargo xtask bench` sets in its
//! latency runs): the engine marks when it has drained the ring,
//! and `watch` keeps, for each open it writes, four spans in
//! nanoseconds: the kernel's event to the drain (the reader's wake-up and
//! the read), the drain to the event handed out by the monitor (decode,
//! table, owner and exposure), that to the line encoded into the output
//! buffer (JSON), and that to the write returned (the syscall, and the
//! line's reader when it preempts the writer). They are printed on stderr
//! at exit, one `bench-stages A B C D` line each: a line per event would
//! wake the harness's stderr reader while it times the next one. Off,
//! each mark is one load of a flag.

use std::{
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

static ON: OnceLock<bool> = OnceLock::new();
static DRAINED_NS: AtomicU64 = AtomicU64::new(0);
static SPANS: Mutex<Vec<[u64; 4]>> = Mutex::new(Vec::new());

/// Spans kept: a benchmark's latency run has a few thousand opens.
const SPANS_KEPT: usize = 100_000;

/// Whether the benchmark asked for the stages.
pub fn enabled() -> bool {
    *ON.get_or_init(|| std::env::var_os("PORTWATCH_BENCH_STAGES").is_some())
}

/// Wall-clock nanoseconds now, the clock event times are given in.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The engine drained the ring now.
pub(crate) fn mark_drained() {
    if enabled() {
        DRAINED_NS.store(now_ns(), Ordering::Relaxed);
    }
}

/// When the engine last drained the ring (wall-clock ns).
pub fn drained_ns() -> u64 {
    DRAINED_NS.load(Ordering::Relaxed)
}

/// Keeps one open's spans from its times: the kernel's, the drain, handed
/// out, encoded, written.
pub fn record(times: [u64; 5]) {
    if let Ok(mut spans) = SPANS.lock()
        && spans.len() < SPANS_KEPT
    {
        spans.push(std::array::from_fn(|i| {
            times[i + 1].saturating_sub(times[i])
        }));
    }
}

/// Prints the spans kept on stderr, for the benchmark to read.
pub fn print() {
    if !enabled() {
        return;
    }
    if let Ok(spans) = SPANS.lock() {
        let mut out = String::with_capacity(spans.len() * 40);
        for [a, b, c, d] in spans.iter() {
            out.push_str(&format!("bench-stages {a} {b} {c} {d}\n"));
        }
        eprint!("{out}");
    }
}
