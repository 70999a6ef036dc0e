//! Where alerts.json lives, and saving it without ever losing a file.

use std::{
    io,
    path::{Path, PathBuf},
};

use crate::sys::owned_file::{CheckedDir, FileError, Replace, resolve_own_link};

use super::{
    model::AlertsFile,
    validate::{Rules, RulesError, compile, load_bytes},
};

/// The example rules, also written by `portwatch alerts init`.
pub const EXAMPLE: &str = include_str!("../../../examples/alerts.example.json");

/// The largest alerts file portwatch reads: far above any real one (the
/// example is 2 KiB), far below what would hurt to hold in memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Everything that can go wrong reading or writing the rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("no alerts file at {0}: create one with `portwatch alerts init`")]
    Missing(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0} already exists")]
    Exists(PathBuf),
    #[error(
        "{path} is not a valid alerts file, so it is left as it is ({reason}); fix it or move it away first"
    )]
    RefuseToReplace { path: PathBuf, reason: String },
    #[error("cannot find the user's configuration directory (is HOME set?)")]
    NoConfigDir,
    #[error("{0} is not a regular file, so it is not read as alerts")]
    NotAFile(PathBuf),
    #[error("{path} is larger than {max} bytes, too large for an alerts file")]
    TooLarge { path: PathBuf, max: u64 },
    #[error(
        "{0} was changed by another writer since it was read: nothing is saved over it (the file as it is now is shown; make the change again)"
    )]
    ChangedOnDisk(PathBuf),
    #[error("not saved: {0}")]
    Unsafe(#[from] FileError),
    #[error(
        "{path} belongs to {owner}: rules another user can change are not used; give the file to root (or to yourself)"
    )]
    NotOwned { path: PathBuf, owner: String },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `{config_dir}/portwatch/alerts.json`: where new files are saved.
pub fn canonical_path() -> Result<PathBuf, StoreError> {
    Ok(dirs::config_dir()
        .ok_or(StoreError::NoConfigDir)?
        .join("portwatch/alerts.json"))
}

/// `~/.config/portwatch/alerts.json`: read when the canonical one is missing.
pub fn legacy_path() -> Result<PathBuf, StoreError> {
    Ok(dirs::home_dir()
        .ok_or(StoreError::NoConfigDir)?
        .join(".config/portwatch/alerts.json"))
}

/// The file to read: the canonical path if it exists, else the legacy one
/// if that exists, else the canonical path (which is then missing).
pub fn read_path() -> Result<PathBuf, StoreError> {
    let canonical = canonical_path()?;
    if canonical.exists() {
        return Ok(canonical);
    }
    let legacy = legacy_path()?;
    Ok(if legacy.exists() { legacy } else { canonical })
}

/// Reads, parses, validates and compiles a rules file: what `alerts
/// validate`, the daemon and its reloads all use.
pub fn load(path: &Path) -> Result<Rules, StoreError> {
    let bytes = read_file(path)?.ok_or_else(|| StoreError::Missing(path.to_path_buf()))?;
    Ok(load_bytes(&bytes, path)?)
}

/// The bytes of a rules file, or None if there is none (see
/// [`crate::files::read_trusted`]).
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    use crate::files::Untrusted;
    crate::files::read_trusted(path, MAX_FILE_BYTES).map_err(|e| match e {
        Untrusted::Io(e) => io_err("read", path)(e),
        Untrusted::NotAFile => StoreError::NotAFile(path.to_path_buf()),
        Untrusted::TooLarge => StoreError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_FILE_BYTES,
        },
        // Rules decide what a root monitor runs (--exec) and reports.
        Untrusted::NotOwned(owner) => StoreError::NotOwned {
            path: path.to_path_buf(),
            owner,
        },
    })
}

/// The backup kept next to `path`: `alerts.json.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

/// Saves `file` atomically: validated first, written to a temporary file
/// (unpredictable name, created exclusively) in the same directory, flushed
/// to disk, then renamed over `path`. The previous version is kept as
/// `alerts.json.bak`. An existing file that does not parse or validate is
/// never replaced (so a typo cannot cost the user their rules) unless
/// `replace_invalid` is set, and then it, too, is kept as the backup.
pub fn save(path: &Path, file: &AlertsFile, replace_invalid: bool) -> Result<(), StoreError> {
    write_file_checked(path, file, replace_invalid, None)
}

/// Saves `file` over `path` only if the file there is still `base` (what
/// the caller read and edited): another writer's change since is never
/// overwritten ([`StoreError::ChangedOnDisk`]).
pub fn save_over(path: &Path, file: &AlertsFile, base: &AlertsFile) -> Result<(), StoreError> {
    write_file_checked(path, file, false, Some(base))
}

fn write_file_checked(
    path: &Path,
    file: &AlertsFile,
    replace_invalid: bool,
    base: Option<&AlertsFile>,
) -> Result<(), StoreError> {
    compile(file, path)?;
    let mut text =
        serde_json::to_string_pretty(file).map_err(|e| io_err("serialize", path)(e.into()))?;
    text.push('\n');
    write(path, text.as_bytes(), replace_invalid, base)
}

/// Writes exact bytes (already known to be a valid file) the same way.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    replace_invalid: bool,
) -> Result<(), StoreError> {
    write(path, bytes, replace_invalid, None)
}

/// A rules file is no secret (mode 0644), but only its owner writes it.
const MODE: u32 = 0o644;

/// The one write path: through a link the user made to its target, in a
/// directory nobody else can write, never through names another user
/// planted (the backup and the temporary file are replaced or created, not
/// opened), and never over a change made since the file was read.
fn write(
    path: &Path,
    bytes: &[u8],
    replace_invalid: bool,
    base: Option<&AlertsFile>,
) -> Result<(), StoreError> {
    let path = &resolve_own_link(path)?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(StoreError::NotAFile(path.to_path_buf()));
    }
    let (dir, name) = CheckedDir::of_file(path, true)?;
    let old = dir.read(&name, MAX_FILE_BYTES)?;
    let stamp = old.as_ref().map(|(_, stamp)| *stamp);
    if let Some((old, _)) = &old {
        if old.len() as u64 > MAX_FILE_BYTES {
            return Err(StoreError::TooLarge {
                path: path.to_path_buf(),
                max: MAX_FILE_BYTES,
            });
        }
        let parsed = load_bytes(old, path);
        if let Some(base) = base
            && !parsed.as_ref().is_ok_and(|r| &r.file == base)
        {
            return Err(StoreError::ChangedOnDisk(path.to_path_buf()));
        }
        if let (Err(e), false) = (parsed, replace_invalid) {
            return Err(StoreError::RefuseToReplace {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
        // Only once nothing changed since the read: a refused save leaves
        // the backup as it was.
        if dir.stamp(&name)? != stamp {
            return Err(StoreError::ChangedOnDisk(path.to_path_buf()));
        }
        let bak = backup_path(Path::new(&name));
        dir.replace(&bak, old, MODE, None)?;
    } else if base.is_some_and(|b| !b.rules.is_empty()) {
        // The file the caller read is gone: removed by another writer.
        return Err(StoreError::ChangedOnDisk(path.to_path_buf()));
    }
    match dir.replace(&name, bytes, MODE, Some(stamp))? {
        Replace::Done => Ok(()),
        Replace::Changed => Err(StoreError::ChangedOnDisk(path.to_path_buf())),
    }
}

/// `portwatch alerts init`: writes the example to `path`. Refuses to touch
/// an existing file unless `force`, and then keeps it as the backup.
pub fn init(path: &Path, force: bool) -> Result<(), StoreError> {
    if path.exists() && !force {
        return Err(StoreError::Exists(path.to_path_buf()));
    }
    load_bytes(
        EXAMPLE.as_bytes(),
        Path::new("examples/alerts.example.json"),
    )?;
    write_atomically(path, EXAMPLE.as_bytes(), force)
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};

    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portwatch-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_example_is_valid() {
        let file = load_bytes(EXAMPLE.as_bytes(), Path::new("example"))
            .unwrap()
            .file;
        let mut kinds: Vec<&str> = file.rules.iter().map(|r| r.condition.type_name()).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), 7, "one rule per condition type: {kinds:?}");
    }

    #[test]
    fn save_keeps_a_backup_and_round_trips() {
        let dir = tmpdir("save");
        let path = dir.join("alerts.json");
        init(&path, false).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), EXAMPLE);
        let mut file = load(&path).unwrap().file;
        file.rules.truncate(1);
        save(&path, &file, false).unwrap();
        assert_eq!(load(&path).unwrap().file, file);
        assert_eq!(fs::read_to_string(backup_path(&path)).unwrap(), EXAMPLE);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_invalid_file_is_never_replaced() {
        let dir = tmpdir("invalid");
        let path = dir.join("alerts.json");
        fs::write(&path, "{\"rules\": [").unwrap();
        let file = load_bytes(EXAMPLE.as_bytes(), Path::new("x")).unwrap().file;
        assert!(matches!(
            save(&path, &file, false),
            Err(StoreError::RefuseToReplace { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"rules\": [");
        assert!(matches!(init(&path, false), Err(StoreError::Exists(_))));
        // Forced: replaced, and the broken file survives as the backup.
        init(&path, true).unwrap();
        assert_eq!(
            fs::read_to_string(backup_path(&path)).unwrap(),
            "{\"rules\": ["
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn what_is_no_regular_file_or_too_large_is_refused_without_blocking() {
        let dir = tmpdir("special");
        let fifo = dir.join("fifo.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from(0o600),
            0,
        )
        .unwrap();
        assert_eq!(
            load(&fifo).unwrap_err().to_string(),
            format!(
                "{} is not a regular file, so it is not read as alerts",
                fifo.display()
            )
        );
        assert!(matches!(
            load(Path::new("/dev/zero")),
            Err(StoreError::NotAFile(_))
        ));
        let big = dir.join("big.json");
        let f = File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert!(matches!(load(&big), Err(StoreError::TooLarge { .. })));
        // Saving over such a path is refused the same way.
        let file = load_bytes(EXAMPLE.as_bytes(), Path::new("x")).unwrap().file;
        assert!(matches!(
            save(&fifo, &file, true),
            Err(StoreError::NotAFile(_))
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_file_says_how_to_create_one() {
        let err = load(Path::new("/nonexistent/alerts.json")).unwrap_err();
        assert!(err.to_string().contains("portwatch alerts init"), "{err}");
    }

    /// Another writer's rule, added after the editor read the file, is
    /// never overwritten by the editor's stale copy; nor is a removal.
    #[test]
    fn save_over_refuses_a_file_changed_since_it_was_read() {
        let dir = tmpdir("changed");
        let path = dir.join("alerts.json");
        init(&path, false).unwrap();
        let base = load(&path).unwrap().file;
        let mut mine = base.clone();
        mine.rules.truncate(1);
        let mut theirs = base.clone();
        theirs.rules[0].name = "theirs".into();
        save(&path, &theirs, false).unwrap();
        let written = fs::read(&path).unwrap();
        assert!(matches!(
            save_over(&path, &mine, &base),
            Err(StoreError::ChangedOnDisk(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), written, "their change stays");
        // Unchanged since read: saved.
        save_over(&path, &mine, &theirs).unwrap();
        assert_eq!(load(&path).unwrap().file, mine);
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            save_over(&path, &base, &mine),
            Err(StoreError::ChangedOnDisk(_))
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    /// A link the user made to their rules (a dotfiles repository): the
    /// save updates its target and keeps the link.
    #[test]
    fn save_through_the_users_own_link_updates_its_target() {
        let dir = tmpdir("link");
        let real = dir.join("dotfiles/alerts.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        init(&real, false).unwrap();
        let path = dir.join("alerts.json");
        std::os::unix::fs::symlink("dotfiles/alerts.json", &path).unwrap();
        let base = load(&path).unwrap().file;
        let mut mine = base.clone();
        mine.rules.truncate(2);
        save_over(&path, &mine, &base).unwrap();
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(load(&real).unwrap().file, mine);
        assert_eq!(fs::read_to_string(backup_path(&real)).unwrap(), EXAMPLE);
        fs::remove_dir_all(dir).unwrap();
    }
}
