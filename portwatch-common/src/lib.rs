//! Types shared by the portwatch eBPF programs and userspace.
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into
//! the ring buffer or reads it from load-time globals, userspace reads the
//! same bytes back. Field order keeps every struct free of implicit padding so
//! both sides agree on the layout without guessing.
#![no_std]

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`).
pub mod tcp_state {
    pub const ESTABLISHED: i32 = 1;
    pub const SYN_SENT: i32 = 2;
    pub const SYN_RECV: i32 = 3;
    pub const CLOSE: i32 = 7;
    pub const LISTEN: i32 = 10;
}

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u16 = 17;
/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;

/// What happened to a socket.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockEventKind {
    /// CLOSE -> LISTEN: `listen()` put the socket into the listening state.
    Opened = 1,
    /// LISTEN -> CLOSE: the last reference to a listening socket was dropped.
    Closed = 2,
    /// CLOSE -> SYN_SENT: a process called `connect()` (connection events only).
    Connect = 3,
    /// SYN_RECV -> ESTABLISHED: an incoming connection completed its
    /// handshake (connection events only; runs in softirq, so no pid).
    Accept = 4,
}

impl TryFrom<u8> for SockEventKind {
    type Error = u8;

    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(Self::Opened),
            2 => Ok(Self::Closed),
            3 => Ok(Self::Connect),
            4 => Ok(Self::Accept),
            other => Err(other),
        }
    }
}

/// `SockEvent::flags`: the owner fields describe the process that called
/// `listen()` (from the kernel's owner map), not just the closing task.
pub const FLAG_OWNER_KNOWN: u8 = 1;
/// `SockEvent::flags`: `sock` is the socket's cookie (as sock_diag and
/// `ss -e` report it), not its kernel address.
pub const FLAG_SOCK_COOKIE: u8 = 2;
/// An open from a `listen()` whose return no hook sees (io_uring, a 32-bit
/// syscall, a full pending map): the call may yet fail, so userspace
/// reports it only once the socket tables show it listening.
pub const FLAG_UNCONFIRMED: u8 = 4;
/// A close of a socket the kernel never hashed as a listener: its
/// `listen()` failed, no port was ever open (set only with the listen
/// confirmation attached).
pub const FLAG_NEVER_LISTENED: u8 = 8;
/// A UDP bind in a cgroup no release program watches yet (see
/// [`RELEASE_CGROUPS_MAP`]): the kernel did not record its owner, so its
/// close would go unseen; userspace attaches the release program to the
/// socket's cgroup ([`SockEvent::sock_cgroup`]), then records the owner
/// itself and looks again whether the socket is still there.
pub const FLAG_RELEASE_UNSEEN: u8 = 16;

/// One socket event (a listener opened or closed, or a connection),
/// written by a kernel program into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockEvent {
    /// `bpf_ktime_get_boot_ns()` at the transition.
    pub ts_ns: u64,
    /// The socket's identity, which pairs an open with its close: its
    /// cookie with [`FLAG_SOCK_COOKIE`], else the address of its
    /// `struct sock` (the classic tracepoint, which cannot ask for cookies).
    pub sock: u64,
    /// cgroup v2 id of the owner.
    pub cgroup_id: u64,
    /// Owner: process id (thread group id) that called `listen()`.
    pub tgid: u32,
    /// Owner's thread id.
    pub tid: u32,
    /// Owner's uid.
    pub uid: u32,
    /// For a close, the process that dropped the last reference; 0 for an open.
    pub closer_tgid: u32,
    /// Network namespace inode of the socket; 0 when unknown.
    pub netns: u32,
    /// A [`SockEventKind`] as `u8`.
    pub kind: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Local port in host byte order. Final when the listen confirmation
    /// reports the open; from the state change alone it is 0 when
    /// `listen()` ran without `bind()` (the kernel picks the port after).
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`, as `u8`.
    pub proto: u8,
    pub _pad: [u8; 5],
    /// Local address: the first 4 bytes for `AF_INET`, all 16 for `AF_INET6`.
    pub addr: [u8; 16],
    /// Owner's `comm`, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// Remote address (connection events only), laid out like `addr`.
    pub raddr: [u8; 16],
    /// Remote port, host order (connection events only).
    pub rport: u16,
    pub _pad2: [u8; 6],
    /// For a UDP bind: the cgroup v2 id of the socket, its creator's at
    /// socket(), whose release program array runs at its release (the
    /// binder's may differ); 0 when unknown or not a UDP bind.
    pub sock_cgroup: u64,
}

/// What the kernel remembers about a listening socket, keyed by its
/// identity (see [`SockEvent::sock`]), so that the close names the process
/// that opened it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pub cgroup_id: u64,
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
    pub netns: u32,
    /// 1 when the owner passed the process-tree filter (or no filter is set).
    pub watched: u32,
    /// Whether the open was reported (`LISTEN_*`): with the listen
    /// confirmation attached, an open waits for `listen()` to return.
    pub listening: u32,
    pub comm: [u8; COMM_LEN],
    /// The socket's family and local address, which `listen()` does not
    /// change: the confirmation reads only the final port.
    pub family: u16,
    pub _pad: [u8; 6],
    pub addr: [u8; 16],
}

/// Byte offsets of `struct sock` and `struct net` fields, from the running
/// kernel's BTF; handed to the kernel programs as a load-time global.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOffsets {
    pub skc_family: u32,
    /// Local port, host order. Zeroed before LISTEN->CLOSE of a socket whose
    /// port the kernel picked, so only used at the open.
    pub skc_num: u32,
    /// `inet_sock.inet_sport`, network order: still set at LISTEN->CLOSE.
    pub inet_sport: u32,
    pub skc_daddr: u32,
    pub skc_v6_daddr: u32,
    /// Remote port, network order.
    pub skc_dport: u32,
    pub skc_rcv_saddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub skc_net: u32,
    pub sk_protocol: u32,
    /// `sock.sk_uid`: the socket's owner, as sock_diag reports it.
    pub sk_uid: u32,
    pub net_ns_inum: u32,
    /// `task_struct.group_leader` and `task_struct.comm`: the process's
    /// name, not the calling thread's, as /proc/PID/stat shows it.
    pub task_group_leader: u32,
    pub task_comm: u32,
    /// `task_struct.nsproxy` and `nsproxy.net_ns`: the calling task's
    /// network namespace, for programs without a socket address.
    pub task_nsproxy: u32,
    pub nsproxy_net_ns: u32,
    /// `sock.sk_flags` (`skc_flags`), and the bit of `SOCK_RCU_FREE` in it: the kernel
    /// sets it when it hashes a listener, so only after `listen()` got
    /// its port.
    pub sk_flags: u32,
    pub sock_rcu_free: u32,
    /// `sock.sk_cgrp_data` (its `cgroup` pointer comes first),
    /// `cgroup.kn` and `kernfs_node.id`: the socket's cgroup id, which
    /// cgroup sock programs have no helper for. 0 when unknown.
    pub sk_cgrp_data: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// 1 when the offsets above come from BTF; 0 means unknown (no netns,
    /// and the tp_btf hook cannot be used).
    pub valid: u32,
}

impl SockOffsets {
    pub const UNKNOWN: Self = Self {
        skc_family: 0,
        skc_num: 0,
        inet_sport: 0,
        skc_daddr: 0,
        skc_v6_daddr: 0,
        skc_dport: 0,
        skc_rcv_saddr: 0,
        skc_v6_rcv_saddr: 0,
        skc_net: 0,
        sk_protocol: 0,
        sk_uid: 0,
        net_ns_inum: 0,
        task_group_leader: 0,
        task_comm: 0,
        task_nsproxy: 0,
        nsproxy_net_ns: 0,
        sk_flags: 0,
        sock_rcu_free: 0,
        sk_cgrp_data: 0,
        cgroup_kn: 0,
        kernfs_node_id: 0,
        valid: 0,
    };
}

/// Offsets in the `sched:sched_process_fork` and `sched_process_exit`
/// records, from their format files.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeOffsets {
    pub fork_child_pid: u32,
    /// Offset of `group_dead` in the exit record; `u32::MAX` when the kernel
    /// has no such field (then a main-thread exit ends the process).
    pub exit_group_dead: u32,
}

/// Byte offsets of the `sock:inet_sock_set_state` record fields, read by
/// userspace from the tracepoint's `format` file and handed to the kernel
/// program as a load-time global.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetStateOffsets {
    pub skaddr: u32,
    pub oldstate: u32,
    pub newstate: u32,
    pub sport: u32,
    pub family: u32,
    pub protocol: u32,
    pub saddr: u32,
    pub saddr_v6: u32,
}

impl SetStateOffsets {
    /// The layout of Linux 4.16 through at least 6.18 on 64-bit machines.
    /// Only a default for the global's initial value: userspace always
    /// overrides it with what the running kernel's format file says.
    pub const DEFAULT: Self = Self {
        skaddr: 8,
        oldstate: 16,
        newstate: 20,
        sport: 24,
        family: 28,
        protocol: 30,
        saddr: 32,
        saddr_v6: 40,
    };
}

/// Name of the ring buffer map.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU counter array, indexed by `COUNTER_*`.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Events lost because the ring buffer was full.
pub const COUNTER_RING_FULL: u32 = 0;
/// Listeners the owner map had no room for (their close names the closer).
pub const COUNTER_OWNERS_FULL: u32 = 1;
/// UDP binds the aggregate mode's tally had no room for (a process
/// neither in it nor addable: the tally is full).
pub const COUNTER_BINDS_FULL: u32 = 2;
/// Number of counters.
pub const COUNTER_SLOTS: u32 = 3;
/// Name of the socket -> owner map.
pub const OWNERS_MAP: &str = "OWNERS";
/// Name of the one-slot array that holds 1 while the listen confirmation
/// is attached: the state-change program then leaves opens to it.
pub const LISTEN_CONFIRM_MAP: &str = "LISTEN_CONFIRM";
/// Name of the map of cgroup ids (-> 1) that the UDP release program is
/// attached to; a bind in one of them records its owner in the kernel.
pub const RELEASE_CGROUPS_MAP: &str = "RELEASE_CGROUPS";
/// How many cgroups the release program is attached to, at most, before
/// it is attached at the root instead.
pub const RELEASE_CGROUPS_CAPACITY: u32 = 64;
/// Name of the one-slot array that holds 1 while the release program is
/// attached at the cgroup root: every bind records its owner.
pub const RELEASE_EVERYWHERE_MAP: &str = "RELEASE_EVERYWHERE";
/// [`Owner::listening`]: the open is reported (or a UDP socket's bind).
pub const LISTEN_CONFIRMED: u32 = 1;
/// The open waits for `listen()` to return, on a socket that never
/// listened before.
pub const LISTEN_PENDING: u32 = 0;
/// The same, on a socket that listened before (shut down, then listened
/// again): its `SOCK_RCU_FREE` says nothing of this `listen()`.
pub const LISTEN_PENDING_AGAIN: u32 = 2;
/// The open was sent unconfirmed (a `listen()` whose return no hook
/// sees): its close is always sent, saying whether it ever listened.
pub const LISTEN_UNCONFIRMED: u32 = 3;

/// Load-time global: [`ListenSyscall`].
pub const LISTEN_SYSCALL_GLOBAL: &str = "LISTEN_SYSCALL";

/// Where the native `listen()` syscall's handler (`__x64_sys_listen`)
/// lies in kernel text, from /proc/kallsyms: a LISTEN transition with a
/// return address in it on its kernel stack is inside that syscall, whose
/// exit the confirmation sees. Zero: unknown, every open unconfirmed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenSyscall {
    pub start: u64,
    pub end: u64,
    /// The syscall number the handler must have been called by, and
    /// where `struct pt_regs` keeps it (`orig_ax`; `u32::MAX`: unknown,
    /// not checked): x32's `listen()` runs the same handler, but no
    /// syscall tracepoint sees its exit.
    pub nr: u32,
    pub regs_nr: u32,
}
/// Name of the set of watched process ids (process-tree filter).
pub const WATCHED_MAP: &str = "WATCHED";
/// Capacity of the owner map: listening sockets tracked at once.
pub const OWNERS_CAPACITY: u32 = 65536;
/// Capacity of the map of `listen()` calls in progress, by thread.
pub const PENDING_CAPACITY: u32 = 4096;
/// Capacity of the watched-process set.
pub const WATCHED_CAPACITY: u32 = 65536;

/// Load-time global: [`SetStateOffsets`].
pub const OFFSETS_GLOBAL: &str = "SET_STATE_OFFSETS";
/// Load-time global: [`SockOffsets`].
pub const SOCK_OFFSETS_GLOBAL: &str = "SOCK_OFFSETS";
/// Load-time global: [`TreeOffsets`].
pub const TREE_OFFSETS_GLOBAL: &str = "TREE_OFFSETS";
/// Load-time global: `u32`, 1 when only processes in `WATCHED` are reported.
pub const FILTER_TREE_GLOBAL: &str = "FILTER_TREE";
/// Load-time global: `u64`, bytes waiting in the ring buffer that make
/// every UDP record wake the reader.
pub const WAKE_BYTES_GLOBAL: &str = "WAKE_BYTES";
/// Load-time global: `u32`, how much of their work the UDP programs do
/// (`UDP_STAGE_*`). Only the benchmark's decomposition sets it.
pub const UDP_STAGE_GLOBAL: &str = "UDP_STAGE";
/// The UDP programs do all their work: the default.
pub const UDP_STAGE_FULL: u32 = 0;
/// They return at once: the cost of being attached.
pub const UDP_STAGE_RETURN: u32 = 1;
/// They keep the owner of a bound socket and forget it at release, and
/// send nothing.
pub const UDP_STAGE_OWNER: u32 = 2;

/// Load-time global: [`UdpAggregate`].
pub const UDP_AGGREGATE_GLOBAL: &str = "UDP_AGGREGATE";
/// Name of the per-CPU tally of UDP binds by process and port class
/// (aggregate mode): [`UdpBindKey`] -> [`UdpBindTally`].
pub const UDP_BINDS_MAP: &str = "UDP_BINDS";
/// Capacity of that tally: processes that bound a UDP port since
/// userspace last forgot the exited ones.
pub const UDP_BINDS_CAPACITY: u32 = 8192;
/// Port classes of [`UdpBindKey::class`]: below 1024, in the ephemeral
/// range, anything else.
pub const UDP_CLASS_SYSTEM: u32 = 0;
pub const UDP_CLASS_EPHEMERAL: u32 = 1;
pub const UDP_CLASS_OTHER: u32 = 2;

/// The UDP aggregate mode, as the loader sets it: when `on`, a bind is
/// counted in `UDP_BINDS` instead of recorded and sent, and userspace
/// finds the sockets that live on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpAggregate {
    pub on: u32,
    /// The ephemeral port range, inclusive, as the loader read it.
    pub ephemeral_lo: u16,
    pub ephemeral_hi: u16,
}

/// Key of the UDP bind tally.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UdpBindKey {
    pub tgid: u32,
    /// `UDP_CLASS_*`.
    pub class: u32,
}

/// Value of the UDP bind tally, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpBindTally {
    /// Binds on this CPU since the entry was made.
    pub binds: u64,
    /// The process's `comm` when the entry was made: it may have exited
    /// by the time userspace reads the tally.
    pub comm: [u8; COMM_LEN],
}

/// The state-change program on the classic tracepoint.
pub const SET_STATE_PROG: &str = "inet_sock_set_state";
/// The same program on the BTF tracepoint (tp_btf).
pub const SET_STATE_BTF_PROG: &str = "inet_sock_set_state_btf";
/// The connection-event program (tp_btf), attached only while a rule
/// needs connection events.
pub const CONN_PROG: &str = "inet_sock_set_state_conn";
/// The listen confirmation: at `listen()`'s return (a syscall
/// tracepoint), reports an open once its outcome is known, with the final
/// port.
pub const LISTEN_EXIT_PROG: &str = "listen_exit";
/// The UDP programs (cgroup sock, at the cgroup v2 root): an explicit
/// bind() reported with its port, and the release of a socket reported.
pub const UDP_BIND4_PROG: &str = "udp_post_bind4";
pub const UDP_BIND6_PROG: &str = "udp_post_bind6";
pub const UDP_RELEASE_PROG: &str = "udp_sock_release";
/// Fork and exit programs for the process-tree filter.
pub const FORK_PROG: &str = "sched_process_fork";
pub const EXIT_PROG: &str = "sched_process_exit";

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are `#[repr(C)]` structs of integers and byte arrays with
    // explicit padding fields, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::SockEvent {}
    // SAFETY: as above, `#[repr(C)]` structs of integers and byte arrays
    // with explicit padding.
    unsafe impl aya::Pod for super::SetStateOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ListenSyscall {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TreeOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Owner {}
    // SAFETY: as above; none of the three has padding (sizes asserted below).
    unsafe impl aya::Pod for super::UdpAggregate {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UdpBindKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UdpBindTally {}
}

// The kernel program and userspace must agree on these sizes byte for byte.
const _: () = assert!(core::mem::size_of::<SockEvent>() == 120);
const _: () = assert!(core::mem::size_of::<Owner>() == 72);
const _: () = assert!(core::mem::size_of::<UdpAggregate>() == 8);
const _: () = assert!(core::mem::size_of::<UdpBindKey>() == 8);
const _: () = assert!(core::mem::size_of::<UdpBindTally>() == 24);
const _: () = assert!(core::mem::size_of::<SetStateOffsets>() == 32);
const _: () = assert!(core::mem::size_of::<SockOffsets>() == 88);
const _: () = assert!(core::mem::size_of::<TreeOffsets>() == 8);
