//! Where an event's userspace microseconds go, for the benchmark only
//! (`PORTWATCH_BENCH_STAGES=1`, which `cargo xtask bench` sets in its
//! latency runs): the ring's reader marks when it last drained the ring,
//! and `watch` prints, for each open it writes, one stderr line
//! `bench-stages A B C` of nanoseconds: the kernel's event to the drain
//! (the reader's wake-up and the read), the drain to the event handed out
//! by the monitor (decode, table, owner and exposure), and that to the
//! line written and flushed (JSON and the write). Off, each mark is one
//! load of a flag.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

static ON: OnceLock<bool> = OnceLock::new();
static DRAINED_NS: AtomicU64 = AtomicU64::new(0);

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

/// The reader drained the ring now.
pub(crate) fn mark_drained() {
    if enabled() {
        DRAINED_NS.store(now_ns(), Ordering::Relaxed);
    }
}

/// When the reader last drained the ring (wall-clock ns).
pub fn drained_ns() -> u64 {
    DRAINED_NS.load(Ordering::Relaxed)
}
