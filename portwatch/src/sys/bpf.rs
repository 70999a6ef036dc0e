//! Loads and attaches the kernel programs and reads their ring buffer.

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use portwatch_common::{DROPS_MAP, EVENTS_MAP, OFFSETS_GLOBAL, SET_STATE_PROG};
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    error::{Error, Result},
    event::KernelEvent,
    sys::tracefs,
};

/// The eBPF object built from `portwatch-ebpf`, embedded at compile time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/portwatch"));

/// Default ring buffer size: room for about 3,000 events between two reads.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 256 * 1024;

/// Checks a ring buffer size: the kernel wants a power of two multiple of
/// the page size.
pub fn validate_ring_buffer_size(bytes: u64) -> Result<u32> {
    match u32::try_from(bytes) {
        Ok(b) if b >= 4096 && b.is_power_of_two() => Ok(b),
        _ => Err(Error::RingBufferSize(bytes)),
    }
}

/// The attached kernel programs. Dropping it detaches every program and
/// link; a killed process loses them with its file descriptors.
pub struct KernelProbe {
    events: AsyncFd<RingBuf<MapData>>,
    drops: PerCpuArray<MapData, u64>,
    malformed: u64,
    // Owns the programs and their links: keep it last so it drops last.
    _ebpf: Ebpf,
}

impl KernelProbe {
    /// Mounts tracefs if needed, loads the programs and attaches them.
    /// Needs a tokio runtime with I/O enabled.
    pub fn attach(ring_buffer_bytes: u32) -> Result<Self> {
        raise_memlock_limit();
        let tracefs = tracefs::ensure_mounted().map_err(Error::or_not_permitted)?;
        let offsets = tracefs::set_state_offsets(&tracefs)?;
        // aya-log costs a ring buffer write per log call, so kernel logging
        // stays off unless RUST_LOG asks for debug output.
        let log_level: u8 = if tracing::enabled!(tracing::Level::DEBUG) {
            0xff
        } else {
            0
        };

        let mut ebpf = EbpfLoader::new()
            .override_global(OFFSETS_GLOBAL, &offsets, true)
            .override_global(aya_log::LEVEL, &log_level, false)
            .map_max_entries(EVENTS_MAP, ring_buffer_bytes)
            .load(OBJECT)
            .map_err(|e| Error::Load(Box::new(e)).or_not_permitted())?;
        if log_level != 0 {
            start_kernel_log(&mut ebpf);
        }

        let program: &mut TracePoint = ebpf
            .program_mut(SET_STATE_PROG)
            .ok_or(Error::MissingObject("the inet_sock_set_state program"))?
            .try_into()
            .map_err(|e| program_err("use the inet_sock_set_state program", e))?;
        program
            .load()
            .map_err(|e| program_err("load the inet_sock_set_state program", e))?;
        program
            .attach("sock", "inet_sock_set_state")
            .map_err(|e| program_err("attach to sock:inet_sock_set_state", e))?;

        let map_err = |name| {
            move |e| Error::Map {
                name,
                source: Box::new(e),
            }
        };
        let events = ebpf
            .take_map(EVENTS_MAP)
            .ok_or(Error::MissingObject("the EVENTS ring buffer"))?;
        let events = RingBuf::try_from(events).map_err(map_err(EVENTS_MAP))?;
        // SAFETY: the ring buffer owns its map fd and keeps it open, always
        // the same fd, until the AsyncFd that owns the ring buffer drops.
        let events = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|e| Error::Io {
                what: "cannot register the ring buffer with the event loop",
                source: e.into(),
            })?;
        let drops = ebpf
            .take_map(DROPS_MAP)
            .ok_or(Error::MissingObject("the DROPS counter"))?;
        let drops = PerCpuArray::try_from(drops).map_err(map_err(DROPS_MAP))?;
        Ok(Self {
            events,
            drops,
            malformed: 0,
            _ebpf: ebpf,
        })
    }

    /// Waits until the ring buffer has events, then appends all of them.
    pub async fn read(&mut self, out: &mut Vec<KernelEvent>) -> Result<()> {
        let mut guard = self
            .events
            .readable_mut()
            .await
            .map_err(|source| Error::Io {
                what: "waiting for the ring buffer failed",
                source,
            })?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match KernelEvent::decode(&item) {
                Some(ev) => out.push(ev),
                None => self.malformed += 1,
            }
        }
        guard.clear_ready();
        Ok(())
    }

    /// Appends whatever the ring buffer holds now, without waiting.
    pub fn read_now(&mut self, out: &mut Vec<KernelEvent>) {
        let ring = self.events.get_mut();
        while let Some(item) = ring.next() {
            match KernelEvent::decode(&item) {
                Some(ev) => out.push(ev),
                None => self.malformed += 1,
            }
        }
    }

    /// Events the kernel could not queue because the ring buffer was full.
    pub fn drops(&self) -> Result<u64> {
        let values = self.drops.get(&0, 0).map_err(|e| Error::Map {
            name: DROPS_MAP,
            source: Box::new(e),
        })?;
        Ok(values.iter().sum())
    }

    /// Records that did not decode (only a mismatched object produces them).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

fn program_err(action: &'static str, e: aya::programs::ProgramError) -> Error {
    Error::Program {
        action,
        source: Box::new(e),
    }
    .or_not_permitted()
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lifting it is
/// harmless on newer ones. A failure surfaces later as a load error.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct, read by the call only.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

/// Forwards the kernel programs' aya-log records to `tracing`. The logger
/// owns the log map, so it lives in the task for as long as the runtime.
fn start_kernel_log(ebpf: &mut Ebpf) {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(e) => {
            tracing::warn!("kernel program logging unavailable: {e}");
            return;
        }
    };
    // SAFETY: the logger owns its ring buffer's fd for its whole life.
    let Ok(mut logger) = (unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) })
    else {
        return;
    };
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
