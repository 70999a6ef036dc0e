//! The git work tree a process works in, and its branch, read from the
//! repository's files (no `git` process): from the working directory's
//! fd (`/proc/PID/cwd`) up through `..`, on one filesystem, as git itself
//! looks. Only small regular files the process's own (real) user owns
//! are read, never through a symlink, and a file is looked at before it
//! is opened: a user can make portwatch read nothing of another user's,
//! open no FIFO or device, and feed it nothing large. What could still
//! block (a lookup on a filesystem a user serves) runs with a deadline
//! (`slow_reads`).

use std::os::fd::{AsRawFd as _, OwnedFd};

use rustix::{
    fs::{
        AtFlags, FileType, Mode, OFlags, ResolveFlags, fstat, fstatfs, open, openat, openat2,
        statat,
    },
    io::Errno,
};

use crate::owner::{GitCheckout, branch_of_head, gitdir_of_file};

/// Directories climbed at most.
const MAX_DEPTH: usize = 64;
/// The largest `HEAD` or `.git` file read.
const MAX_FILE: u64 = 4096;

/// Filesystems a read may block on for as long as another user wants:
/// FUSE, NFS, CIFS/SMB, 9p.
const SLOW_FILESYSTEMS: [i64; 5] = [0x6573_5546, 0x6969, 0xFF53_4D42, 0xFE53_4D42, 0x0102_1997];

/// The work tree around `pid`'s working directory, whose path (as
/// /proc shows it) is `cwd`.
pub(crate) fn checkout(pid: u32, cwd: &str, owner: u32) -> Option<GitCheckout> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = open(format!("/proc/{pid}/cwd"), flags, Mode::empty()).ok()?;
    let fs_type = fstatfs(&dir).ok()?.f_type;
    if SLOW_FILESYSTEMS.contains(&fs_type) {
        return None;
    }
    let device = fstat(&dir).ok()?.st_dev;
    for up in 0..MAX_DEPTH {
        match statat(&dir, ".git", AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let head = match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {
                        let git =
                            openat(&dir, ".git", flags | OFlags::NOFOLLOW, Mode::empty()).ok()?;
                        read_small(&git, "HEAD", owner)?
                    }
                    // A linked work tree or a submodule: `gitdir: PATH`.
                    // The path is the owner's to choose; what is read
                    // there is still only the owner's.
                    FileType::RegularFile => {
                        let dotgit = read_small(&dir, ".git", owner)?;
                        let gitdir = gitdir_of_file(&dotgit)?;
                        read_small(&open_gitdir(pid, &dir, gitdir)?, "HEAD", owner)?
                    }
                    _ => return None,
                };
                return Some(GitCheckout {
                    root: without_last(cwd, up)?,
                    branch: branch_of_head(&head)?,
                });
            }
            Err(Errno::NOENT) => {}
            Err(_) => return None,
        }
        let parent = openat(&dir, "..", flags | OFlags::NOFOLLOW, Mode::empty()).ok()?;
        let (here, there) = (fstat(&dir).ok()?, fstat(&parent).ok()?);
        // Another filesystem, or the top (`..` of `/` is `/`).
        if there.st_dev != device || (there.st_ino == here.st_ino && there.st_dev == here.st_dev) {
            return None;
        }
        dir = parent;
    }
    None
}

/// The directory a `gitdir:` line names: relative to the `.git` file's
/// directory, or absolute in the process's own root; either way through
/// no symlink and onto no other filesystem (no automount, no FUSE).
fn open_gitdir(pid: u32, dir: &OwnedFd, gitdir: &str) -> Option<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
    if let Some(inside) = gitdir.strip_prefix('/') {
        let root = open(format!("/proc/{pid}/root"), flags, Mode::empty()).ok()?;
        openat2(
            &root,
            inside,
            flags,
            Mode::empty(),
            resolve | ResolveFlags::IN_ROOT,
        )
        .ok()
    } else {
        openat2(dir, gitdir, flags, Mode::empty(), resolve).ok()
    }
}

/// File `name` in `dir`: a regular file of `owner`'s of at most
/// [`MAX_FILE`] bytes. It is looked at before it is opened for reading
/// (an `O_PATH` descriptor, then the file itself through it), so that no
/// device a user bound at that name is ever opened, and no link followed.
fn read_small(dir: &OwnedFd, name: &str, owner: u32) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let path = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let looked = openat(dir, name, path, Mode::empty()).ok()?;
    let st = fstat(&looked).ok()?;
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_uid != owner
        || size > MAX_FILE
    {
        return None;
    }
    let read = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = open(
        format!("/proc/self/fd/{}", looked.as_raw_fd()),
        read,
        Mode::empty(),
    )
    .ok()?;
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// `path` without its last `n` components; None when it has fewer (or
/// is no absolute path: a deleted directory).
fn without_last(path: &str, n: usize) -> Option<String> {
    if !path.starts_with('/') || path.ends_with(" (deleted)") {
        return None;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let kept = parts.get(..parts.len().checked_sub(n)?)?;
    Some(format!("/{}", kept.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_dropped_from_the_end() {
        assert_eq!(without_last("/home/a/p/src", 2).as_deref(), Some("/home/a"));
        assert_eq!(without_last("/home/a", 0).as_deref(), Some("/home/a"));
        assert_eq!(without_last("/home/a", 2).as_deref(), Some("/"));
        assert_eq!(without_last("/home", 2), None);
        assert_eq!(without_last("/x (deleted)", 0), None);
        assert_eq!(without_last("x", 0), None);
    }
}
