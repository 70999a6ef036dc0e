//! Types shared by the portwatch eBPF programs and userspace.
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into
//! the ring buffer or reads it from load-time globals, userspace reads the
//! same bytes back. Field order keeps every struct free of implicit padding so
//! both sides agree on the layout without guessing.
#![no_std]

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`).
pub mod tcp_state {
    pub const CLOSE: i32 = 7;
    pub const LISTEN: i32 = 10;
}

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;

/// What happened to a listening socket.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenKind {
    /// CLOSE -> LISTEN: `listen()` put the socket into the listening state.
    Opened = 1,
    /// LISTEN -> CLOSE: the last reference to a listening socket was dropped.
    Closed = 2,
}

impl ListenKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Opened),
            2 => Some(Self::Closed),
            _ => None,
        }
    }
}

/// One listen transition, written by the kernel program into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ListenEvent {
    /// `bpf_ktime_get_boot_ns()` at the transition.
    pub ts_ns: u64,
    /// Kernel address of the `struct sock`: pairs an open with its close.
    pub skaddr: u64,
    /// cgroup v2 id of the task that caused the transition.
    pub cgroup_id: u64,
    /// Process id (thread group id) of the task that caused the transition.
    pub tgid: u32,
    /// Thread id of that task.
    pub tid: u32,
    pub uid: u32,
    /// A [`ListenKind`] as `u8`.
    pub kind: u8,
    pub _pad: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Local port in host byte order; 0 when `listen()` ran without `bind()`
    /// (the kernel picks the port only after the tracepoint fires).
    pub port: u16,
    pub _pad2: [u8; 6],
    /// Local address: the first 4 bytes for `AF_INET`, all 16 for `AF_INET6`.
    pub addr: [u8; 16],
    /// `comm` of the task, NUL padded.
    pub comm: [u8; COMM_LEN],
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
/// Name of the per-CPU counter array of failed ring buffer reserves.
pub const DROPS_MAP: &str = "DROPS";
/// Name of the load-time global holding [`SetStateOffsets`].
pub const OFFSETS_GLOBAL: &str = "SET_STATE_OFFSETS";
/// Name of the state-change program.
pub const SET_STATE_PROG: &str = "inet_sock_set_state";

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are `#[repr(C)]` structs of integers and byte arrays with
    // explicit padding fields, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::ListenEvent {}
    // SAFETY: as above, a `#[repr(C)]` struct of `u32`s.
    unsafe impl aya::Pod for super::SetStateOffsets {}
}

// The kernel program and userspace must agree on these sizes byte for byte.
const _: () = assert!(core::mem::size_of::<ListenEvent>() == 80);
const _: () = assert!(core::mem::size_of::<SetStateOffsets>() == 32);
