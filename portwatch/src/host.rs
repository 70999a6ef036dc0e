//! What portwatch reads about this host beyond sockets, for the details
//! it shows (processes, user names), and the one thing it does to it:
//! send a signal, to the process a user confirmed and no other.

use crate::{
    error::{Error, Result},
    process::{ProcessBrief, ProcessInfo},
    sys::{
        procinfo::{self, Pinned},
        users::Users,
    },
};

/// A process's details; None when it is gone.
pub fn inspect_process(pid: u32) -> Option<ProcessInfo> {
    procinfo::read(pid)
}

/// Where a process comes from: executable, command line, ancestry.
pub fn describe_process(pid: u32) -> Option<ProcessBrief> {
    procinfo::brief(pid)
}

/// User names for uids, looked up once each.
#[derive(Default)]
pub struct UserNames(Users);

impl UserNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// The name of `uid`, or the number when it has none.
    pub fn name(&mut self, uid: u32) -> String {
        self.0.name(uid)
    }
}

/// The user who owns the TCP connection from `peer` to `local` on this
/// host (both ends here, as on loopback): what bounds a server's clients
/// per user where every local user shares one address. None when unknown.
pub fn local_peer_uid(peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<u32> {
    crate::sys::sock_diag::tcp_owner(peer, local).ok().flatten()
}

/// A process pinned (by a pidfd) when a user is asked to confirm a
/// signal: if it exits meanwhile and its pid is reused, the signal is
/// refused instead of reaching the newcomer.
#[derive(Debug)]
pub struct KillTarget(Pinned);

impl KillTarget {
    /// Pins `pid`. Refuses pid 1 and portwatch itself.
    pub fn pin(pid: u32) -> Result<Self> {
        Pinned::new(pid).map(Self)
    }

    /// Pins `pid`, then checks that it still holds the socket of `proto`
    /// bound to `local` in namespace `netns` (a descriptor of it in its fd
    /// table): the row a user acts on may name a pid that exited (a child
    /// kept the socket) and was reused by an unrelated process since.
    pub fn pin_holding(
        pid: u32,
        proto: crate::Proto,
        local: std::net::SocketAddr,
        netns: u64,
    ) -> Result<Self> {
        let pinned = Pinned::new(pid)?;
        let holders = crate::sys::procfs_scan::socket_holders(pid, proto, local, netns)?;
        // Read after pinning: if the process is still alive now, the fd
        // table read was its own (its pid cannot have been reused).
        if !pinned.alive() {
            return Err(Error::ProcessExited(pid));
        }
        match holders {
            None => Err(Error::Refused(format!(
                "{proto} {local} is no longer open: nothing to signal"
            ))),
            Some(h) if h.held => Ok(Self(pinned)),
            Some(h) => {
                let holder = h.holder;
                let now = match holder {
                    Some((hpid, comm)) => format!(
                        "; process {hpid} ({}) holds it now",
                        crate::safe_text::safe_str(&comm)
                    ),
                    None => String::new(),
                };
                Err(Error::Refused(format!(
                    "process {pid} does not hold {proto} {local} (it may have exited and its pid been reused){now}: not signalled"
                )))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    /// SIGTERM, or SIGKILL with `kill`.
    pub fn signal(&self, kill: bool) -> Result<()> {
        self.0.signal(kill)
    }
}

pub use crate::sys::prog_stats::ProgramStats;

/// The kernel's run counters of this process's own BPF programs (zero
/// unless `kernel.bpf_stats_enabled` is 1).
pub fn own_program_stats() -> Vec<ProgramStats> {
    crate::sys::prog_stats::own_programs()
}

/// This process's CPU time in seconds and resident memory in bytes.
pub fn own_usage() -> Option<(f64, u64)> {
    let reader = crate::sys::usage::UsageReader::new();
    let u = reader.read(std::process::id())?;
    Some((
        u.cpu_ticks as f64 / reader.ticks_per_second() as f64,
        u.rss_bytes,
    ))
}

/// What `portwatch doctor` checks, read from this host.
pub fn doctor_facts() -> crate::facts::Facts {
    crate::sys::facts::read()
}
