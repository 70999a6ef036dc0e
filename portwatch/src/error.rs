//! The library's error type: one variant per thing a user can act on.

use std::{io, path::PathBuf};

/// Everything that can stop portwatch from watching.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "portwatch needs root (or the CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN capabilities) to load its eBPF programs: run it with sudo"
    )]
    NotPermitted,

    #[error(
        "tracefs is not mounted and mounting it at {path} failed ({source}): mount it as root with `mount -t tracefs nodev {path}`"
    )]
    TracefsMount { path: PathBuf, source: io::Error },

    #[error("cannot read the tracepoint format file {path}: {source}")]
    TracepointFormat { path: PathBuf, source: io::Error },

    #[error("the tracepoint format file {path} has no usable field `{field}`")]
    TracepointField { path: PathBuf, field: &'static str },

    #[error("the kernel has no usable BTF at /sys/kernel/btf/vmlinux, which the tp_btf hook needs")]
    NoBtf,

    #[error("no process with pid {0} exists")]
    NoSuchProcess(u32),

    #[error("{tid} is a thread of process {tgid}, not a process: watch {tgid} instead")]
    NotAProcess { tid: u32, tgid: u32 },

    #[error("no network namespace with inode {0} exists on this host")]
    NoSuchNetns(u64),

    #[error("{0}")]
    Refused(String),

    #[error("process {0} has exited; its pid is not signalled again")]
    ProcessExited(u32),

    #[error("{0} must be longer than 0")]
    ZeroInterval(&'static str),

    #[error(
        "watching UDP with eBPF needs the root of the cgroup v2 hierarchy mounted (at /sys/fs/cgroup or /sys/fs/cgroup/unified), and none is"
    )]
    UdpNeedsCgroup2,

    #[error(
        "--udp-aggregate needs events that name sockets by cookie: kernel BTF (/sys/kernel/btf/vmlinux) and the tp_btf hook, not --hook tracepoint"
    )]
    UdpAggregateNeedsBtf,

    #[error("connection events need the eBPF backend")]
    ConnectionsNeedEbpf,

    #[error("connection events need kernel BTF (/sys/kernel/btf/vmlinux), which this kernel lacks")]
    ConnectionsNeedBtf,

    #[error("the kernel refused the eBPF programs: {0}")]
    Load(#[source] Box<aya::EbpfError>),

    #[error("the eBPF object lacks {0}")]
    MissingObject(&'static str),

    #[error("cannot {action}: {source}")]
    Program {
        action: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error("cannot use the eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("invalid ring buffer size {0}: it must be a power of two of at least 4096 bytes")]
    RingBufferSize(u64),

    #[error(
        "invalid PORTWATCH_BENCH_UDP_STAGE {0:?}: it is one of return, owner, ring (a benchmark's setting)"
    )]
    BenchUdpStage(String),

    #[error("cannot read {what} from /proc: {source}")]
    Procfs {
        what: &'static str,
        #[source]
        source: procfs::ProcError,
    },

    #[error("the event socket {path}: {why}")]
    Socket { path: PathBuf, why: String },

    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot connect to the portwatch daemon at {path} ({source}): is it serving its event socket there, and are you in the socket's group?"
    )]
    DaemonUnreachable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The daemon's own sentence, made safe.
    #[error("the portwatch daemon at {path} refused: {message}")]
    DaemonRefused { path: PathBuf, message: String },

    #[error("the portwatch daemon at {path}: {why}")]
    DaemonConnection { path: PathBuf, why: String },
}

impl Error {
    /// Maps a kernel refusal caused by missing privileges to [`Error::NotPermitted`],
    /// so the user reads how to fix it instead of an errno deep in a chain.
    pub(crate) fn or_not_permitted(self) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&self);
        while let Some(err) = cause {
            // std maps both EPERM and EACCES to PermissionDenied.
            if let Some(io) = err.downcast_ref::<io::Error>()
                && io.kind() == io::ErrorKind::PermissionDenied
            {
                return Error::NotPermitted;
            }
            cause = err.source();
        }
        self
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
