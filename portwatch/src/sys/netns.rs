//! Network namespaces: which exist, and a way into each. Most are found
//! through their processes (`/proc/PID/ns/net`), some through `ip netns`
//! bind mounts, and a namespace no process is in through a socket of it
//! that a process elsewhere holds (SIOCGSKNS on a duplicate of its fd).

use std::{
    collections::HashMap,
    fs::File,
    os::{
        fd::{AsFd, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::PathBuf,
};

use rustix::{
    ioctl::{Ioctl, IoctlOutput, Opcode},
    process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open},
};

use crate::event::Proto;

/// The network namespace inode of a process (`/proc/PID/ns/net`).
pub(crate) fn of_process(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// A way into a namespace.
#[derive(Debug)]
enum Handle {
    /// Through a process in it (which may exit: the next one is tried).
    Process(u32),
    /// A bind mount (`/run/netns/NAME`).
    Path(PathBuf),
    /// A namespace file descriptor (from SIOCGSKNS).
    Fd(OwnedFd),
}

/// An open namespace, ready to enter.
pub(crate) enum Entered<'a> {
    /// portwatch's own: no need to enter.
    Own,
    Fd(BorrowedFd<'a>),
    File(File),
}

impl Entered<'_> {
    /// The namespace's fd, or None for portwatch's own.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Entered::Own => None,
            Entered::Fd(fd) => Some(*fd),
            Entered::File(f) => Some(f.as_fd()),
        }
    }
}

/// Every network namespace found so far, by inode.
#[derive(Debug, Default)]
pub(crate) struct Namespaces {
    own: Option<u64>,
    handles: HashMap<u64, Vec<Handle>>,
}

impl Namespaces {
    /// The namespaces of `processes` ((pid, netns) pairs) and of `ip netns`.
    pub(crate) fn new(processes: &[(u32, Option<u64>)]) -> Self {
        let mut spaces = Self::from_processes(processes);
        for (ino, path) in named() {
            spaces
                .handles
                .entry(ino)
                .or_default()
                .push(Handle::Path(path));
        }
        spaces
    }

    /// The namespaces of `processes` alone.
    pub(crate) fn from_processes(processes: &[(u32, Option<u64>)]) -> Self {
        let mut spaces = Self {
            own: of_process(std::process::id()),
            handles: HashMap::new(),
        };
        spaces.add_processes(processes);
        spaces
    }

    pub(crate) fn add_processes(&mut self, processes: &[(u32, Option<u64>)]) {
        for &(pid, ns) in processes {
            if let Some(ns) = ns {
                self.handles
                    .entry(ns)
                    .or_default()
                    .push(Handle::Process(pid));
            }
        }
    }

    /// Adds a namespace known by an fd; returns false (and closes the fd)
    /// if it was known.
    pub(crate) fn add_fd(&mut self, ino: u64, fd: OwnedFd) -> bool {
        if self.contains(ino) {
            return false;
        }
        self.handles.entry(ino).or_default().push(Handle::Fd(fd));
        true
    }

    pub(crate) fn contains(&self, ino: u64) -> bool {
        self.own == Some(ino) || self.handles.contains_key(&ino)
    }

    pub(crate) fn inodes(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.handles.keys().copied().collect();
        all.extend(self.own.filter(|o| !self.handles.contains_key(o)));
        all
    }

    /// The processes known to be in namespace `ino`.
    pub(crate) fn processes(&self, ino: u64) -> impl Iterator<Item = u32> + '_ {
        self.handles
            .get(&ino)
            .into_iter()
            .flatten()
            .filter_map(|h| match h {
                Handle::Process(pid) => Some(*pid),
                _ => None,
            })
    }

    /// Calls `read` inside namespace `ino` through each of its handles in
    /// turn until one works (a process may have exited meanwhile).
    pub(crate) fn with<T>(
        &self,
        ino: u64,
        mut read: impl FnMut(Entered<'_>) -> Option<T>,
    ) -> Option<T> {
        if self.own == Some(ino)
            && let Some(v) = read(Entered::Own)
        {
            return Some(v);
        }
        for h in self.handles.get(&ino).into_iter().flatten() {
            let entered = match h {
                Handle::Process(pid) => match File::open(format!("/proc/{pid}/ns/net")) {
                    // The same namespace still? A pid can be reused.
                    Ok(f) if f.metadata().is_ok_and(|m| m.ino() == ino) => Entered::File(f),
                    _ => continue,
                },
                Handle::Path(p) => match File::open(p) {
                    Ok(f) => Entered::File(f),
                    Err(_) => continue,
                },
                Handle::Fd(fd) => Entered::Fd(fd.as_fd()),
            };
            if let Some(v) = read(entered) {
                return Some(v);
            }
        }
        None
    }
}

/// Namespaces that `ip netns add` bind-mounted under /run/netns.
fn named() -> Vec<(u64, PathBuf)> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let path = e.path();
            let meta = std::fs::metadata(&path).ok()?;
            // A bind-mounted namespace is an nsfs file; a file that is not
            // mounted over is a regular empty file of the tmpfs.
            (meta.dev() != std::fs::metadata("/run/netns").ok()?.dev())
                .then_some((meta.ino(), path))
        })
        .collect()
}

/// The transport protocol of socket `fd` of process `pid`, from its
/// sockfs `system.sockprotoname` attribute; None for other sockets (Unix,
/// netlink, ...) or when it cannot be read.
pub(crate) fn socket_proto(pid: u32, fd: u32) -> Option<Proto> {
    let mut buf = [0u8; 32];
    let n = rustix::fs::getxattr(
        format!("/proc/{pid}/fd/{fd}"),
        "system.sockprotoname",
        &mut buf,
    )
    .ok()?;
    let name = buf.get(..n)?;
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    match name {
        b"TCP" | b"TCPv6" => Some(Proto::Tcp),
        b"UDP" | b"UDPv6" => Some(Proto::Udp),
        _ => None,
    }
}

/// The network namespace of socket `fd` of process `pid`, which a walk
/// of its descriptors saw as socket `inode`: its inode and an fd to enter
/// it. None when that descriptor no longer is that socket (closed and
/// reused, or the pid another process's by now). Needs Linux 5.6
/// (pidfd_getfd) and the right to ptrace `pid` (root has it).
pub(crate) fn of_socket(pid: u32, fd: u32, inode: u64) -> Option<(u64, OwnedFd)> {
    let pidfd = pidfd_open(
        Pid::from_raw(i32::try_from(pid).ok()?)?,
        PidfdFlags::empty(),
    )
    .ok()?;
    let sock = pidfd_getfd(&pidfd, i32::try_from(fd).ok()?, PidfdGetfdFlags::empty()).ok()?;
    if rustix::fs::fstat(&sock).ok()?.st_ino != inode {
        return None;
    }
    // SAFETY: SIOCGSKNS takes no argument and returns a new namespace fd,
    // which `GetNetns::output_from_ptr` takes ownership of.
    let ns = unsafe { rustix::ioctl::ioctl(&sock, GetNetns {}) }.ok()?;
    let ino = rustix::fs::fstat(&ns).ok()?.st_ino;
    Some((ino, ns))
}

/// An ioctl that takes no argument and returns a new fd: `SIOCGSKNS`
/// (0x894C, linux/sockios.h: a socket's network namespace) and
/// `NS_GET_USERNS` (0xb701, linux/nsfs.h: a namespace's owning user
/// namespace).
pub(crate) struct NewFd<const OPCODE: rustix::ioctl::RawOpcode>;

/// `ioctl(sock, SIOCGSKNS)`.
pub(crate) type GetNetns = NewFd<0x894C>;
/// `ioctl(nsfd, NS_GET_USERNS)`.
pub(crate) type GetUserns = NewFd<0xb701>;

// SAFETY: both opcodes NewFd is used with (above) read no argument, write
// no user memory, and on success return a new file descriptor that nothing
// else owns.
unsafe impl<const OPCODE: rustix::ioctl::RawOpcode> Ioctl for NewFd<OPCODE> {
    type Output = OwnedFd;
    const OPCODE: Opcode = Opcode::old(OPCODE);
    const IS_MUTATING: bool = false;

    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut core::ffi::c_void,
    ) -> rustix::io::Result<OwnedFd> {
        // SAFETY: a successful call returns a new fd we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(out) })
    }
}

/// The inode of the namespace `ip netns` calls `name` (`/run/netns/NAME`).
pub(crate) fn inode_of_name(name: &str) -> Option<u64> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    // A bind mount of a namespace: the inode is the namespace's.
    std::fs::metadata(format!("/run/netns/{name}"))
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}
