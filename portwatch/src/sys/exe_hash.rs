//! SHA-256 of the executable a process runs, read through
//! `/proc/PID/exe` (the file it runs, even when removed or replaced since),
//! cached by (device, inode, modification time): hashed once however many
//! processes run it.

use std::{collections::HashMap, io::Read as _, os::unix::fs::MetadataExt as _};

use sha2::{Digest as _, Sha256};

/// Executables larger than this are not hashed.
const MAX_SIZE: u64 = 1 << 30;
/// Hashes kept at most; the cache starts over when full.
const MAX_CACHED: usize = 4096;
/// FUSE: a read may block as long as its user wants.
const FUSE: i64 = 0x6573_5546;

/// The hash of `pid`'s executable, through one cache for the whole
/// process (the TUI's details ask again every second).
pub(crate) fn of(pid: u32) -> Result<String, String> {
    static CACHE: std::sync::Mutex<Option<ExeHashes>> = std::sync::Mutex::new(None);
    // A panic while hashing cannot leave the map half-written: insert is
    // the last step.
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache.get_or_insert_with(ExeHashes::default).of(pid)
}

#[derive(Default)]
pub(crate) struct ExeHashes {
    cache: HashMap<(u64, u64, i64, i64), String>,
}

impl ExeHashes {
    /// The hash of `pid`'s executable (hex), or why there is none, in a
    /// few words.
    pub(crate) fn of(&mut self, pid: u32) -> Result<String, String> {
        let file = std::fs::File::open(format!("/proc/{pid}/exe"))
            .map_err(|e| format!("the executable cannot be opened: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("the executable cannot be read: {e}"))?;
        let key = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec());
        if let Some(hash) = self.cache.get(&key) {
            return Ok(hash.clone());
        }
        let fs_type = rustix::fs::fstatfs(&file)
            .map(|s| s.f_type)
            .unwrap_or_default();
        if fs_type == FUSE {
            return Err("the executable is on a FUSE filesystem: not hashed".into());
        }
        if meta.len() > MAX_SIZE {
            return Err(format!(
                "the executable is larger than {} MiB: not hashed",
                MAX_SIZE >> 20
            ));
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut reader = file.take(MAX_SIZE);
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading the executable failed: {e}")),
            }
        }
        let hash: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(key, hash.clone());
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_executable_hashes_as_sha256sum_says() {
        let me = std::fs::read("/proc/self/exe").unwrap();
        let want: String = Sha256::digest(&me)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut h = ExeHashes::default();
        assert_eq!(h.of(std::process::id()).unwrap(), want);
        assert_eq!(h.cache.len(), 1);
        assert_eq!(h.of(std::process::id()).unwrap(), want);
        assert!(h.of(u32::MAX).is_err());
    }
}
