//! Maps and load-time globals shared by the programs.

use aya_ebpf::{
    Global,
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use portwatch_common::{
    COUNTER_SLOTS, ListenSyscall, OWNERS_CAPACITY, Owner, PENDING_CAPACITY,
    RELEASE_CGROUPS_CAPACITY, SetStateOffsets, SockOffsets, TreeOffsets, UDP_BINDS_CAPACITY,
    UDP_STAGE_FULL, UdpAggregate, UdpBindKey, UdpBindTally, WATCHED_CAPACITY,
};

/// Listen events for userspace. The size here is a default that the loader
/// always overrides with `--ring-buffer`.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Per-CPU counters of lost work, indexed by `COUNTER_*`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Slot 0 is 1 while the listen confirmation is attached (userspace sets
/// it): the state-change program then leaves opens to it.
#[map]
pub static LISTEN_CONFIRM: Array<u32> = Array::with_max_entries(1, 0);

/// The cgroups (by id) the UDP release program is attached to, which
/// userspace fills; slot 0 of `RELEASE_EVERYWHERE` is 1 while it is
/// attached at the root. A bind elsewhere records no owner (its release
/// would never remove it) and says so to userspace.
#[map]
pub static RELEASE_CGROUPS: HashMap<u64, u32> =
    HashMap::with_max_entries(RELEASE_CGROUPS_CAPACITY, 0);
#[map]
pub static RELEASE_EVERYWHERE: Array<u32> = Array::with_max_entries(1, 0);

/// A `listen()` in progress: the socket whose open waits for the call to
/// return, under the calling thread's id.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    pub sk: u64,
    pub cookie: u64,
}

/// Thread id -> its `listen()` syscall in progress. An entry lives from
/// the LISTEN transition to the call's return; LRU, so that no entry can
/// stay for good.
#[map]
pub static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(PENDING_CAPACITY, 0);

/// Per CPU, room for a LISTEN transition's kernel stack (see
/// `listen::stack_in_listen_syscall`): more than the BPF stack can spare.
#[map]
pub static STACK: PerCpuArray<[u64; STACK_DEPTH]> = PerCpuArray::with_max_entries(1, 0);

/// Return addresses read of a LISTEN transition's kernel stack: the
/// syscall handler sits about ten frames down (bpf, tracepoint,
/// inet_csk_listen_start, inet_listen, __sys_listen, __x64_sys_listen).
pub const STACK_DEPTH: usize = 16;

/// Socket identity -> the process that called `listen()` on it.
/// Not preallocated: a host has far fewer listeners than the capacity.
#[map]
pub static OWNERS: HashMap<u64, Owner> =
    HashMap::with_max_entries(OWNERS_CAPACITY, BPF_F_NO_PREALLOC);

/// Per CPU, the boot time of the last UDP record that woke the ring's
/// reader (see `udp::submit`).
#[map]
pub static LAST_WAKE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Process ids inside a watched process tree (filter on), each with the
/// root pid it was seeded or forked under: userspace removes a root's
/// whole tree by that label, re-parented daemons included.
#[map]
pub static WATCHED: HashMap<u32, u32> = HashMap::with_max_entries(WATCHED_CAPACITY, 0);

/// Record field offsets from the tracepoint's format file.
#[unsafe(no_mangle)]
pub static SET_STATE_OFFSETS: Global<SetStateOffsets> = Global::new(SetStateOffsets::DEFAULT);

/// `struct sock` / `struct net` offsets from the kernel's BTF.
#[unsafe(no_mangle)]
pub static SOCK_OFFSETS: Global<SockOffsets> = Global::new(SockOffsets::UNKNOWN);

/// Fork/exit record offsets from their format files.
#[unsafe(no_mangle)]
pub static TREE_OFFSETS: Global<TreeOffsets> = Global::new(TreeOffsets {
    fork_child_pid: 20,
    exit_group_dead: u32::MAX,
});

/// 1 when only processes in `WATCHED` are reported.
#[unsafe(no_mangle)]
pub static FILTER_TREE: Global<u32> = Global::new(0);

/// Where the native `listen()` syscall's handler lies in kernel text.
#[unsafe(no_mangle)]
pub static LISTEN_SYSCALL: Global<ListenSyscall> = Global::new(ListenSyscall {
    start: 0,
    end: 0,
    nr: 0,
    regs_nr: u32::MAX,
});

/// Bytes waiting in the ring that make a UDP record wake the reader
/// whenever it comes: a quarter of the ring (the loader sets it).
#[unsafe(no_mangle)]
pub static WAKE_BYTES: Global<u64> = Global::new(256 * 1024);

/// How much of their work the UDP programs do (`UDP_STAGE_*`): all of it
/// unless the benchmark measures the stages one by one.
#[unsafe(no_mangle)]
pub static UDP_STAGE: Global<u32> = Global::new(UDP_STAGE_FULL);

/// The UDP aggregate mode's tally of binds by process and port class,
/// per CPU: a bind adds one to its CPU's count without a lock. Not
/// preallocated: an entry is made once per process.
#[map]
pub static UDP_BINDS: PerCpuHashMap<UdpBindKey, UdpBindTally> =
    PerCpuHashMap::with_max_entries(UDP_BINDS_CAPACITY, BPF_F_NO_PREALLOC);

/// Whether UDP binds are tallied instead of sent (`--udp-aggregate`), and
/// the ephemeral range that classes their ports.
#[unsafe(no_mangle)]
pub static UDP_AGGREGATE: Global<UdpAggregate> = Global::new(UdpAggregate {
    on: 0,
    ephemeral_lo: 32768,
    ephemeral_hi: 60999,
});

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(counter) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, and
        // the pointer comes from a successful map lookup.
        unsafe { *counter += 1 };
    }
}
