//! The boundary to the operating system: bpf, tracefs, procfs, netlink,
//! clocks and capabilities. The rest of the crate reaches the OS only
//! through the two traits here, [`EventSource`] (the kernel programs) and
//! [`Host`] (scans, process lookups, clock, cgroup names), so the engine
//! runs on fakes in unit tests ([`fake`]).

pub(crate) mod bpf;
pub(crate) mod btf;
pub(crate) mod cgroup;
pub(crate) mod clock;
pub(crate) mod container_names;
pub(crate) mod exe_hash;
pub(crate) mod exposure_facts;
pub(crate) mod exposure_watch;
pub(crate) mod facts;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod file_watch;
pub(crate) mod git;
pub(crate) mod kallsyms;
pub(crate) mod lean_loader;
pub(crate) mod links;
pub(crate) mod local_socket;
pub(crate) mod netlink_dump;
pub(crate) mod netns;
pub(crate) mod nftables;
pub(crate) mod owned_file;
pub(crate) mod owner_facts;
pub(crate) mod packages;
pub(crate) mod privilege;
pub(crate) mod procfs_scan;
pub(crate) mod procinfo;
pub(crate) mod prog_stats;
pub(crate) mod release_cover;
pub(crate) mod ring_recheck;
pub(crate) mod slow_reads;
pub(crate) mod sock_diag;
pub(crate) mod socket_table;
pub(crate) mod tracefs;
pub(crate) mod usage;
pub(crate) mod users;

use std::task::{Context, Poll};

use chrono::{DateTime, Utc};

pub(crate) use self::{
    bpf::{KernelCounters, ProbeConfig},
    procfs_scan::{HeldSocket, HeldUdp, ProcessKind, UdpTables},
    socket_table::SocketQuery,
    usage::ProcessUsage,
};
use crate::{
    container::Container,
    error::Result,
    event::{KernelEvent, Scan},
    report::{BindCount, BindKey},
};

/// The kernel side: the attached programs and their ring buffer.
pub(crate) trait EventSource: Send {
    /// Attaches the programs that report listeners. Until then only the
    /// bookkeeping ones run (the process tree's), so that the tree can be
    /// seeded before the first listener is judged in or out of it.
    fn start(&mut self) -> Result<()>;
    /// Ready once the ring buffer has events; then appends all of them.
    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut Vec<KernelEvent>) -> Poll<Result<()>>;
    /// Appends whatever the ring buffer holds now, without waiting.
    fn read_now(&mut self, out: &mut Vec<KernelEvent>);
    /// Whether events can have been lost since the counters were last read.
    fn loss_possible(&self) -> bool;
    /// The kernel's loss counters; resets [`Self::loss_possible`].
    fn read_counters(&mut self) -> Result<KernelCounters>;
    /// The kernel's loss counters, without resetting anything.
    fn counters(&self) -> Result<KernelCounters>;
    /// Ring buffer records that did not decode.
    fn malformed(&self) -> u64;
    /// Whether events carry the socket's network namespace.
    fn netns_known(&self) -> bool;
    /// Why opens do not come from the listen confirmation (only after
    /// `listen()` succeeded, with the final port) though it was asked for.
    fn listen_confirm_missing(&self) -> Option<&str>;
    /// Whether events name sockets by cookie (else by kernel address).
    fn cookies(&self) -> bool;
    /// Why UDP is not watched though it was asked for.
    fn udp_missing(&self) -> Option<&str>;
    /// Tells the kernel the owners of UDP sockets a scan found, so that
    /// their release is reported like that of a socket bound since.
    fn seed_owners(&mut self, listeners: &[crate::event::Listener]) -> Result<()>;
    /// Has the UDP release program run for sockets of cgroup `cgroup` (0:
    /// unknown): attached there, or at the root past a bound or where
    /// the cgroup cannot be opened. Binds there record their owners from
    /// then on.
    fn cover_release(&mut self, cgroup: u64) -> Result<()>;
    /// Takes back a seeded owner: true when it was still there, so that
    /// the kernel has not reported the socket's release (it came before
    /// the seed, or has not come yet).
    fn unseed_owner(&mut self, cookie: u64) -> Result<bool>;
    /// The UDP aggregate mode's tally: binds by process and port class
    /// since each entry was made (empty when the mode is off).
    fn udp_binds(&self) -> Result<Vec<BindCount>>;
    /// Removes entries from the tally (processes that exited).
    fn forget_udp_binds(&mut self, keys: &[BindKey]) -> Result<()>;
    /// Whether a process is in the kernel's watched set (always true
    /// without a process-tree filter).
    fn is_watched(&self, pid: u32) -> bool;
    /// Adds processes to the watched set, under the tree of `root`.
    fn watch_pids(&mut self, pids: &[u32], root: u32) -> Result<()>;
    /// The processes watched under the tree of `root`.
    fn watched_under(&self, root: u32) -> Vec<u32>;
    /// Removes processes from the watched set.
    fn unwatch_pids(&mut self, pids: &[u32]) -> Result<()>;
    /// Attaches or detaches the connection-event program.
    fn set_connections(&mut self, on: bool) -> Result<()>;
}

/// Everything else the engine asks of the host.
pub(crate) trait Host: Send {
    /// Every socket `queries` ask for, in every namespace, with its owner:
    /// the oldest holder for which `owner_ok` is true (pid 0 if none, kept
    /// only if `owner_ok(0)`), and which namespaces were read.
    fn scan_listeners(
        &mut self,
        queries: &[SocketQuery],
        owner_ok: &dyn Fn(u32) -> bool,
    ) -> Result<Scan>;
    /// Every socket `queries` ask for, in any state, in every namespace,
    /// with its owner (`list_sockets`).
    fn scan_sockets(&mut self, queries: &[SocketQuery]) -> Result<Vec<crate::socket::SocketInfo>>;
    /// The listening TCP sockets processes `pids` hold (one table read per
    /// namespace).
    fn held_listeners(&mut self, pids: &[u32]) -> Vec<HeldSocket>;
    /// Every listening TCP socket in the network namespaces of `owners`
    /// (a pid, and the namespace the kernel saw its socket in; 0 when
    /// unknown), named with the pid it was seen through: one table read
    /// per namespace, no descriptor walk, so a socket held by another
    /// process or as an io_uring fixed file is found too (by cookie). A
    /// namespace the owner is not in (it moved since it made the socket)
    /// is reached through one of its sockets that leads there.
    fn listening_sockets(&mut self, owners: &[(u32, u64)]) -> Vec<HeldSocket>;
    /// The cookies of every UDP socket in the network namespaces of
    /// `owners` (reached as [`Self::listening_sockets`] reaches them), and
    /// the namespaces whose tables were read with cookies: a cookie
    /// missing from one of those was not in the table when it was read.
    fn udp_sockets(&mut self, owners: &[(u32, u64)]) -> UdpTables;
    /// The UDP sockets processes `pids` hold, any state (one table read
    /// per namespace).
    fn held_udp(&mut self, pids: &[u32]) -> Vec<HeldUdp>;
    /// (pid, parent pid) of every process.
    fn parent_links(&mut self) -> Result<Vec<(u32, u32)>>;
    fn process_kind(&self, pid: u32) -> ProcessKind;
    /// A process's arguments (`/proc/PID/cmdline`), empty when it is gone.
    fn cmdline(&self, pid: u32) -> Vec<String>;
    /// Whether a network namespace with this inode exists (one with a
    /// process in it, or an `ip netns` one).
    fn netns_exists(&self, ino: u64) -> bool;
    /// The ephemeral port range (`net.ipv4.ip_local_port_range`): ports
    /// the kernel hands out by itself.
    fn ephemeral_ports(&self) -> std::ops::RangeInclusive<u16>;
    /// CLOCK_BOOTTIME, the clock kernel events are stamped with.
    fn boot_now_ns(&self) -> u64;
    fn wall_now(&self) -> DateTime<Utc>;
    /// The path of cgroup `id`, or empty when unknown.
    fn cgroup_path(&mut self, id: u64) -> String;
    /// The container (or service unit) of a cgroup path, with the name
    /// its runtime keeps on disk.
    fn container(&mut self, cgroup: &str) -> Option<Container>;
    /// CPU time and memory of a process, if it exists.
    fn process_usage(&self, pid: u32) -> Option<ProcessUsage>;
    /// Clock ticks per second, the unit of [`ProcessUsage::cpu_ticks`].
    fn ticks_per_second(&self) -> u64;
    /// The exposure facts of namespace `netns`, entered through process
    /// `pid`.
    fn netns_facts(
        &mut self,
        netns: u64,
        pid: u32,
        translate: crate::netns_facts::Translate,
    ) -> exposure_watch::FactsResult;
    /// portwatch's own network namespace.
    fn own_netns(&self) -> Option<u64>;
    /// A process's start time (clock ticks since boot); None when gone.
    fn start_time(&self, pid: u32) -> Option<u64>;
    /// The (device, inode) of the executable a process runs.
    fn exe_id(&self, pid: u32) -> Option<(u64, u64)>;
    /// What /proc says of a process for its owner context; ancestors
    /// already in `memo` (this batch's) are not read again.
    fn owner_facts(
        &mut self,
        pid: u32,
        memo: &mut crate::owner::AncestorMemo,
    ) -> Option<crate::owner::OwnerFacts>;
    /// [`Self::owner_facts`] of each of `pids` (one snapshot's), read
    /// together.
    fn owner_facts_all(
        &mut self,
        pids: &[u32],
        memo: &mut crate::owner::AncestorMemo,
    ) -> Vec<Option<crate::owner::OwnerFacts>>;
    /// The Debian package that owns the file at `exe`, if that file is
    /// `running` (device, inode): the one a process runs, not another one
    /// a mount namespace shows at that path.
    fn package_of(&mut self, exe: &str, running: (u64, u64)) -> Option<String>;
}

/// Attaches the kernel programs.
pub(crate) type Attach = Box<dyn FnOnce(&ProbeConfig) -> Result<Box<dyn EventSource>> + Send>;

/// The operating system as the engine sees it.
pub(crate) struct Os {
    pub host: Box<dyn Host>,
    pub attach: Attach,
    /// Reads exposure facts (started on first use).
    pub facts: StartFacts,
}

/// Starts a [`exposure_watch::FactsSource`] that translates what it reads
/// with the function given.
pub(crate) type StartFacts = Box<
    dyn FnOnce(
            crate::netns_facts::Translate,
        ) -> std::io::Result<Box<dyn exposure_watch::FactsSource>>
        + Send,
>;

impl Os {
    /// The real one.
    pub(crate) fn system() -> Self {
        Os {
            host: Box::new(SystemHost::reading_packages()),
            attach: Box::new(|config| {
                privilege::require_ebpf_privileges()?;
                Ok(Box::new(bpf::KernelProbe::attach(config)?) as Box<dyn EventSource>)
            }),
            facts: Box::new(|translate| {
                Ok(Box::new(exposure_watch::SystemFacts::start(translate)?)
                    as Box<dyn exposure_watch::FactsSource>)
            }),
        }
    }
}

/// [`Host`] on the running system.
pub(crate) struct SystemHost {
    cgroups: cgroup::CgroupNames,
    containers: container_names::ContainerNames,
    usage: usage::UsageReader,
    users: users::Users,
    packages: packages::Packages,
    slow: owner_facts::Slow,
}

impl SystemHost {
    pub(crate) fn new() -> Self {
        Self {
            cgroups: cgroup::CgroupNames::new(),
            containers: container_names::ContainerNames::new(),
            usage: usage::UsageReader::new(),
            users: users::Users::default(),
            packages: packages::Packages::new(),
            slow: owner_facts::slow_reads(),
        }
    }
}

impl SystemHost {
    /// A host whose dpkg database is read now, for owner contexts soon
    /// to be told.
    pub(crate) fn reading_packages() -> Self {
        let mut host = Self::new();
        host.packages.read_now();
        host
    }
}

impl Host for SystemHost {
    fn scan_listeners(
        &mut self,
        queries: &[SocketQuery],
        owner_ok: &dyn Fn(u32) -> bool,
    ) -> Result<Scan> {
        procfs_scan::scan_listeners(queries, owner_ok)
    }

    fn scan_sockets(&mut self, queries: &[SocketQuery]) -> Result<Vec<crate::socket::SocketInfo>> {
        procfs_scan::scan_sockets(queries)
    }

    fn held_listeners(&mut self, pids: &[u32]) -> Vec<HeldSocket> {
        procfs_scan::held_listeners(pids)
    }
    fn listening_sockets(&mut self, owners: &[(u32, u64)]) -> Vec<HeldSocket> {
        procfs_scan::listening_sockets(owners)
    }
    fn udp_sockets(&mut self, owners: &[(u32, u64)]) -> UdpTables {
        procfs_scan::udp_sockets(owners)
    }
    fn held_udp(&mut self, pids: &[u32]) -> Vec<HeldUdp> {
        procfs_scan::held_udp(pids)
    }

    fn parent_links(&mut self) -> Result<Vec<(u32, u32)>> {
        procfs_scan::parent_links()
    }

    fn process_kind(&self, pid: u32) -> ProcessKind {
        procfs_scan::process_kind(pid)
    }

    fn cmdline(&self, pid: u32) -> Vec<String> {
        // At most 64 KiB: only a proxy's few flags are wanted.
        let mut bytes = Vec::new();
        if let Ok(f) = std::fs::File::open(format!("/proc/{pid}/cmdline")) {
            use std::io::Read as _;
            let _ = f.take(64 * 1024).read_to_end(&mut bytes);
        }
        bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    fn netns_exists(&self, ino: u64) -> bool {
        procfs_scan::netns_exists(ino)
    }

    fn ephemeral_ports(&self) -> std::ops::RangeInclusive<u16> {
        procfs_scan::ephemeral_ports()
    }

    fn boot_now_ns(&self) -> u64 {
        clock::boot_now_ns()
    }

    fn wall_now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn cgroup_path(&mut self, id: u64) -> String {
        self.cgroups.path(id)
    }

    fn container(&mut self, cgroup: &str) -> Option<Container> {
        self.containers.container(cgroup)
    }

    fn process_usage(&self, pid: u32) -> Option<ProcessUsage> {
        self.usage.read(pid)
    }

    fn ticks_per_second(&self) -> u64 {
        self.usage.ticks_per_second()
    }

    fn netns_facts(
        &mut self,
        netns: u64,
        pid: u32,
        translate: crate::netns_facts::Translate,
    ) -> exposure_watch::FactsResult {
        exposure_watch::read_now(netns, pid, self.own_netns(), translate)
    }

    fn own_netns(&self) -> Option<u64> {
        netns::of_process(std::process::id())
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        owner_facts::start_time(pid)
    }

    fn exe_id(&self, pid: u32) -> Option<(u64, u64)> {
        owner_facts::exe_id(pid)
    }

    fn owner_facts(
        &mut self,
        pid: u32,
        memo: &mut crate::owner::AncestorMemo,
    ) -> Option<crate::owner::OwnerFacts> {
        owner_facts::read(pid, &mut self.users, memo, &mut self.slow)
    }

    fn owner_facts_all(
        &mut self,
        pids: &[u32],
        memo: &mut crate::owner::AncestorMemo,
    ) -> Vec<Option<crate::owner::OwnerFacts>> {
        owner_facts::read_all(pids, &mut self.users, memo, &mut self.slow)
    }

    fn package_of(&mut self, exe: &str, running: (u64, u64)) -> Option<String> {
        use std::os::unix::fs::MetadataExt as _;
        let here = std::fs::metadata(exe).ok()?;
        if (here.dev(), here.ino()) != running {
            return None;
        }
        self.packages.owner(exe)
    }
}
