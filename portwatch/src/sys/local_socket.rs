//! The event socket's file, and what the server asks /proc about its
//! clients. The socket gets its mode (0660) and group inside a private
//! directory before it is renamed to its path, so there is no moment when
//! anybody else could connect.

use std::{
    fs, io,
    os::unix::{
        fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
        io::BorrowedFd,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

fn socket_error(path: &Path, why: impl Into<String>) -> Error {
    Error::Socket {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// A bound socket file: removed again when dropped, if it is still the
/// one this process made.
#[derive(Debug)]
pub(crate) struct BoundSocket {
    pub listener: UnixListener,
    path: PathBuf,
    ino: u64,
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket at `path`, mode 0660, group `gid` (else the
/// creator's). A stale socket file is replaced; a live one, or anything
/// that is no socket, is refused; so is a directory where another user
/// could put a socket of their own in its place.
pub(crate) fn bind(path: &Path, gid: Option<u32>) -> Result<BoundSocket> {
    let io_error = |what: &str, e: io::Error| socket_error(path, format!("{what}: {e}"));
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) if !p.as_os_str().is_empty() => (p, n),
        (_, Some(n)) => (Path::new("."), n),
        (_, None) => return Err(socket_error(path, "it names no file")),
    };
    if !parent.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| io_error("cannot create its directory", e))?;
    }
    // From here on the path has no symbolic links, and no directory on it
    // can be renamed or replaced by another user.
    let parent = fs::canonicalize(parent).map_err(|e| io_error("cannot find its directory", e))?;
    check_directories(path, &parent)?;
    let real = parent.join(name);
    match fs::symlink_metadata(&real) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(&real).is_ok() {
                return Err(socket_error(
                    path,
                    "another process serves it (is a portwatch daemon running already?)",
                ));
            }
            fs::remove_file(&real).map_err(|e| io_error("cannot remove the stale socket", e))?;
        }
        Ok(_) => {
            return Err(socket_error(
                path,
                "it exists and is not a socket; remove it or choose another path",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("cannot look at it", e)),
    }
    let private = private_dir(&parent)
        .map_err(|e| io_error("cannot create a private directory beside it", e))?;
    let tmp = private.join("sock");
    let result = (|| {
        let listener = UnixListener::bind(&tmp).map_err(|e| io_error("cannot bind", e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o660))
            .map_err(|e| io_error("cannot set its mode", e))?;
        std::os::unix::fs::chown(&tmp, None, gid)
            .map_err(|e| io_error("cannot set its group", e))?;
        fs::rename(&tmp, &real).map_err(|e| io_error("cannot move it into place", e))?;
        let ino = fs::symlink_metadata(&real)
            .map_err(|e| io_error("cannot look at it", e))?
            .ino();
        Ok(BoundSocket {
            listener,
            path: real.clone(),
            ino,
        })
    })();
    // Only what this process made: the socket, if it was not moved, and
    // the directory, which is empty then.
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir(&private);
    result
}

/// Refuses `dir` (no symbolic links in it) when it, or a directory above
/// it, belongs to another user or is writable by others without the
/// sticky bit: they could rename the socket away and put theirs in its
/// place. In a sticky directory (/tmp) only a name's owner may rename it.
fn check_directories(path: &Path, dir: &Path) -> Result<()> {
    let euid = rustix::process::geteuid().as_raw();
    for d in dir.ancestors() {
        let m = fs::metadata(d)
            .map_err(|e| socket_error(path, format!("cannot look at {}: {e}", d.display())))?;
        if m.uid() != 0 && m.uid() != euid {
            return Err(socket_error(
                path,
                format!(
                    "the directory {} belongs to {}, who could replace the socket with one of their own; choose a directory owned by root",
                    d.display(),
                    user(m.uid())
                ),
            ));
        }
        let mode = m.mode() & 0o7777;
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(socket_error(
                path,
                format!(
                    "the directory {} is writable by other users (mode {mode:04o}) without the sticky bit, so they could replace the socket with one of their own; choose a directory only root can write",
                    d.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A user's name for messages, or the number.
fn user(uid: u32) -> String {
    match uzers::get_user_by_uid(uid) {
        Some(u) => format!("user {} (uid {uid})", u.name().to_string_lossy()),
        None => format!("uid {uid}"),
    }
}

/// A new directory of this process's alone (mode 0700) in `parent`, at
/// a name nobody could guess: made exclusively, so a name somebody else
/// took is never used (nor removed); another is tried.
fn private_dir(parent: &Path) -> io::Result<PathBuf> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..8 {
        let mut random = [0u8; 12];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = parent.join(format!(".portwatch-{hex}.tmp"));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The bytes written to a Unix stream socket that its peer has not read
/// yet (`SIOCOUTQ`), counted as the kernel charges them (with each
/// buffer's overhead): it falls only as the peer reads.
pub(crate) fn unread_bytes(socket: BorrowedFd<'_>) -> io::Result<u64> {
    // SIOCOUTQ is TIOCOUTQ's number (linux/sockios.h).
    const SIOCOUTQ: rustix::ioctl::RawOpcode = libc::TIOCOUTQ as rustix::ioctl::RawOpcode;
    // SAFETY: SIOCOUTQ is a getter: the kernel writes one int to the
    // pointer it is given, and `Getter` hands it a `c_int` to write.
    let n = unsafe {
        let get = rustix::ioctl::Getter::<rustix::ioctl::BadOpcode<SIOCOUTQ>, libc::c_int>::new();
        rustix::ioctl::ioctl(socket, get)?
    };
    // The kernel reports no negative count.
    Ok(u64::try_from(n).unwrap_or_default())
}

/// The gid of group `name`.
pub(crate) fn group_id(name: &str) -> Option<u32> {
    uzers::get_group_by_name(name).map(|g| g.gid())
}

/// The uid that owns process `pid`, None when it is gone.
pub(crate) fn process_owner(pid: u32) -> Option<u32> {
    fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
}

/// Whether `pid` is `root` or below it in the parent links, now.
pub(crate) fn is_descendant(pid: u32, root: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if p == root {
            return true;
        }
        match super::procfs_scan::read_full_stat(p) {
            Some(stat) if stat.ppid > 0 => p = stat.ppid,
            _ => return false,
        }
    }
    false
}
