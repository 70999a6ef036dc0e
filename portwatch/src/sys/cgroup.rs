//! cgroup v2 ids (what the kernel reports) to paths (what users read).

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::safe_text::safe_text;

/// On cgroup v2 a cgroup's id is the inode number of its directory and a
/// file handle the kernel opens (`open_by_handle_at`, as root): one lookup
/// per new id, whenever the cgroup was made. Without that privilege, a
/// walk of the hierarchy maps ids to paths, cached and redone on a miss at
/// most once a second.
pub(crate) struct CgroupNames {
    root: Option<PathBuf>,
    /// The mount's directory, for opening handles.
    mount: Option<fs::File>,
    names: HashMap<u64, String>,
    last_walk: Option<Instant>,
}

/// Ids remembered at most (a cgroup id is never reused, so entries of
/// removed cgroups only take memory).
const MAX_NAMES: usize = 65536;

impl CgroupNames {
    pub(crate) fn new() -> Self {
        let root = cgroup2_mount();
        Self {
            mount: root.as_ref().and_then(|r| fs::File::open(r).ok()),
            root,
            names: HashMap::new(),
            last_walk: None,
        }
    }

    /// The path of cgroup `id` relative to the hierarchy root (`/` for the
    /// root itself), or empty when unknown.
    pub(crate) fn path(&mut self, id: u64) -> String {
        if let Some(name) = self.names.get(&id) {
            return name.clone();
        }
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        if let (Some(mount), Some(root)) = (&self.mount, &self.root)
            && let Some(path) = path_by_handle(mount, root, id)
        {
            self.names.insert(id, path.clone());
            return path;
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

/// `struct file_handle` with the 8 bytes of a kernfs handle: the id.
#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: u64,
}

/// `FILEID_KERNFS`: the handle type of cgroup2 directories.
const FILEID_KERNFS: i32 = 0xfe;

/// The directory of cgroup `id`, opened by the kernel from its handle
/// (as root: `CAP_DAC_READ_SEARCH`); `mount` is the cgroup2 mount's.
fn open_by_id(mount: &fs::File, id: u64) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` is a valid `struct file_handle` with `handle_bytes`
    // bytes of payload after its header, alive for the call; the mount's
    // descriptor is open.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            (&raw mut handle).cast::<libc::file_handle>(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor the call above opened and nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The path of cgroup `id`, from the kernel: the directory it opens for
/// the handle, read back through /proc/self/fd.
fn path_by_handle(mount: &fs::File, root: &Path, id: u64) -> Option<String> {
    use std::os::fd::AsRawFd as _;
    let fd = open_by_id(mount, id)?;
    let target = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let rel = target.strip_prefix(root).ok()?;
    Some(format!(
        "/{}",
        safe_text(rel.as_os_str().as_encoded_bytes())
    ))
}

/// The host's cgroup2 hierarchy root, opened (see [`root_dir`]).
pub(crate) fn open_root() -> Option<fs::File> {
    fs::File::open(root_dir()?).ok()
}

/// The directory of cgroup `id` in the hierarchy `root` opens (from
/// [`open_root`]), to attach a program to; None when it cannot be opened
/// (gone, or no privilege).
pub(crate) fn open_dir(root: &fs::File, id: u64) -> Option<fs::File> {
    open_by_id(root, id).map(fs::File::from)
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
