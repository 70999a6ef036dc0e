//! The listen transitions: remember the owner at LISTEN, name it at CLOSE.
//!
//! With the listen confirmation attached (`listen_confirm.rs`), the open is
//! reported from there, once `listen()` has returned and the port is
//! final; the state change records the owner and leaves the call pending
//! (or, for a call whose return no hook sees, sends the open unconfirmed).
//! Without it, the state change reports the open itself.

use aya_ebpf::{
    bindings::BPF_RB_AVAIL_DATA,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_task, bpf_get_current_task_btf,
            bpf_get_stack, bpf_ktime_get_boot_ns, bpf_task_pt_regs,
        },
    },
};
use portwatch_common::{
    AF_INET, COMM_LEN, COUNTER_OWNERS_FULL, COUNTER_RING_FULL, FLAG_NEVER_LISTENED,
    FLAG_OWNER_KNOWN, FLAG_UNCONFIRMED, IPPROTO_TCP, LISTEN_CONFIRMED, LISTEN_PENDING,
    LISTEN_PENDING_AGAIN, LISTEN_UNCONFIRMED, Owner, SockEvent, SockEventKind, SockOffsets,
    tcp_state,
};

use crate::maps::{
    EVENTS, FILTER_TREE, LISTEN_CONFIRM, LISTEN_SYSCALL, OWNERS, PENDING, Pending, SOCK_OFFSETS,
    STACK, STACK_DEPTH, WATCHED, count,
};

/// The fields of one state change, however the hook reads them.
pub trait Transition {
    /// Kernel address of the `struct sock`, for probe reads.
    fn skaddr(&self) -> u64;
    /// The socket's identity and the `FLAG_*` bit that says which kind.
    fn sock_id(&self) -> (u64, u8);
    fn protocol(&self) -> u16;
    fn family(&self) -> u16;
    fn port(&self) -> u16;
    /// Local address: 4 bytes for AF_INET, 16 for AF_INET6.
    fn addr(&self, family: u16) -> [u8; 16];
    /// Whether the kernel hashed the socket as a listener at some time
    /// (`SOCK_RCU_FREE`); false where the hook cannot tell.
    fn was_hashed(&self) -> bool {
        false
    }
    /// Whether this transition runs inside the native `listen()` syscall;
    /// false where the hook cannot tell.
    fn in_listen_syscall(&self) -> bool {
        false
    }
}

/// An address as the event carries it: the 4 bytes of an AF_INET address
/// at the front, or all 16 of any other family's.
#[inline(always)]
pub fn event_addr(
    family: u16,
    v4: impl FnOnce() -> [u8; 4],
    v6: impl FnOnce() -> [u8; 16],
) -> [u8; 16] {
    if family == AF_INET {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&v4());
        addr
    } else {
        v6()
    }
}

/// Which listen transition the TCP state change `old -> new` is: a
/// listener opened, a listener closed, or neither (every other change).
#[inline(always)]
pub fn listen_kind(old: i32, new: i32) -> Option<SockEventKind> {
    if old == tcp_state::CLOSE && new == tcp_state::LISTEN {
        Some(SockEventKind::Opened)
    } else if old == tcp_state::LISTEN && new == tcp_state::CLOSE {
        Some(SockEventKind::Closed)
    } else {
        None
    }
}

/// Whether the listen confirmation is attached and reports opens.
#[inline(always)]
fn confirm_attached() -> bool {
    LISTEN_CONFIRM.get(0).is_some_and(|on| *on != 0)
}

#[inline(always)]
pub fn handle(t: &impl Transition, kind: SockEventKind) {
    if t.protocol() != IPPROTO_TCP {
        return;
    }
    let (id, id_flag) = t.sock_id();
    let skaddr = t.skaddr();
    match kind {
        SockEventKind::Opened => {
            let pid_tgid = bpf_get_current_pid_tgid();
            let tid = pid_tgid as u32;
            let confirming = confirm_attached();
            // SAFETY: the value is only tested for presence.
            let watched = FILTER_TREE.load() == 0
                || unsafe { WATCHED.get((pid_tgid >> 32) as u32) }.is_some();
            // Only the native listen() syscall's return is seen: leave
            // the open pending for it. Any other call (io_uring, a 32-bit
            // syscall) is sent unconfirmed, as is one the pending map has
            // no room for: userspace checks the socket tables.
            let pending = confirming
                && t.in_listen_syscall()
                && PENDING
                    .insert(
                        &tid,
                        &Pending {
                            sk: skaddr,
                            cookie: id,
                        },
                        0,
                    )
                    .is_ok();
            if pending && watched {
                wake_reader_early();
            }
            let mut owner = current_owner(skaddr);
            owner.family = t.family();
            owner.addr = t.addr(owner.family);
            owner.listening = if !confirming {
                LISTEN_CONFIRMED
            } else if !pending {
                LISTEN_UNCONFIRMED
            } else if t.was_hashed() {
                LISTEN_PENDING_AGAIN
            } else {
                LISTEN_PENDING
            };
            owner.watched = watched as u32;
            // Without a remembered owner the confirmation finds nothing
            // (and takes the call for a failed one): send it now.
            let remembered = OWNERS.insert(id, owner, 0).is_ok();
            if !remembered {
                count(COUNTER_OWNERS_FULL);
            }
            if watched && (!pending || !remembered) {
                let unconfirmed = if confirming { FLAG_UNCONFIRMED } else { 0 };
                emit(t, kind, &owner, 0, FLAG_OWNER_KNOWN | id_flag | unconfirmed);
            }
        }
        SockEventKind::Closed => {
            let pid_tgid = bpf_get_current_pid_tgid();
            let closer = (pid_tgid >> 32) as u32;
            // With the confirmation on, a close says when the socket never
            // listened (its listen() failed): userspace then reports
            // nothing, even of an open it was sent unconfirmed.
            let never = if confirm_attached() && !t.was_hashed() {
                FLAG_NEVER_LISTENED
            } else {
                0
            };
            // SAFETY: the entry is copied out before it is removed.
            match unsafe { OWNERS.get(id) }.copied() {
                Some(owner) => {
                    // Always forget the key: socket addresses are reused.
                    let _ = OWNERS.remove(id);
                    if !watched_now(&owner) {
                        return;
                    }
                    match owner.listening {
                        LISTEN_CONFIRMED => {}
                        // Sent unconfirmed: userspace holds the open until
                        // the tables show it, or this close settles it.
                        LISTEN_UNCONFIRMED => {}
                        // Closed before the confirmation ran: a listen()
                        // that failed, or a listener closed at once by
                        // another thread.
                        _ if !listened(t, &owner, pid_tgid as u32) => return,
                        _ => emit(
                            t,
                            SockEventKind::Opened,
                            &owner,
                            0,
                            FLAG_OWNER_KNOWN | id_flag,
                        ),
                    }
                    emit(t, kind, &owner, closer, FLAG_OWNER_KNOWN | id_flag | never);
                }
                // Opened before portwatch started (or the map was full):
                // userspace matches it against its baseline.
                None => emit(t, kind, &current_owner(skaddr), closer, id_flag | never),
            }
        }
        // Connection kinds come from the connection program only.
        SockEventKind::Connect | SockEventKind::Accept => {}
    }
}

/// Whether the program with context `ctx` runs inside the native
/// `listen()` syscall, whose exit the confirmation sees: a return address
/// in its handler on the kernel stack. Nothing a process controls can put
/// one there: an io_uring listen, a 32-bit syscall, an io-wq worker or
/// task work run at some syscall's exit have other frames (false: the
/// safe side, the open is sent unconfirmed).
#[inline(always)]
pub fn stack_in_listen_syscall(ctx: *mut core::ffi::c_void) -> bool {
    let range = LISTEN_SYSCALL.load();
    if range.start == 0 {
        return false;
    }
    let Some(stack) = STACK.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: the helper writes at most the buffer's size into this CPU's
    // slot of the scratch map, from a successful lookup; the context is
    // this program's own.
    let bytes = unsafe {
        bpf_get_stack(
            ctx,
            stack.cast(),
            core::mem::size_of::<[u64; STACK_DEPTH]>() as u32,
            0,
        )
    };
    let frames = if bytes > 0 { bytes as usize / 8 } else { 0 };
    // SAFETY: reads of the scratch slot the helper just filled.
    let stack = unsafe { &*stack };
    let mut i = 0;
    while i < STACK_DEPTH {
        if i < frames && (range.start..range.end).contains(&stack[i]) {
            // Inside the handler, the saved syscall number is this call's:
            // x32's listen() (the number with bit 30 set) runs the same
            // handler, but no syscall tracepoint sees it return.
            return range.regs_nr == u32::MAX || called_as(range.nr, range.regs_nr);
        }
        i += 1;
    }
    false
}

/// Whether the current task's saved syscall number is `nr`.
#[inline(always)]
fn called_as(nr: u32, regs_nr: u32) -> bool {
    // SAFETY: the helper returns the current task's saved user registers;
    // the field is read by a probe read at a BTF-derived offset, and a
    // failed read counts as "not" (the safe side).
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf().cast()) as u64;
        bpf_probe_read_kernel((regs + u64::from(regs_nr)) as *const u64)
            .is_ok_and(|saved| saved == u64::from(nr))
    }
}

/// Whether a socket closed while its open was pending had listened: the
/// kernel hashes a listener, setting `SOCK_RCU_FREE`, only once
/// `listen()` got its port, and a failed `listen()` closes it before. On
/// a socket that listened before, that says nothing: there, a close in
/// the calling thread itself is the failure's.
#[inline(always)]
fn listened(t: &impl Transition, owner: &Owner, tid: u32) -> bool {
    match owner.listening {
        LISTEN_PENDING_AGAIN => tid != owner.tid,
        _ => t.was_hashed(),
    }
}

/// Whether the owner is in the watched tree: as it was at the open, or
/// since. Userspace seeds the tree after the programs are attached, so a
/// listener opened meanwhile is watched by the time it closes.
#[inline(always)]
pub fn watched_now(owner: &Owner) -> bool {
    // SAFETY: the value is only tested for presence.
    owner.watched != 0 || unsafe { WATCHED.get(owner.tgid) }.is_some()
}

/// The calling process as the owner of a socket whose `struct net` is at
/// `sock_net` (0: unknown), for cgroup sock programs, which have no typed
/// socket: with BTF offsets, the process's name (its thread group
/// leader's) read through the task's BTF pointer, plain loads the verifier
/// checks against the kernel's types (the offsets are load-time
/// constants), about 120 ns cheaper per bind than five
/// `bpf_probe_read_kernel` calls. The namespace is the socket's: the
/// task's inode when the task is still in it, else one more probe read
/// (the binder left it since socket(), which unshare(2) allows anyone
/// inside a user namespace).
#[inline(always)]
pub fn current_task_owner(sock_net: u64) -> Owner {
    let mut owner = task_owner();
    let off = SOCK_OFFSETS.load();
    if off.valid != 0 {
        // SAFETY: loads through the task's BTF pointer at offsets from the
        // kernel's BTF, which the verifier checks against its types; it
        // turns them into loads that read 0 instead of faulting.
        unsafe {
            let task = bpf_get_current_task_btf() as *const u8;
            let nsproxy = *(task.add(off.task_nsproxy as usize) as *const *const u8);
            if !nsproxy.is_null() {
                let net = *(nsproxy.add(off.nsproxy_net_ns as usize) as *const *const u8);
                // An unreadable socket (0) keeps the task's namespace,
                // right but for a binder that moved.
                if !net.is_null() && (sock_net == 0 || net as u64 == sock_net) {
                    owner.netns = *(net.add(off.net_ns_inum as usize) as *const u32);
                }
            }
            if owner.netns == 0 && sock_net != 0 {
                owner.netns =
                    bpf_probe_read_kernel((sock_net + off.net_ns_inum as u64) as *const u32)
                        .unwrap_or(0);
            }
            let leader = *(task.add(off.task_group_leader as usize) as *const *const u8);
            if !leader.is_null() {
                owner.comm = *(leader.add(off.task_comm as usize) as *const [u8; COMM_LEN]);
            }
        }
    }
    owner
}

/// The fields every program can read of the calling task.
#[inline(always)]
fn task_owner() -> Owner {
    let pid_tgid = bpf_get_current_pid_tgid();
    Owner {
        // SAFETY: a helper without arguments, valid in tracing and cgroup
        // sock programs.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        netns: 0,
        watched: 1,
        listening: 0,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        family: 0,
        _pad: [0; 6],
        addr: [0; 16],
    }
}

/// The process's name (its thread group leader's) in place of the
/// calling thread's, as /proc/PID/stat shows it.
#[inline(always)]
fn leader_comm(owner: &mut Owner, off: &SockOffsets) {
    // SAFETY: probe reads at BTF-derived offsets; a failed read keeps the
    // thread's name.
    unsafe {
        let task = bpf_get_current_task();
        if let Ok(leader) =
            bpf_probe_read_kernel((task + off.task_group_leader as u64) as *const u64)
            && let Ok(comm) =
                bpf_probe_read_kernel((leader + off.task_comm as u64) as *const [u8; COMM_LEN])
        {
            owner.comm = comm;
        }
    }
}

/// The calling process as the owner of socket `skaddr`. With BTF offsets,
/// the name is the process's (its thread group leader's), the uid the
/// socket's and the namespace the socket's, as a scan of /proc and
/// sock_diag reports them; without, the calling thread's name and uid.
#[inline(always)]
pub fn current_owner(skaddr: u64) -> Owner {
    let off = SOCK_OFFSETS.load();
    let mut owner = task_owner();
    if off.valid != 0 {
        owner.netns = netns_of(skaddr, &off);
        // SAFETY: a probe read at a BTF-derived offset; a failed read keeps
        // the calling thread's uid.
        if let Ok(uid) =
            unsafe { bpf_probe_read_kernel((skaddr + off.sk_uid as u64) as *const u32) }
        {
            owner.uid = uid;
        }
        leader_comm(&mut owner, &off);
    }
    owner
}

/// `sk->__sk_common.skc_net.net->ns.inum`, or 0 if unreadable.
#[inline(always)]
pub fn netns_of(skaddr: u64, off: &SockOffsets) -> u32 {
    // SAFETY: probe reads of kernel memory at BTF-derived offsets; a
    // failed read returns an error, mapped to "unknown".
    unsafe {
        let Ok(net) = bpf_probe_read_kernel((skaddr + off.skc_net as u64) as *const u64) else {
            return 0;
        };
        bpf_probe_read_kernel((net + off.net_ns_inum as u64) as *const u32).unwrap_or(0)
    }
}

#[inline(always)]
fn emit(t: &impl Transition, kind: SockEventKind, owner: &Owner, closer: u32, flags: u8) {
    let family = t.family();
    let (id, _) = t.sock_id();
    let mut ev = new_event(kind, id, owner, family, t.port(), t.addr(family));
    ev.closer_tgid = closer;
    ev.flags = flags;
    submit(&ev);
}

/// An event with its owner's fields and no peer, TCP unless the caller
/// says otherwise; callers set the rest.
#[inline(always)]
pub fn new_event(
    kind: SockEventKind,
    sock: u64,
    owner: &Owner,
    family: u16,
    port: u16,
    addr: [u8; 16],
) -> SockEvent {
    SockEvent {
        // SAFETY: a helper without arguments, valid in tracing programs.
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        sock,
        cgroup_id: owner.cgroup_id,
        tgid: owner.tgid,
        tid: owner.tid,
        uid: owner.uid,
        closer_tgid: 0,
        netns: owner.netns,
        kind: kind as u8,
        flags: 0,
        family,
        port,
        proto: IPPROTO_TCP as u8,
        _pad: [0; 5],
        addr,
        comm: owner.comm,
        raddr: [0; 16],
        rport: 0,
        _pad2: [0; 6],
        sock_cgroup: 0,
    }
}

/// Starts the reader's wake-up while `listen()` still runs, before the
/// confirmation sends the open at its return: the ring wakes the reader
/// through an interrupt the kernel raises after a record, which took
/// about 10 us to arrive on the virtual machines measured (BENCHMARKS.md,
/// "Where the latency goes"); this way it overlaps the rest of the call.
/// An empty record, which userspace reads and skips, sent only when the
/// reader has read everything: a reader with records waiting is awake or
/// being woken, and a flood of listens puts no extra bytes in the ring.
/// A full ring just does not take it: it carries nothing.
#[inline(always)]
fn wake_reader_early() {
    if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) == 0
        && let Some(entry) = EVENTS.reserve_bytes(0, 0)
    {
        entry.submit(0);
    }
}

/// Copies an event into the ring buffer with the kernel's default
/// wake-up, or counts it lost when full.
#[inline(always)]
pub fn submit(ev: &SockEvent) {
    submit_with(ev, 0);
}

/// [`submit`] with the ring buffer's `BPF_RB_*` wake-up flags; false
/// when the ring was full.
#[inline(always)]
pub fn submit_with(ev: &SockEvent, flags: u64) -> bool {
    if EVENTS.output::<SockEvent>(ev, flags).is_err() {
        count(COUNTER_RING_FULL);
        return false;
    }
    true
}
