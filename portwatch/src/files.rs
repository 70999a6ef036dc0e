//! Files portwatch writes as root where another user might have a say
//! (`--output`, the rules file and its backup): opened relative to a
//! checked directory, never through a link, never another user's file.
//! See [`CheckedDir`]. And the one way a root process reads a file that
//! decides what it does (the rules, the policy): [`read_trusted`].

pub use crate::sys::owned_file::{
    CheckedDir, FileError, FileStamp, Replace, Untrusted, read_trusted, resolve_own_link,
};
