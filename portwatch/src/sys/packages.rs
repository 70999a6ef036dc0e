//! Which Debian package owns a file, from the dpkg database
//! (`/var/lib/dpkg/info/*.list`, what `dpkg -S` reads), read once and
//! indexed by a keyed hash of each path: a few MiB for a whole system,
//! first read before the kernel programs are attached.
//! Read again, on a thread, when dpkg changed it and a lookup misses (at
//! most every [`REREAD_FLOOR`]), so a package installed since is found
//! once that reading ended; no event waits for it.

use std::{
    collections::HashMap,
    hash::BuildHasher as _,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

/// The least time between two reads of the database.
const REREAD_FLOOR: Duration = Duration::from_secs(2);
/// Paths indexed at most (a Debian desktop has about 300,000).
const MAX_PATHS: usize = 4_000_000;

/// The dpkg database, indexed.
pub(crate) struct Packages {
    info: PathBuf,
    index: Option<Index>,
    /// A reading again, on a thread: never waited for.
    pending: Option<std::thread::JoinHandle<Index>>,
    last_read: Option<Instant>,
}

/// One reading of the database.
struct Index {
    hasher: std::hash::RandomState,
    by_path: HashMap<u64, u32>,
    names: Vec<String>,
    /// The database directory's modification time when it was read.
    read_at_mtime: Option<SystemTime>,
}

impl Packages {
    /// The system's database, read at the first lookup.
    pub(crate) fn new() -> Self {
        Self::at(Path::new("/var/lib/dpkg/info"))
    }

    /// Reads it now (for a caller that will look up soon: a monitor
    /// before its engine starts, `list`): before the kernel programs are
    /// attached, its 30-odd ms of reading compete with no event.
    pub(crate) fn read_now(&mut self) {
        self.last_read = Some(Instant::now());
        self.index = Some(Index::read(&self.info));
    }

    /// Starts reading it again, on a thread of its own.
    fn read_ahead(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let info = self.info.clone();
        self.pending = std::thread::Builder::new()
            .name("portwatch-dpkg".into())
            .spawn(move || Index::read(&info))
            .ok();
    }

    /// The database at `info`, read at the first lookup.
    pub(crate) fn at(info: &Path) -> Self {
        Self {
            info: info.to_path_buf(),
            index: None,
            pending: None,
            last_read: None,
        }
    }

    /// The package that owns `path`, if any. Paths under `/usr` are also
    /// looked up without it, and the other way round (a merged `/usr`
    /// runs `/usr/bin/x` that a package lists as `/bin/x`).
    pub(crate) fn owner(&mut self, path: &str) -> Option<String> {
        if self.index.is_none() {
            // The first reading is waited for (a monitor's start).
            self.last_read = Some(Instant::now());
            let first = self.pending.take().and_then(|t| t.join().ok());
            self.index = Some(first.unwrap_or_else(|| Index::read(&self.info)));
        }
        // A reading again that ended replaces the index; one that runs
        // is never waited for: events do not wait for dpkg's database.
        if self.pending.as_ref().is_some_and(|t| t.is_finished())
            && let Some(index) = self.pending.take().and_then(|t| t.join().ok())
        {
            self.index = Some(index);
        }
        if let Some(found) = self.index.as_ref()?.lookup(path) {
            return Some(found);
        }
        let changed = mtime(&self.info) != self.index.as_ref()?.read_at_mtime;
        let may = self.last_read.is_none_or(|t| t.elapsed() >= REREAD_FLOOR);
        if changed && may && self.pending.is_none() {
            self.last_read = Some(Instant::now());
            self.read_ahead();
        }
        None
    }
}

impl Index {
    fn lookup(&self, path: &str) -> Option<String> {
        let other = match path.strip_prefix("/usr") {
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => format!("/usr{path}"),
        };
        [path, other.as_str()].iter().find_map(|p| {
            let i = *self.by_path.get(&self.hasher.hash_one(p.as_bytes()))?;
            self.names.get(usize::try_from(i).ok()?).cloned()
        })
    }

    /// Reads every `.list` file: each line a path the package installed.
    fn read(info: &Path) -> Index {
        let mut index = Index {
            hasher: std::hash::RandomState::new(),
            by_path: HashMap::new(),
            names: Vec::new(),
            read_at_mtime: mtime(info),
        };
        let Ok(dir) = std::fs::read_dir(info) else {
            return index;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(package) = name.to_str().and_then(|n| n.strip_suffix(".list")) else {
                continue;
            };
            let Ok(list) = std::fs::read(entry.path()) else {
                continue;
            };
            let Ok(number) = u32::try_from(index.names.len()) else {
                return index;
            };
            // `name:arch` for a multi-arch package: `dpkg -S` prints it so.
            index.names.push(crate::safe_text::safe_str(package));
            for line in list.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                if index.by_path.len() >= MAX_PATHS {
                    return index;
                }
                index.by_path.insert(index.hasher.hash_one(line), number);
            }
        }
        index
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_with_and_without_usr_and_new_packages_after_a_change() {
        let dir = std::env::temp_dir().join(format!("portwatch-dpkg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("coreutils.list"), "/.\n/bin\n/bin/ls\n").unwrap();
        std::fs::write(
            dir.join("python3.11-minimal:amd64.list"),
            "/usr/bin/python3.11\n",
        )
        .unwrap();
        std::fs::write(dir.join("status"), "not a list\n").unwrap();
        let mut p = Packages::at(&dir);
        assert_eq!(p.owner("/usr/bin/ls").as_deref(), Some("coreutils"));
        assert_eq!(p.owner("/bin/ls").as_deref(), Some("coreutils"));
        assert_eq!(
            p.owner("/usr/bin/python3.11").as_deref(),
            Some("python3.11-minimal:amd64")
        );
        assert_eq!(p.owner("/tmp/x"), None);
        assert_eq!(p.owner("/usr/bin/nginx"), None);
        std::fs::write(dir.join("nginx.list"), "/usr/sbin/nginx\n").unwrap();
        // Within the floor, a miss does not read again; after it, it
        // starts reading on a thread, and a lookup after it ended finds it.
        assert_eq!(p.owner("/usr/sbin/nginx"), None);
        p.last_read = Some(Instant::now() - REREAD_FLOOR);
        p.index.as_mut().unwrap().read_at_mtime = None;
        assert_eq!(p.owner("/usr/sbin/nginx"), None, "not waited for");
        let reading = p.pending.take().unwrap();
        p.index = Some(reading.join().unwrap());
        assert_eq!(p.owner("/usr/sbin/nginx").as_deref(), Some("nginx"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
