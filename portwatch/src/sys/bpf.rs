//! Loads and attaches the kernel programs and reads their ring buffer.

use std::{
    collections::HashMap,
    fs,
    pin::Pin,
    task::{Context, Poll},
};

use aya::{
    Btf, Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSock, TracePoint, links::FdLink},
};
use portwatch_common::{
    CONN_PROG, COUNTER_BINDS_FULL, COUNTER_OWNERS_FULL, COUNTER_RING_FULL, COUNTERS_MAP,
    EVENTS_MAP, EXIT_PROG, FILTER_TREE_GLOBAL, FORK_PROG, LISTEN_CONFIRM_MAP, LISTEN_EXIT_PROG,
    LISTEN_SYSCALL_GLOBAL, ListenSyscall, OFFSETS_GLOBAL, OWNERS_MAP, Owner,
    RELEASE_CGROUPS_CAPACITY, RELEASE_CGROUPS_MAP, RELEASE_EVERYWHERE_MAP, SET_STATE_BTF_PROG,
    SET_STATE_PROG, SOCK_OFFSETS_GLOBAL, SetStateOffsets, SockEvent, SockOffsets,
    TREE_OFFSETS_GLOBAL, TreeOffsets, UDP_AGGREGATE_GLOBAL, UDP_BIND4_PROG, UDP_BIND6_PROG,
    UDP_BINDS_MAP, UDP_RELEASE_PROG, UDP_STAGE_FULL, UDP_STAGE_GLOBAL, UDP_STAGE_OWNER,
    UDP_STAGE_RETURN, UdpAggregate, UdpBindKey, UdpBindTally, WAKE_BYTES_GLOBAL, WATCHED_MAP,
};
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    EventSource, btf, cgroup, lean_loader,
    release_cover::{self, Cover, ReleaseCover},
    ring_recheck::{NextLook, Rechecks},
    tracefs,
};
use crate::{
    error::{Error, Result},
    event::{KernelEvent, Proto},
    report::{BindCount, BindKey, PortClass},
};

/// The eBPF object built from `portwatch-ebpf`, embedded at compile time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/portwatch"));

/// Default ring buffer size: room for about 12,000 events between two reads.
pub(crate) const DEFAULT_RING_BUFFER_BYTES: u32 = 1024 * 1024;

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Checks a ring buffer size: the kernel wants a power of two multiple of
/// the page size.
pub(crate) fn validate_ring_buffer_size(bytes: u64) -> Result<u32> {
    match u32::try_from(bytes) {
        Ok(b) if b >= 4096 && b.is_power_of_two() => Ok(b),
        _ => Err(Error::RingBufferSize(bytes)),
    }
}

/// Which tracepoint flavour carries the state-change program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum Hook {
    /// The BTF tracepoint when the kernel has BTF, else the classic one.
    #[default]
    Auto,
    /// `tracepoint/sock/inet_sock_set_state`: needs tracefs.
    Tracepoint,
    /// `tp_btf/inet_sock_set_state`: needs kernel BTF.
    TpBtf,
}

/// What to load and attach.
#[derive(Clone, Debug)]
pub(crate) struct ProbeConfig {
    pub ring_buffer_bytes: u32,
    pub hook: Hook,
    /// Attach the listen confirmation when possible.
    pub listen_callback: bool,
    /// Report only processes in the watched set, kept up to date across
    /// forks and exits by the kernel.
    pub filter_tree: bool,
    /// Attach the connection-event program from the start.
    pub connections: bool,
    /// Watch TCP listeners, UDP bound ports.
    pub tcp: bool,
    pub udp: bool,
    /// Count UDP binds per process and port class instead of sending
    /// each (`--udp-aggregate`).
    pub udp_aggregate: bool,
}

/// Counters kept by the kernel programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KernelCounters {
    /// Events lost because the ring buffer was full.
    pub ring_full: u64,
    /// Listeners whose owner could not be remembered (owner map full).
    pub owners_full: u64,
    /// UDP binds the aggregate mode's tally had no room for.
    pub binds_full: u64,
}

/// The attached kernel programs. Dropping it detaches every program and
/// link; a killed process loses them with its file descriptors.
pub(crate) struct KernelProbe {
    events: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    watched: Option<BpfHashMap<MapData, u32, u32>>,
    malformed: u64,
    /// Owners a scan found that the full owner map had no room for: their
    /// release is not reported (a resync finds it), as for the kernel's
    /// own `COUNTER_OWNERS_FULL`.
    seeds_full: u64,
    /// Every record is read and dropped unread (a benchmark's stage).
    discard: bool,
    /// When to look at the ring again without a wake-up, while UDP is
    /// watched (its records wake the reader only now and then): see
    /// `ring_recheck`, which decides. Only the time is kept at a read:
    /// the timer is set once the reader would otherwise wait, after the
    /// read's events are handed out, and kept while the looks go on.
    recheck_at: Option<tokio::time::Instant>,
    recheck: Option<Pin<Box<tokio::time::Sleep>>>,
    rechecks: Rechecks,
    /// Ring buffer size, and bytes read from it since the loss counters
    /// were last read: see [`EventSource::loss_possible`].
    ring_bytes: u64,
    drained: u64,
    /// Records the full ring dropped, as last read.
    ring_full_seen: u64,
    netns_known: bool,
    hook: Hook,
    config: ProbeConfig,
    /// Why the listen confirmation is not attached, if it was wanted and is
    /// not: opens then come from the state change alone.
    listen_confirm_missing: Option<String>,
    /// Why UDP is not watched, if it was wanted and is not.
    udp_missing: Option<String>,
    /// Socket cookie -> owner, shared with the programs: userspace seeds it
    /// with the baseline's UDP sockets so that their release is reported.
    owners: BpfHashMap<MapData, u64, Owner>,
    /// The aggregate mode's tally of UDP binds, when on.
    udp_binds: Option<PerCpuHashMap<MapData, UdpBindKey, UdpBindTally>>,
    /// Whether events carry socket cookies (the BTF tracepoint).
    cookies: bool,
    /// The connection program's link while attached.
    conn_link: Option<aya::programs::tp_btf::BtfTracePointLinkId>,
    conn_loaded: bool,
    /// What the listen confirmation reads needs the kernel's BTF.
    sock_offsets: SockOffsets,
    /// Where the UDP release program runs, and its links per cgroup.
    release_cover: ReleaseCover,
    /// Dropping one detaches it.
    release_links: HashMap<u64, ReleaseLink>,
    /// The cgroup2 mount, opened at the first attach to a cgroup.
    cgroup_mount: Option<fs::File>,
    /// The release program goes to the root at start: the benchmark's
    /// stages measure it there, and without the socket's cgroup (no BTF
    /// offsets) no bind could say where it is needed.
    release_at_root: bool,
    // Owns the programs and their links: keep it last so it drops last.
    _ebpf: Ebpf,
}

impl KernelProbe {
    /// Loads the programs and attaches the bookkeeping ones (the process
    /// tree's); [`EventSource::start`] attaches those that report
    /// listeners. Needs a tokio runtime with I/O. Each step is a function
    /// of its own below: what the kernel's BTF says, which hook, what
    /// tracefs says, loading, then taking the maps.
    pub(crate) fn attach(config: &ProbeConfig) -> Result<Self> {
        if config.udp && !config.tcp && cgroup::root_dir().is_none() {
            // UDP alone, and its programs have nowhere to go: eBPF would
            // watch nothing (with TCP too, UDP is left out with a warning).
            return Err(Error::UdpNeedsCgroup2);
        }
        raise_memlock_limit();
        let kernel_btf = read_kernel_btf();
        let (sock_offsets, regs_nr) = (kernel_btf.sock_offsets, kernel_btf.regs_nr);
        let hook = choose_hook(config.hook, &sock_offsets)?;
        let (set_state_offsets, tree_offsets) = tracefs_offsets(config, hook)?;
        let filter_tree = u32::from(config.filter_tree);
        let stage = BenchStage::from_env()?;
        let udp_stage = stage.kernel();
        let wake_bytes = u64::from(config.ring_buffer_bytes / 4);
        let ephemeral = super::procfs_scan::ephemeral_ports();
        let aggregate = UdpAggregate {
            on: u32::from(config.udp_aggregate),
            ephemeral_lo: *ephemeral.start(),
            ephemeral_hi: *ephemeral.end(),
        };
        let listen_syscall = if config.listen_callback && hook == Hook::TpBtf {
            super::kallsyms::listen_syscall(regs_nr)
        } else {
            ListenSyscall::default()
        };
        let mut ebpf = lean_loader::loader()
            .override_global(OFFSETS_GLOBAL, &set_state_offsets, true)
            .override_global(SOCK_OFFSETS_GLOBAL, &sock_offsets, true)
            .override_global(TREE_OFFSETS_GLOBAL, &tree_offsets, true)
            .override_global(FILTER_TREE_GLOBAL, &filter_tree, true)
            .override_global(UDP_STAGE_GLOBAL, &udp_stage, true)
            .override_global(WAKE_BYTES_GLOBAL, &wake_bytes, true)
            .override_global(UDP_AGGREGATE_GLOBAL, &aggregate, true)
            .override_global(LISTEN_SYSCALL_GLOBAL, &listen_syscall, true)
            .map_max_entries(EVENTS_MAP, config.ring_buffer_bytes)
            .load(OBJECT)
            .map_err(|e| Error::Load(Box::new(e)).or_not_permitted())?;
        let conn_loaded = load_programs(&mut ebpf, config, hook, &kernel_btf)?;
        let maps = Maps::take(&mut ebpf, config)?;
        Ok(Self {
            events: maps.events,
            counters: maps.counters,
            watched: maps.watched,
            malformed: 0,
            seeds_full: 0,
            discard: stage == BenchStage::Ring,
            recheck_at: None,
            recheck: None,
            rechecks: Rechecks::default(),
            ring_bytes: u64::from(config.ring_buffer_bytes),
            drained: 0,
            ring_full_seen: 0,
            netns_known: sock_offsets.valid != 0,
            hook,
            config: config.clone(),
            listen_confirm_missing: None,
            udp_missing: None,
            owners: maps.owners,
            udp_binds: maps.udp_binds,
            cookies: hook == Hook::TpBtf,
            conn_link: None,
            conn_loaded,
            sock_offsets,
            release_cover: ReleaseCover::default(),
            release_links: HashMap::new(),
            cgroup_mount: None,
            release_at_root: stage != BenchStage::Full || sock_offsets.sk_cgrp_data == 0,
            _ebpf: ebpf,
        })
    }
}

/// How much of the UDP path runs: all of it, unless the benchmark's
/// decomposition (`PORTWATCH_BENCH_UDP_STAGE`) measures it stage by stage.
/// Every stage but the full one reports nothing of UDP, and says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BenchStage {
    Full,
    /// The programs return at once.
    Return,
    /// They keep and forget owners, and send nothing.
    Owner,
    /// They send their records, which userspace reads and drops.
    Ring,
}

impl BenchStage {
    const ENV: &str = "PORTWATCH_BENCH_UDP_STAGE";

    fn from_env() -> Result<Self> {
        let Some(value) = std::env::var_os(Self::ENV) else {
            return Ok(Self::Full);
        };
        let stage = match value.to_str() {
            Some("return") => Self::Return,
            Some("owner") => Self::Owner,
            Some("ring") => Self::Ring,
            _ => return Err(Error::BenchUdpStage(value.to_string_lossy().into_owned())),
        };
        tracing::warn!(
            "{}={value:?}: a benchmark's stage, and no UDP port is reported",
            Self::ENV
        );
        Ok(stage)
    }

    /// The programs' `UDP_STAGE`.
    fn kernel(self) -> u32 {
        match self {
            Self::Full | Self::Ring => UDP_STAGE_FULL,
            Self::Return => UDP_STAGE_RETURN,
            Self::Owner => UDP_STAGE_OWNER,
        }
    }
}

/// The BTF tracepoint both BTF-typed programs attach to.
const BTF_TRACEPOINT: &str = "inet_sock_set_state";
/// Its typedef in the kernel's BTF, which aya looks up by this name when
/// it loads a program for it.
const BTF_TRACE_TYPEDEF: &str = "btf_trace_inet_sock_set_state";

/// What the programs need of the kernel's BTF.
struct KernelBtf {
    /// Where `struct sock` keeps what they read (unknown, namespaces
    /// reported as 0, without it, said once).
    sock_offsets: SockOffsets,
    /// Where `struct pt_regs` keeps the syscall number.
    regs_nr: Option<u32>,
    /// The id of the tracepoint's `btf_trace_*` typedef, which loading a
    /// BTF tracepoint program names.
    trace_typedef: Option<u32>,
}

fn read_kernel_btf() -> KernelBtf {
    let unknown = KernelBtf {
        sock_offsets: SockOffsets::UNKNOWN,
        regs_nr: None,
        trace_typedef: None,
    };
    // The raw BTF is a block of several MB: freed before the programs load.
    match fs::read(VMLINUX_BTF) {
        Ok(raw) => match btf::Btf::parse(&raw) {
            Ok(b) => KernelBtf {
                sock_offsets: sock_offsets(&b).unwrap_or_else(|| {
                    tracing::warn!("the kernel BTF lacks a struct sock or struct net field portwatch reads: network namespaces will be reported as 0");
                    SockOffsets::UNKNOWN
                }),
                regs_nr: b.member_offset("pt_regs", &["orig_ax"]),
                trace_typedef: b.typedef_id(BTF_TRACE_TYPEDEF),
            },
            Err(e) => {
                tracing::warn!(
                    "cannot parse the kernel BTF at {VMLINUX_BTF} ({e}): network namespaces will be reported as 0"
                );
                unknown
            }
        },
        Err(e) => {
            tracing::warn!(
                "no kernel BTF at {VMLINUX_BTF} ({e}): network namespaces will be reported as 0"
            );
            unknown
        }
    }
}

/// The state-change hook: the BTF one where the kernel has BTF.
fn choose_hook(asked: Hook, sock_offsets: &SockOffsets) -> Result<Hook> {
    Ok(match asked {
        Hook::Auto if sock_offsets.valid != 0 => Hook::TpBtf,
        Hook::Auto => Hook::Tracepoint,
        Hook::TpBtf if sock_offsets.valid == 0 => return Err(Error::NoBtf),
        other => other,
    })
}

/// The classic tracepoint's field offsets and the process tree's, read
/// from tracefs (mounted when missing) when the hook or the tree needs
/// them.
fn tracefs_offsets(config: &ProbeConfig, hook: Hook) -> Result<(SetStateOffsets, TreeOffsets)> {
    let needs_tracefs = hook == Hook::Tracepoint || config.filter_tree;
    let tracefs_dir = if needs_tracefs {
        Some(tracefs::ensure_mounted().map_err(Error::or_not_permitted)?)
    } else {
        None
    };
    let set_state_offsets = match (&tracefs_dir, hook) {
        (Some(dir), Hook::Tracepoint) => tracefs::set_state_offsets(dir)?,
        _ => SetStateOffsets::DEFAULT,
    };
    let tree_offsets = match &tracefs_dir {
        Some(dir) if config.filter_tree => tracefs::tree_offsets(dir)?,
        _ => TreeOffsets {
            fork_child_pid: 0,
            exit_group_dead: u32::MAX,
        },
    };
    Ok((set_state_offsets, tree_offsets))
}

/// Attaches the process tree's bookkeeping programs, and loads the
/// state-change program and (with BTF) the connection one, which `start`
/// and `set_connections` attach; whether the connection program loaded.
fn load_programs(
    ebpf: &mut Ebpf,
    config: &ProbeConfig,
    hook: Hook,
    kernel_btf: &KernelBtf,
) -> Result<bool> {
    // Bookkeeping programs first: by the time listen events flow, the
    // watched set can already follow forks.
    if config.filter_tree {
        attach_tracepoint(ebpf, FORK_PROG, "sched", "sched_process_fork")?;
        attach_tracepoint(ebpf, EXIT_PROG, "sched", "sched_process_exit")?;
    }
    // Both BTF-typed programs name one typedef of the kernel's BTF: a
    // stand-in holding it at its id spares aya's parse of the whole.
    let kernel_btf = match kernel_btf.trace_typedef {
        Some(id) if kernel_btf.sock_offsets.valid != 0 => {
            let blob = btf::typedef_stand_in(id, BTF_TRACE_TYPEDEF);
            Some(Btf::parse(&blob, aya::Endianness::Little).map_err(|e| {
                tracing::warn!("aya cannot parse the kernel BTF's stand-in: {e}");
                Error::NoBtf
            })?)
        }
        _ => None,
    };
    match hook {
        Hook::TpBtf => {
            let btf = kernel_btf.as_ref().ok_or(Error::NoBtf)?;
            btf_program(ebpf, SET_STATE_BTF_PROG)?
                .load(BTF_TRACEPOINT, btf)
                .map_err(|e| program_err("load the tp_btf program", e))?;
        }
        _ => tracepoint_program(ebpf, SET_STATE_PROG)?
            .load()
            .map_err(|e| program_err("load a tracepoint program", e))?,
    }
    let conn_loaded = if let Some(btf) = &kernel_btf {
        btf_program(ebpf, CONN_PROG)?
            .load(BTF_TRACEPOINT, btf)
            .map_err(|e| program_err("load the connection program", e))?;
        true
    } else {
        false
    };
    drop(kernel_btf);
    release_freed_heap();
    Ok(conn_loaded)
}

/// The maps userspace keeps, taken from the loaded object.
struct Maps {
    events: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    owners: BpfHashMap<MapData, u64, Owner>,
    watched: Option<BpfHashMap<MapData, u32, u32>>,
    udp_binds: Option<PerCpuHashMap<MapData, UdpBindKey, UdpBindTally>>,
}

impl Maps {
    fn take(ebpf: &mut Ebpf, config: &ProbeConfig) -> Result<Maps> {
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
        let counters = ebpf
            .take_map(COUNTERS_MAP)
            .ok_or(Error::MissingObject("the COUNTERS map"))?;
        let counters = PerCpuArray::try_from(counters).map_err(map_err(COUNTERS_MAP))?;
        let owners = ebpf
            .take_map(OWNERS_MAP)
            .ok_or(Error::MissingObject("the OWNERS map"))?;
        let owners = BpfHashMap::try_from(owners).map_err(map_err(OWNERS_MAP))?;
        let watched = if config.filter_tree {
            let map = ebpf
                .take_map(WATCHED_MAP)
                .ok_or(Error::MissingObject("the WATCHED map"))?;
            Some(BpfHashMap::try_from(map).map_err(map_err(WATCHED_MAP))?)
        } else {
            None
        };
        let udp_binds = if config.udp_aggregate {
            let map = ebpf
                .take_map(UDP_BINDS_MAP)
                .ok_or(Error::MissingObject("the UDP_BINDS map"))?;
            Some(PerCpuHashMap::try_from(map).map_err(map_err(UDP_BINDS_MAP))?)
        } else {
            None
        };
        Ok(Maps {
            events,
            counters,
            owners,
            watched,
            udp_binds,
        })
    }
}

impl KernelProbe {
    /// The re-check's timer, set to its time (see `recheck_at`): made at
    /// the first look of a burst, moved for the next ones.
    fn recheck_timer(&mut self) -> Option<Pin<&mut tokio::time::Sleep>> {
        let at = self.recheck_at?;
        match &mut self.recheck {
            Some(timer) => {
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
            }
            None => self.recheck = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.recheck.as_mut().map(Pin::as_mut)
    }

    /// Counts a read and sets the next look at the ring (`look`: the
    /// re-check timer made this read).
    fn after_read(&mut self, look: bool, read: Drained) {
        self.drained += read.bytes;
        self.next_look(look, read.udp);
    }

    /// Sets the next look at the ring after a read (`look`: the re-check
    /// timer's; `udp`: it found UDP records, or may have).
    fn next_look(&mut self, look: bool, udp: bool) {
        if self.udp_missing.is_some() || !self.config.udp {
            return;
        }
        match self.rechecks.after_read(look, udp) {
            NextLook::Again => self.recheck_at = Some(tokio::time::Instant::now() + RECHECK),
            NextLook::Unchanged => {}
            NextLook::Stop => {
                self.recheck_at = None;
                // The looks are over: a timer left set would wake the reader.
                self.recheck = None;
            }
        }
    }
}

impl KernelProbe {
    /// The directory of cgroup `id`, through the cgroup2 mount opened
    /// once.
    fn open_cgroup(&mut self, id: u64) -> Option<fs::File> {
        cgroup::open_dir(cgroup_root(&mut self.cgroup_mount)?, id)
    }

    /// Lets go of the cgroups the kernel detached the release program
    /// from (freed since: transient units, sessions, containers), so that
    /// a long-lived host does not drift past the bound to the root. A
    /// link counts as detached only when its own fdinfo says so.
    fn forget_freed_cgroups(&mut self) {
        let Some(seen) = release_links_seen() else {
            return;
        };
        let ours: HashMap<u64, u32> = self
            .release_links
            .iter()
            .map(|(cgroup, l)| (*cgroup, l.kernel_id))
            .collect();
        let freed = release_cover::freed(&ours, &seen);
        self.release_cover.forget(&freed);
        for id in freed {
            self.release_links.remove(&id);
            if let Some(map) = self._ebpf.map_mut(RELEASE_CGROUPS_MAP)
                && let Ok(mut map) = BpfHashMap::<&mut MapData, u64, u32>::try_from(map)
            {
                let _ = map.remove(&id);
            }
        }
    }

    /// Attaches the release program to cgroup `id`, then tells the bind
    /// programs: a bind there records its owner from then on.
    fn attach_release(&mut self, id: u64, dir: &fs::File) -> Result<()> {
        let program = release_program(&mut self._ebpf)?;
        let attached = program
            .attach(dir, CgroupAttachMode::Single)
            .map_err(|e| program_err("attach the UDP release program to a cgroup", e))?;
        // Ours to hold: its kernel id tells its fdinfo apart.
        let link_err = |e: aya::programs::links::LinkError| Error::Io {
            what: "reading the UDP release program's link failed",
            source: std::io::Error::other(e),
        };
        let link: FdLink = program
            .take_link(attached)
            .map_err(|e| program_err("take the UDP release program's link", e))?
            .try_into()
            .map_err(link_err)?;
        let kernel_id = link.info().map_err(link_err)?.id();
        let told = self
            ._ebpf
            .map_mut(RELEASE_CGROUPS_MAP)
            .ok_or(Error::MissingObject("the RELEASE_CGROUPS map"))
            .and_then(|m| {
                let mut map: BpfHashMap<&mut MapData, u64, u32> =
                    BpfHashMap::try_from(m).map_err(map_error(RELEASE_CGROUPS_MAP))?;
                map.insert(id, 1, 0).map_err(map_error(RELEASE_CGROUPS_MAP))
            });
        // On an error the link drops here: not left attached where no
        // bind records an owner.
        told?;
        self.release_links.insert(
            id,
            ReleaseLink {
                _link: link,
                kernel_id,
            },
        );
        Ok(())
    }
}

/// The cgroup2 hierarchy's root, opened into `mount` once.
fn cgroup_root(mount: &mut Option<fs::File>) -> Option<&fs::File> {
    if mount.is_none() {
        *mount = cgroup::open_root();
    }
    mount.as_ref()
}

/// A link of the release program to one cgroup.
struct ReleaseLink {
    /// Held only to be dropped: that detaches it.
    _link: FdLink,
    kernel_id: u32,
}

impl EventSource for KernelProbe {
    /// The listen confirmation before the state change: once the state
    /// change runs, every open it leaves to the confirmation is reported.
    fn start(&mut self) -> Result<()> {
        if self.config.udp {
            self.udp_missing = attach_udp(&mut self._ebpf, self.release_at_root).err();
            if self.release_at_root {
                self.release_cover.done(&Cover::Everywhere(Vec::new()));
            }
        }
        if !self.config.tcp {
            return Ok(());
        }
        self.listen_confirm_missing = match (self.config.listen_callback, self.hook) {
            (false, _) => None,
            (true, Hook::TpBtf) => attach_listen_confirm(&mut self._ebpf, &self.sock_offsets).err(),
            (true, _) => Some("it needs the tp_btf hook".to_string()),
        };
        match self.hook {
            Hook::TpBtf => {
                btf_program(&mut self._ebpf, SET_STATE_BTF_PROG)?
                    .attach()
                    .map_err(|e| program_err("attach to tp_btf/inet_sock_set_state", e))?;
            }
            _ => {
                tracepoint_program(&mut self._ebpf, SET_STATE_PROG)?
                    .attach("sock", "inet_sock_set_state")
                    .map_err(|e| program_err("attach a tracepoint program", e))?;
            }
        }
        self.set_connections(self.config.connections)
    }

    /// While detached, connections cost nothing beyond the listen
    /// program's state check.
    fn set_connections(&mut self, on: bool) -> Result<()> {
        if on == self.conn_link.is_some() {
            return Ok(());
        }
        if on && !self.conn_loaded {
            return Err(Error::ConnectionsNeedBtf);
        }
        let program = btf_program(&mut self._ebpf, CONN_PROG)?;
        match self.conn_link.take() {
            Some(link) => program
                .detach(link)
                .map_err(|e| program_err("detach the connection program", e))?,
            None => {
                self.conn_link = Some(
                    program
                        .attach()
                        .map_err(|e| program_err("attach the connection program", e))?,
                );
            }
        }
        Ok(())
    }

    fn netns_known(&self) -> bool {
        self.netns_known
    }

    fn listen_confirm_missing(&self) -> Option<&str> {
        self.listen_confirm_missing.as_deref()
    }

    fn udp_missing(&self) -> Option<&str> {
        self.udp_missing.as_deref()
    }

    fn seed_owners(&mut self, listeners: &[crate::event::Listener]) -> Result<()> {
        for l in listeners {
            let Some(cookie) = l.cookie else { continue };
            let (family, addr) = match l.address {
                std::net::IpAddr::V4(a) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&a.octets());
                    (portwatch_common::AF_INET, b)
                }
                std::net::IpAddr::V6(a) => (portwatch_common::AF_INET6, a.octets()),
            };
            let mut comm = [0u8; portwatch_common::COMM_LEN];
            let name = l.comm.as_bytes();
            let n = name.len().min(comm.len() - 1);
            comm[..n].copy_from_slice(&name[..n]);
            let owner = Owner {
                cgroup_id: 0,
                tgid: l.pid,
                tid: l.pid,
                uid: l.uid,
                netns: u32::try_from(l.netns).unwrap_or(0),
                watched: 1,
                listening: 1,
                comm,
                family,
                _pad: [0; 6],
                addr,
            };
            // BPF_NOEXIST: a bind recorded meanwhile knows better. A full
            // map (which another user can fill with sockets) costs this
            // socket its close event, never the monitor its life.
            match self.owners.insert(cookie, owner, 1) {
                Ok(()) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::E2BIG) =>
                {
                    self.seeds_full += 1;
                }
                Err(e) => {
                    return Err(Error::Map {
                        name: OWNERS_MAP,
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(())
    }

    fn cover_release(&mut self, cgroup: u64) -> Result<()> {
        if !self.config.udp || self.udp_missing.is_some() {
            return Err(Error::MissingObject("the UDP programs"));
        }
        let bound = RELEASE_CGROUPS_CAPACITY as usize;
        if self.release_cover.full(bound) {
            self.forget_freed_cgroups();
        }
        let plan = match self.release_cover.plan(cgroup, bound) {
            Cover::Nothing => return Ok(()),
            Cover::Attach(id) => match self.open_cgroup(id) {
                Some(dir) => match self.attach_release(id, &dir) {
                    Ok(()) => Cover::Attach(id),
                    Err(e) => {
                        tracing::debug!("the UDP release program stays off cgroup {id}: {e}");
                        self.release_cover.everywhere()
                    }
                },
                // Gone, or no right to open it by id: the root covers it.
                None => self.release_cover.everywhere(),
            },
            everywhere @ Cover::Everywhere(_) => everywhere,
        };
        if let Cover::Everywhere(attached) = &plan {
            let root = cgroup_root(&mut self.cgroup_mount)
                .ok_or(Error::MissingObject("the cgroup v2 root"))?;
            release_everywhere(&mut self._ebpf, root)?;
            // The root's program runs for them now: the others would run
            // a second time (dropped, they detach).
            for id in attached {
                self.release_links.remove(id);
            }
        }
        self.release_cover.done(&plan);
        Ok(())
    }

    fn unseed_owner(&mut self, cookie: u64) -> Result<bool> {
        removed(self.owners.remove(&cookie), OWNERS_MAP)
    }

    fn udp_binds(&self) -> Result<Vec<BindCount>> {
        let Some(map) = self.udp_binds.as_ref() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry.map_err(|e| Error::Map {
                name: UDP_BINDS_MAP,
                source: Box::new(e),
            })?;
            let Some(class) = PortClass::from_kernel(key.class) else {
                continue;
            };
            // The name is in the slot of the CPU that made the entry.
            let comm = per_cpu
                .iter()
                .map(|t| t.comm)
                .find(|c| c[0] != 0)
                .unwrap_or_default();
            let len = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
            out.push(BindCount {
                key: BindKey {
                    pid: key.tgid,
                    class,
                },
                binds: per_cpu.iter().map(|t| t.binds).sum(),
                comm: comm[..len].to_vec(),
            });
        }
        Ok(out)
    }

    fn forget_udp_binds(&mut self, keys: &[BindKey]) -> Result<()> {
        let Some(map) = self.udp_binds.as_mut() else {
            return Ok(());
        };
        for key in keys {
            let k = UdpBindKey {
                tgid: key.pid,
                class: key.class.kernel(),
            };
            removed(map.remove(&k), UDP_BINDS_MAP)?;
        }
        Ok(())
    }

    fn cookies(&self) -> bool {
        self.cookies
    }

    fn watch_pids(&mut self, pids: &[u32], root: u32) -> Result<()> {
        let Some(map) = self.watched.as_mut() else {
            return Ok(());
        };
        for &pid in pids {
            map.insert(pid, root, 0).map_err(|e| Error::Map {
                name: WATCHED_MAP,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    fn watched_under(&self, root: u32) -> Vec<u32> {
        let Some(map) = self.watched.as_ref() else {
            return Vec::new();
        };
        map.iter()
            .filter_map(|kv| kv.ok())
            .filter(|(_, r)| *r == root)
            .map(|(pid, _)| pid)
            .collect()
    }

    fn unwatch_pids(&mut self, pids: &[u32]) -> Result<()> {
        let Some(map) = self.watched.as_mut() else {
            return Ok(());
        };
        for pid in pids {
            // Gone already (the process exited): nothing to remove.
            let _ = map.remove(pid);
        }
        Ok(())
    }

    fn is_watched(&self, pid: u32) -> bool {
        match &self.watched {
            Some(map) => map.get(&pid, 0).is_ok(),
            None => true,
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut Vec<KernelEvent>) -> Poll<Result<()>> {
        let mut woken = false;
        let read = match self.events.poll_read_ready_mut(cx) {
            Poll::Ready(Ok(mut guard)) => {
                woken = true;
                let read = drain(
                    guard.get_inner_mut(),
                    out,
                    &mut self.malformed,
                    self.discard,
                );
                guard.clear_ready();
                read
            }
            Poll::Ready(Err(source)) => {
                return Poll::Ready(Err(Error::Io {
                    what: "waiting for the ring buffer failed",
                    source,
                }));
            }
            // No wake-up: look anyway once the re-check is due.
            Poll::Pending => {
                let due = self
                    .recheck_timer()
                    .is_some_and(|due| due.poll(cx).is_ready());
                if !due {
                    return Poll::Pending;
                }
                drain(
                    self.events.get_mut(),
                    out,
                    &mut self.malformed,
                    self.discard,
                )
            }
        };
        self.after_read(!woken, read);
        if read.bytes == 0 && !woken {
            // A look that found nothing: wait for a wake-up (the fd's
            // waker was registered above) or the next look, whose timer
            // learns of this task by being polled once.
            if let Some(due) = self.recheck_timer() {
                let _ = due.poll(cx);
            }
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn read_now(&mut self, out: &mut Vec<KernelEvent>) {
        let read = drain(
            self.events.get_mut(),
            out,
            &mut self.malformed,
            self.discard,
        );
        // A UDP record read here may be one whose wake-up comes later and
        // finds nothing: the looks start from this read.
        self.after_read(false, read);
    }

    /// A record is dropped only when the buffer is full, and every byte
    /// that filled it is read afterwards: until almost a buffer's worth has
    /// been read since the last look, no loss can have happened. This keeps
    /// the counter reads (syscalls) off ordinary traffic.
    fn loss_possible(&self) -> bool {
        self.drained + RECORD_BYTES >= self.ring_bytes
    }

    fn read_counters(&mut self) -> Result<KernelCounters> {
        // Reset first: bytes read from here on may follow a later drop.
        self.drained = 0;
        let counters = self.counters()?;
        if counters.ring_full > self.ring_full_seen {
            self.ring_full_seen = counters.ring_full;
            // A dropped record may have been the UDP one whose wake-up
            // a later record counts on: look, as after a read of one.
            self.next_look(false, true);
        }
        Ok(counters)
    }

    fn counters(&self) -> Result<KernelCounters> {
        let sum = |index: u32| -> Result<u64> {
            let values = self.counters.get(&index, 0).map_err(|e| Error::Map {
                name: COUNTERS_MAP,
                source: Box::new(e),
            })?;
            Ok(values.iter().sum())
        };
        Ok(KernelCounters {
            ring_full: sum(COUNTER_RING_FULL)?,
            owners_full: sum(COUNTER_OWNERS_FULL)? + self.seeds_full,
            binds_full: sum(COUNTER_BINDS_FULL)?,
        })
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }
}

/// A map entry's removal: whether the entry was there (a missing one is
/// no error).
fn removed(result: Result<(), aya::maps::MapError>, name: &'static str) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::Map {
            name,
            source: Box::new(e),
        }),
    }
}

/// How long after a read the reader looks at the ring again without a
/// wake-up (`ring_recheck`): a UDP record sent between two wake-ups waits
/// at most about this long (the timer's resolution is a millisecond).
const RECHECK: std::time::Duration = std::time::Duration::from_millis(1);

/// Bytes one event takes in the ring buffer: an 8-byte header, and the
/// record rounded up to 8 bytes.
const RECORD_BYTES: u64 = (8 + size_of::<SockEvent>() as u64).next_multiple_of(8);

/// What one read of the ring took.
#[derive(Clone, Copy, Debug, Default)]
struct Drained {
    /// Ring buffer bytes the records took.
    bytes: u64,
    /// Whether a record was UDP's, or could be (one dropped unread or
    /// malformed): see `ring_recheck`.
    udp: bool,
}

/// Reads every record (and drops it unread with `discard`, the
/// benchmark's ring stage).
fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Vec<KernelEvent>,
    malformed: &mut u64,
    discard: bool,
) -> Drained {
    let mut read = Drained::default();
    while let Some(item) = ring.next() {
        read.bytes += (8 + item.len() as u64).next_multiple_of(8);
        // The listen program's early wake-up: nothing to read.
        if item.is_empty() {
            continue;
        }
        if discard {
            read.udp = true;
            continue;
        }
        match KernelEvent::decode(&item) {
            Some(ev) => {
                read.udp |= ev.proto != Proto::Tcp;
                out.push(ev);
            }
            None => {
                read.udp = true;
                *malformed += 1;
            }
        }
    }
    read
}

/// The `struct sock` and `struct net` offsets the programs read.
fn sock_offsets(b: &btf::Btf) -> Option<SockOffsets> {
    let sc = |field: &str| b.member_offset("sock_common", &[field]);
    // `struct sock` starts with its `struct sock_common __sk_common`.
    let common = b.member_offset("sock", &["__sk_common"])?;
    Some(SockOffsets {
        skc_family: common + sc("skc_family")?,
        skc_num: common + sc("skc_num")?,
        inet_sport: b.member_offset("inet_sock", &["inet_sport"])?,
        skc_daddr: common + sc("skc_daddr")?,
        skc_v6_daddr: common + sc("skc_v6_daddr")?,
        skc_dport: common + sc("skc_dport")?,
        skc_rcv_saddr: common + sc("skc_rcv_saddr")?,
        skc_v6_rcv_saddr: common + sc("skc_v6_rcv_saddr")?,
        // possible_net_t holds the `struct net *` as its only member.
        skc_net: common + sc("skc_net")?,
        sk_protocol: b.member_offset("sock", &["sk_protocol"])?,
        sk_uid: b.member_offset("sock", &["sk_uid"])?,
        net_ns_inum: b.member_offset("net", &["ns", "inum"])?,
        task_group_leader: b.member_offset("task_struct", &["group_leader"])?,
        task_comm: b.member_offset("task_struct", &["comm"])?,
        task_nsproxy: b.member_offset("task_struct", &["nsproxy"])?,
        nsproxy_net_ns: b.member_offset("nsproxy", &["net_ns"])?,
        // The listen confirmation's, which is left off without them
        // (see `attach_listen_confirm`). `sk_flags` is
        // `__sk_common.skc_flags`, in an anonymous union.
        sk_flags: sc("skc_flags").map_or(0, |o| common + o),
        sock_rcu_free: b.enum_value("sock_flags", "SOCK_RCU_FREE").unwrap_or(0),
        valid: 1,
        // The socket's cgroup; all three or none.
        ..cgroup_offsets(b).unwrap_or(SockOffsets::UNKNOWN)
    })
}

/// The offsets of the path from a socket to its cgroup's id (see
/// `SockOffsets::sk_cgrp_data`), the others unknown.
fn cgroup_offsets(b: &btf::Btf) -> Option<SockOffsets> {
    Some(SockOffsets {
        sk_cgrp_data: b.member_offset("sock", &["sk_cgrp_data", "cgroup"])?,
        cgroup_kn: b.member_offset("cgroup", &["kn"])?,
        kernfs_node_id: b.member_offset("kernfs_node", &["id"])?,
        ..SockOffsets::UNKNOWN
    })
}

/// Attaches the listen confirmation, the program at `listen()`'s return
/// (a syscall tracepoint, so tracefs is mounted when missing), then tells
/// the state-change program so. Without it the state change reports opens
/// itself; the error says why, in a few words.
fn attach_listen_confirm(
    ebpf: &mut Ebpf,
    offsets: &SockOffsets,
) -> std::result::Result<(), String> {
    if offsets.sk_flags == 0 || offsets.sock_rcu_free == 0 {
        return Err("the kernel BTF lacks sock.skc_flags or SOCK_RCU_FREE".into());
    }
    tracefs::ensure_mounted().map_err(|e| format!("{e}"))?;
    let program = tracepoint_program(ebpf, LISTEN_EXIT_PROG).map_err(|e| format!("{e}"))?;
    program.load().map_err(|e| {
        // The verifier's log is long: for RUST_LOG=debug only.
        tracing::debug!("loading {LISTEN_EXIT_PROG} failed: {e:?}");
        "the kernel refused to load it".to_string()
    })?;
    program
        .attach("syscalls", "sys_exit_listen")
        .map_err(|e| format!("cannot attach it to syscalls/sys_exit_listen: {e}"))?;
    let mut flag: Array<&mut MapData, u32> = Array::try_from(
        ebpf.map_mut(LISTEN_CONFIRM_MAP)
            .ok_or("the eBPF object has no LISTEN_CONFIRM map")?,
    )
    .map_err(|e| format!("{e}"))?;
    flag.set(0, 1, 0).map_err(|e| format!("{e}"))
}

/// Attaches the UDP programs (bind and release, cgroup sock) at the root
/// of the cgroup v2 hierarchy. Each returns "allow" on every path, so a
/// bind() or close() never fails because of them. The release program
/// comes first, and the bind programs are told it runs everywhere before
/// they run: every bind then records its owner.
fn attach_udp(ebpf: &mut Ebpf, release_at_root: bool) -> std::result::Result<(), String> {
    let root = cgroup::root_dir()
        .ok_or("no cgroup v2 hierarchy root is mounted (it carries the UDP programs)")?;
    let cgroup =
        fs::File::open(&root).map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    for name in [UDP_RELEASE_PROG, UDP_BIND4_PROG, UDP_BIND6_PROG] {
        if name == UDP_BIND4_PROG && release_at_root {
            tell_release_everywhere(ebpf).map_err(|e| e.to_string())?;
        }
        let program: &mut CgroupSock = ebpf
            .program_mut(name)
            .ok_or("the eBPF object has no UDP program")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        program.load().map_err(|e| {
            tracing::debug!("loading {name} failed: {e:?}");
            format!("the kernel refused to load {name}")
        })?;
        // Else the release program waits to be attached where a bind
        // asks for it (`cover_release`).
        if name == UDP_RELEASE_PROG && !release_at_root {
            continue;
        }
        program
            .attach(&cgroup, CgroupAttachMode::Single)
            .map_err(|e| format!("cannot attach {name} to {}: {e}", root.display()))?;
    }
    Ok(())
}

/// The links of the release program this process holds, by kernel link
/// id, with their cgroups (0: detached by the kernel), from its
/// descriptors' fdinfo; None when that cannot be read whole.
fn release_links_seen() -> Option<HashMap<u32, u64>> {
    let mut seen = HashMap::new();
    for entry in fs::read_dir("/proc/self/fdinfo").ok()? {
        let path = entry.ok()?.path();
        match fs::read_to_string(&path) {
            Ok(text) => {
                if let Some((link, cgroup)) = release_cover::release_link_cgroup(&text) {
                    seen.insert(link, cgroup);
                }
            }
            // A descriptor closed meanwhile: none of the links.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return None,
        }
    }
    Some(seen)
}

/// A map's error, named.
fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |e| Error::Map {
        name,
        source: Box::new(e),
    }
}

// `CgroupAttachMode::Single` below: aya attaches through a bpf_link
// (Linux 5.7 and later), which the kernel always makes a multi-program
// attach, and which refuses any flag (EINVAL): so the program can be
// attached to a cgroup and its ancestors at once, and the release program
// to many cgroups.

/// The UDP release program, loaded.
fn release_program(ebpf: &mut Ebpf) -> Result<&mut CgroupSock> {
    ebpf.program_mut(UDP_RELEASE_PROG)
        .ok_or(Error::MissingObject("the UDP release program"))?
        .try_into()
        .map_err(|e| program_err("use the UDP release program", e))
}

/// Attaches the release program at the cgroup root (`root`), then tells
/// the bind programs that every socket's release is seen; the attach is
/// undone if they cannot be told.
fn release_everywhere(ebpf: &mut Ebpf, root: &fs::File) -> Result<()> {
    let link = release_program(ebpf)?
        .attach(root, CgroupAttachMode::Single)
        .map_err(|e| program_err("attach the UDP release program at the cgroup root", e))?;
    let told = tell_release_everywhere(ebpf);
    if told.is_err() {
        let _ = release_program(ebpf)?.detach(link);
    }
    told
}

/// Tells the bind programs that the release program runs at the root:
/// every bind records its owner.
fn tell_release_everywhere(ebpf: &mut Ebpf) -> Result<()> {
    let mut everywhere: Array<&mut MapData, u32> = Array::try_from(
        ebpf.map_mut(RELEASE_EVERYWHERE_MAP)
            .ok_or(Error::MissingObject("the RELEASE_EVERYWHERE map"))?,
    )
    .map_err(map_error(RELEASE_EVERYWHERE_MAP))?;
    everywhere
        .set(0, 1, 0)
        .map_err(map_error(RELEASE_EVERYWHERE_MAP))
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    prog: &'static str,
    category: &str,
    name: &str,
) -> Result<()> {
    let program = tracepoint_program(ebpf, prog)?;
    program
        .load()
        .map_err(|e| program_err("load a tracepoint program", e))?;
    program
        .attach(category, name)
        .map_err(|e| program_err("attach a tracepoint program", e))?;
    Ok(())
}

fn tracepoint_program<'a>(ebpf: &'a mut Ebpf, prog: &'static str) -> Result<&'a mut TracePoint> {
    ebpf.program_mut(prog)
        .ok_or(Error::MissingObject("a tracepoint program"))?
        .try_into()
        .map_err(|e| program_err("use a tracepoint program", e))
}

fn btf_program<'a>(ebpf: &'a mut Ebpf, prog: &'static str) -> Result<&'a mut BtfTracePoint> {
    ebpf.program_mut(prog)
        .ok_or(Error::MissingObject("a tp_btf program"))?
        .try_into()
        .map_err(|e| program_err("use a tp_btf program", e))
}

fn program_err(action: &'static str, e: aya::programs::ProgramError) -> Error {
    Error::Program {
        action,
        source: Box::new(e),
    }
    .or_not_permitted()
}

/// aya's parses of the kernel BTF leave megabytes of freed heap behind, in
/// pieces glibc would keep for the life of the daemon: hand them back.
fn release_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lifting it is
/// harmless on newer ones. A failure surfaces later as a load error.
fn raise_memlock_limit() {
    let unlimited = rustix::process::Rlimit {
        current: None,
        maximum: None,
    };
    let _ = rustix::process::setrlimit(rustix::process::Resource::Memlock, unlimited);
}

#[cfg(test)]
mod tests {
    /// The programs load without the kernel's BTF (`lean_loader.rs`): aya
    /// would skip a CO-RE relocation without a word, and the program would
    /// read what the compiler's offsets point at.
    #[test]
    fn the_programs_need_no_co_re_relocation() {
        let object = aya_obj::Object::parse(super::OBJECT).expect("the embedded eBPF object");
        assert!(!object.has_btf_relocations());
    }
}
