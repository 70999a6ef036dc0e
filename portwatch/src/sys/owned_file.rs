//! Files a root process writes where another user might have a say. Every
//! name is opened relative to a directory fd that was checked once (owned
//! by root or by us, not writable by others unless sticky), never through
//! a symbolic link (`O_NOFOLLOW`), and a file another user owns, a hard
//! link or anything that is no regular file is refused rather than written.
//! Temporary files get unpredictable names and are created exclusively.

use std::{
    fs::File,
    io::{self, Write as _},
    os::{fd::OwnedFd, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

/// Why a file is not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("{path}: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn unsafe_path(path: &Path, why: impl Into<String>) -> FileError {
    FileError::Unsafe {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> FileError {
    let path = path.to_path_buf();
    move |e| FileError::Io {
        action,
        path,
        source: e.into(),
    }
}

/// A user's name for messages, or the number.
fn user(uid: u32) -> String {
    match uzers::get_user_by_uid(uid) {
        Some(u) => format!("user {} (uid {uid})", u.name().to_string_lossy()),
        None => format!("uid {uid}"),
    }
}

fn owner_is_trusted(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// A directory checked once: names are then opened relative to this fd, so
/// a rename of the path (or of a parent) cannot redirect them.
#[derive(Debug)]
pub struct CheckedDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The identity of a file as it was read, to tell whether another writer
/// replaced or changed it since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (u64, u64),
    /// Changes with any write or rename, even one that keeps the mtime.
    ctime: (u64, u64),
}

impl FileStamp {
    fn of(st: &Stat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

impl CheckedDir {
    /// Opens `path` (created mode 0755 when missing and `create`) and
    /// checks that no other user can add, rename or remove names in it: it
    /// must belong to root or to us, and be writable by nobody else unless
    /// it has the sticky bit (then only a name's owner can rename it, and
    /// the files themselves are checked as they are opened).
    ///
    /// The path is walked from `/` one name at a time, never through a
    /// symbolic link that belongs to another user (which could point the
    /// rest of the walk anywhere, `/etc` included); links of root's or ours
    /// are followed. Missing directories are made on the way when `create`.
    pub fn open(path: &Path, create: bool) -> Result<Self, FileError> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = walk(path, create)?;
        let st = rustix::fs::fstat(&fd).map_err(io_error("look at the directory", path))?;
        if !owner_is_trusted(st.st_uid) {
            return Err(unsafe_path(
                path,
                format!(
                    "the directory belongs to {}, who could swap the files portwatch writes in it: choose a directory owned by root",
                    user(st.st_uid)
                ),
            ));
        }
        let mode = st.st_mode & 0o7777;
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(unsafe_path(
                path,
                format!(
                    "the directory is writable by other users (mode {mode:04o}), who could swap the files portwatch writes in it: choose a directory only root can write"
                ),
            ));
        }
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory that holds `file`, checked.
    pub fn of_file(file: &Path, create: bool) -> Result<(Self, PathBuf), FileError> {
        let name = file
            .file_name()
            .ok_or_else(|| unsafe_path(file, "this names no file"))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        Ok((Self::open(dir, create)?, PathBuf::from(name)))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn shown(&self, name: &Path) -> PathBuf {
        self.path.join(name)
    }

    /// Checks an opened file: a regular file with one name, ours.
    fn check_file(&self, name: &Path, st: &Stat) -> Result<(), FileError> {
        let path = self.shown(name);
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(unsafe_path(&path, "it is not a regular file"));
        }
        if st.st_uid != rustix::process::geteuid().as_raw() {
            return Err(unsafe_path(
                &path,
                format!(
                    "the file belongs to {}: portwatch does not write to another user's file (remove it, or choose another name)",
                    user(st.st_uid)
                ),
            ));
        }
        if st.st_nlink > 1 {
            return Err(unsafe_path(
                &path,
                "the file has other names (hard links): portwatch does not write through them",
            ));
        }
        Ok(())
    }

    fn open_at(&self, name: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, FileError> {
        // A FIFO would block the open: O_NONBLOCK makes it fail or return at
        // once, and the type check below refuses it.
        rustix::fs::openat(
            &self.fd,
            name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            mode,
        )
        .map_err(|e| {
            // ELOOP, or EACCES where the kernel checks the sticky directory
            // first: either way, say what is there.
            let is_link = || {
                rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
            };
            if e == rustix::io::Errno::LOOP || is_link() {
                unsafe_path(
                    &self.shown(name),
                    "it is a symbolic link: portwatch does not follow links where it writes (another user may have planted it)",
                )
            } else {
                io_error("open", &self.shown(name))(e)
            }
        })
    }

    /// The directory's mode when users other than its owner may add
    /// names to it, sticky or not (then a file's owner can still plant
    /// the names beside it that a library opens by path); None when only
    /// its owner can.
    pub fn shared_mode(&self) -> Result<Option<u32>, FileError> {
        let st = rustix::fs::fstat(&self.fd).map_err(io_error("look at", &self.path))?;
        let mode = st.st_mode & 0o7777;
        Ok((mode & 0o022 != 0).then_some(mode))
    }

    /// Opens `name` for appending, created (mode `mode`) when missing.
    pub fn append(&self, name: &Path, mode: u32) -> Result<File, FileError> {
        let fd = self.open_at(
            name,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE,
            Mode::from_raw_mode(mode),
        )?;
        let st = rustix::fs::fstat(&fd).map_err(io_error("look at", &self.shown(name)))?;
        self.check_file(name, &st)?;
        Ok(File::from(fd))
    }

    /// Creates `name` (mode `mode`), which must not exist yet (not even as
    /// a link).
    pub fn create_new(&self, name: &Path, mode: u32) -> Result<File, FileError> {
        let fd = self.open_at(
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Reads `name` (at most `max` bytes, else None): its bytes and stamp,
    /// or None when it does not exist. Follows no link.
    pub fn read(&self, name: &Path, max: u64) -> Result<Option<(Vec<u8>, FileStamp)>, FileError> {
        use std::io::Read as _;
        let fd = match self.open_at(name, OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => fd,
            Err(FileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let st = rustix::fs::fstat(&fd).map_err(io_error("look at", &self.shown(name)))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(unsafe_path(&self.shown(name), "it is not a regular file"));
        }
        let mut bytes = Vec::new();
        File::from(fd)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| FileError::Io {
                action: "read",
                path: self.shown(name),
                source,
            })?;
        Ok(Some((bytes, FileStamp::of(&st))))
    }

    /// The stamp of `name` now, None when it does not exist.
    pub fn stamp(&self, name: &Path) -> Result<Option<FileStamp>, FileError> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileStamp::of(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io_error("look at", &self.shown(name))(e)),
        }
    }

    /// Writes `bytes` to a new file with an unpredictable name, created
    /// exclusively (mode `mode`), flushed to disk; returns its name.
    fn write_temp(&self, name: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, FileError> {
        for _ in 0..16 {
            let mut random = [0u8; 8];
            rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
                .map_err(io_error("make a temporary name beside", &self.shown(name)))?;
            let mut tmp = std::ffi::OsString::from(".");
            tmp.push(name.as_os_str());
            tmp.push(format!(".{:016x}.tmp", u64::from_ne_bytes(random)));
            let tmp = PathBuf::from(tmp);
            let fd = match self.open_at(
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                Mode::from_raw_mode(mode),
            ) {
                Ok(fd) => fd,
                Err(FileError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut file = File::from(fd);
            let written = file
                .write_all(bytes)
                .and_then(|()| file.sync_all())
                .map_err(|source| FileError::Io {
                    action: "write",
                    path: self.shown(&tmp),
                    source,
                });
            if let Err(e) = written {
                let _ = rustix::fs::unlinkat(&self.fd, &tmp, AtFlags::empty());
                return Err(e);
            }
            return Ok(tmp);
        }
        Err(unsafe_path(
            &self.shown(name),
            "cannot find a free temporary name beside it",
        ))
    }

    /// Replaces `name` with `bytes` atomically (a temporary file renamed
    /// over it; a link at `name` is replaced, never followed). With
    /// `expect`, refuses with [`Replace::Changed`] when the file is no
    /// longer the one stamped (another writer changed it since).
    pub fn replace(
        &self,
        name: &Path,
        bytes: &[u8],
        mode: u32,
        expect: Option<Option<FileStamp>>,
    ) -> Result<Replace, FileError> {
        let tmp = self.write_temp(name, bytes, mode)?;
        if let Some(expected) = expect {
            let now = self.stamp(name);
            if !matches!(&now, Ok(n) if *n == expected) {
                let _ = rustix::fs::unlinkat(&self.fd, &tmp, AtFlags::empty());
                return now.map(|_| Replace::Changed);
            }
        }
        rustix::fs::renameat(&self.fd, &tmp, &self.fd, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(&self.fd, &tmp, AtFlags::empty());
            io_error("replace", &self.shown(name))(e)
        })?;
        // The rename itself is durable once the directory is synced.
        let _ = rustix::fs::fsync(&self.fd);
        Ok(Replace::Done)
    }
}

/// Symbolic links followed in one walk at most (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Opens directory `path` one component at a time from `/` (or the working
/// directory), each with `O_NOFOLLOW`: a link is looked at before it is
/// followed, and one that belongs to another user is refused.
fn walk(path: &Path, create: bool) -> Result<OwnedFd, FileError> {
    use std::{collections::VecDeque, ffi::OsString, path::Component};
    let open_dir = |at: &OwnedFd, name: &std::ffi::OsStr| {
        rustix::fs::openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let start = if path.is_absolute() { "/" } else { "." };
    let first = rustix::fs::open(
        start,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_error("open the directory", Path::new(start)))?;
    // The directories walked so far: `..` goes back one.
    let mut stack: Vec<OwnedFd> = vec![first];
    let mut pending: VecDeque<OsString> = VecDeque::new();
    let push_all = |pending: &mut VecDeque<OsString>, p: &Path, front: bool| {
        let parts: Vec<OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect();
        if front {
            for part in parts.into_iter().rev() {
                pending.push_front(part);
            }
        } else {
            pending.extend(parts);
        }
    };
    push_all(&mut pending, path, false);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            } else {
                // Above the start: `..` of `/` is `/`; of `.`, its parent.
                let parent = open_dir(&stack[0], std::ffi::OsStr::new(".."))
                    .map_err(io_error("open the directory", path))?;
                stack[0] = parent;
            }
            continue;
        }
        let Some(at) = stack.last() else {
            return Err(unsafe_path(path, "this names no directory"));
        };
        let st = match rustix::fs::statat(at, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(at, &name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io_error("create the directory", path)(e)),
                }
                pending.push_front(name);
                continue;
            }
            Err(e) => return Err(io_error("open the directory", path)(e)),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            if !owner_is_trusted(st.st_uid) {
                return Err(unsafe_path(
                    path,
                    format!(
                        "{} is a symbolic link that belongs to {}: portwatch does not follow it",
                        name.to_string_lossy(),
                        user(st.st_uid)
                    ),
                ));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(unsafe_path(path, "too many levels of symbolic links"));
            }
            let target = rustix::fs::readlinkat(at, &name, Vec::new())
                .map_err(io_error("read the link in", path))?;
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            if target.is_absolute() {
                let root = rustix::fs::open(
                    "/",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_error("open the directory", Path::new("/")))?;
                stack = vec![root];
            }
            push_all(&mut pending, &target, true);
            continue;
        }
        let fd = open_dir(at, &name).map_err(io_error("open the directory", path))?;
        stack.push(fd);
    }
    stack
        .pop()
        .ok_or_else(|| unsafe_path(path, "this names no directory"))
}

/// What [`CheckedDir::replace`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Replace {
    Done,
    /// Another writer changed the file since it was read: nothing written.
    Changed,
}

/// `path` with a symbolic link at its last component resolved (one level at
/// a time, at most 8), when the link itself belongs to root or to us: saving
/// through a link the user made updates its target instead of replacing the
/// link with a copy.
pub fn resolve_own_link(path: &Path) -> Result<PathBuf, FileError> {
    let mut path = path.to_path_buf();
    for _ in 0..8 {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => return Ok(path),
        };
        if !meta.file_type().is_symlink() {
            return Ok(path);
        }
        use std::os::unix::fs::MetadataExt as _;
        if !owner_is_trusted(meta.uid()) {
            return Err(unsafe_path(
                &path,
                format!(
                    "it is a symbolic link that belongs to {}: portwatch does not follow it",
                    user(meta.uid())
                ),
            ));
        }
        let target = std::fs::read_link(&path).map_err(|source| FileError::Io {
            action: "read the link",
            path: path.clone(),
            source,
        })?;
        path = match path.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
    }
    Err(unsafe_path(&path, "too many levels of symbolic links"))
}

/// Why [`read_trusted`] refused a file; the caller says it in its words.
#[derive(Debug)]
pub enum Untrusted {
    Io(io::Error),
    /// A FIFO, a device, a directory.
    NotAFile,
    TooLarge,
    /// It belongs to this user, who is neither root nor us.
    NotOwned(String),
}

/// The bytes of a file that decides what portwatch does, or None if there
/// is none. Refuses, without blocking, what is no regular file (a FIFO
/// would block the read until a writer comes, a device such as /dev/zero
/// never ends), files above `max` bytes, and files another user owns (one
/// planted in a shared directory must not steer a root monitor).
pub fn read_trusted(path: &Path, max: u64) -> Result<Option<Vec<u8>>, Untrusted> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Untrusted::Io(e)),
    };
    let meta = file.metadata().map_err(Untrusted::Io)?;
    if !meta.is_file() {
        return Err(Untrusted::NotAFile);
    }
    let owner = std::os::unix::fs::MetadataExt::uid(&meta);
    if owner != 0 && owner != rustix::process::geteuid().as_raw() {
        return Err(Untrusted::NotOwned(
            uzers::get_user_by_uid(owner).map_or_else(
                || format!("uid {owner}"),
                |u| format!("user {} (uid {owner})", u.name().to_string_lossy()),
            ),
        ));
    }
    if meta.len() > max {
        return Err(Untrusted::TooLarge);
    }
    // The file may grow while it is read: never read more than the limit.
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(Untrusted::Io)?;
    if bytes.len() as u64 > max {
        return Err(Untrusted::TooLarge);
    }
    Ok(Some(bytes))
}
