//! Files portwatch writes as root where another user might have a say
//! (`--output`, the rules file and its backup): opened relative to a
//! checked directory, never through a link, never another user's file.
//! See [`CheckedDir`]. And the one way a root process reads a file that
//! decides what it does (the rules, the policy): [`read_trusted`].

use std::{
    fs::OpenOptions,
    io::{self, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

pub use crate::sys::owned_file::{CheckedDir, FileError, FileStamp, Replace, resolve_own_link};

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
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
    let file = match OpenOptions::new()
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
