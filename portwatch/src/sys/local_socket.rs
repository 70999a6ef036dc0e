//! The event socket's file, and what the server asks /proc about its
//! clients. The socket gets its mode (0660) and group inside a private
//! directory before it is renamed to its path, so there is no moment when
//! anybody else could connect.

use std::{
    fs, io,
    os::unix::{
        fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
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
/// that is no socket, is refused.
pub(crate) fn bind(path: &Path, gid: Option<u32>) -> Result<BoundSocket> {
    let io_error = |what: &str, e: io::Error| socket_error(path, format!("{what}: {e}"));
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| io_error("cannot create its directory", e))?;
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(socket_error(
                    path,
                    "another process serves it (is a portwatch daemon running already?)",
                ));
            }
            fs::remove_file(path).map_err(|e| io_error("cannot remove the stale socket", e))?;
        }
        Ok(_) => {
            return Err(socket_error(
                path,
                "it exists and is not a socket; remove it or choose another --socket path",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("cannot look at it", e)),
    }
    let private = parent.join(format!(".portwatch-{}.tmp", std::process::id()));
    let _ = fs::remove_dir_all(&private);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| io_error("cannot create a private directory beside it", e))?;
    let result = (|| {
        let tmp = private.join("sock");
        let listener = UnixListener::bind(&tmp).map_err(|e| io_error("cannot bind", e))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o660))
            .map_err(|e| io_error("cannot set its mode", e))?;
        std::os::unix::fs::chown(&tmp, None, gid)
            .map_err(|e| io_error("cannot set its group", e))?;
        fs::rename(&tmp, path).map_err(|e| io_error("cannot move it into place", e))?;
        let ino = fs::symlink_metadata(path)
            .map_err(|e| io_error("cannot look at it", e))?
            .ino();
        Ok(BoundSocket {
            listener,
            path: path.to_path_buf(),
            ino,
        })
    })();
    let _ = fs::remove_dir_all(&private);
    result
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
