//! cgroup v2 ids (what the kernel reports) to paths (what users read).

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::safe_text::safe_text;

/// On cgroup v2 a cgroup's id is the inode number of its directory, so a
/// walk of the hierarchy maps ids to paths. The walk is cached and redone
/// on a miss, at most once a second.
pub(crate) struct CgroupNames {
    root: Option<PathBuf>,
    names: HashMap<u64, String>,
    last_walk: Option<Instant>,
}

impl CgroupNames {
    pub fn new() -> Self {
        Self {
            root: cgroup2_mount(),
            names: HashMap::new(),
            last_walk: None,
        }
    }

    /// The path of cgroup `id` relative to the hierarchy root (`/` for the
    /// root itself), or empty when unknown.
    pub fn path(&mut self, id: u64) -> String {
        if let Some(name) = self.names.get(&id) {
            return name.clone();
        }
        let stale = self
            .last_walk
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
        if let (true, Some(root)) = (stale, self.root.clone()) {
            self.names.clear();
            walk(&root, &root, &mut self.names, 0);
            self.last_walk = Some(Instant::now());
        }
        self.names.get(&id).cloned().unwrap_or_default()
    }
}

impl Default for CgroupNames {
    fn default() -> Self {
        Self::new()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut HashMap<u64, String>, depth: u32) {
    if depth > 32 {
        return;
    }
    if let Ok(meta) = fs::metadata(dir) {
        let rel = dir.strip_prefix(root).unwrap_or(dir);
        let path = format!("/{}", safe_text(rel.as_os_str().as_encoded_bytes()));
        out.insert(meta.ino(), path);
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &entry.path(), out, depth + 1);
        }
    }
}

/// The root of the host's cgroup v2 hierarchy, where programs attached see
/// every socket: the cgroup2 mount, if its directory is the root cgroup
/// (inode 1; in a cgroup namespace the mount shows a subtree).
pub(crate) fn root_dir() -> Option<PathBuf> {
    cgroup2_mount().filter(|p| fs::metadata(p).is_ok_and(|m| m.ino() == 1))
}

/// Where cgroup2 is mounted (`/sys/fs/cgroup` or, on hybrid systems,
/// `/sys/fs/cgroup/unified`).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    mounts
        .0
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
}
