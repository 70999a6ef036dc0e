//! Files portwatch writes as root where another user might have a say
//! (`--output`, the rules file and its backup): opened relative to a
//! checked directory, never through a link, never another user's file.
//! See [`CheckedDir`].

pub use crate::sys::owned_file::{CheckedDir, FileError, FileStamp, Replace, resolve_own_link};
