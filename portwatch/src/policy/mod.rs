//! Expected listeners: a policy file says which listeners a host should
//! have; [`Policy::matching`] tells whether a listener is one of them,
//! [`drift::Drifts`] follows what differs as listeners come and go, and
//! [`learn`] writes a policy from what is open. Pure: the file's bytes
//! come from `load`, the listeners from the caller.

pub mod drift;
pub mod learn;
pub mod model;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::{container::Runtime, event::Listener, owner::OriginKind};
pub use model::{Entry, ExposureKind, PolicyFile, PortSpec, Scope};

/// The largest policy file read: thousands of entries fit in far less.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a policy cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("no policy file at {0} (`portwatch policy learn --output FILE` writes one)")]
    Missing(PathBuf),
    #[error("cannot read the policy file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a regular file, so it is not read as a policy")]
    NotAFile(PathBuf),
    #[error("{path} is larger than {max} bytes, too large for a policy file")]
    TooLarge { path: PathBuf, max: u64 },
    #[error(
        "{path} belongs to {owner}: a policy another user can change is not used; give the file to root (or to yourself)"
    )]
    NotOwned { path: PathBuf, owner: String },
    #[error("{path} is no policy file: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// A compiled policy: its file, and each entry ready to match.
#[derive(Clone, Debug)]
pub struct Policy {
    file: PolicyFile,
    entries: Vec<Compiled>,
}

#[derive(Clone, Debug)]
struct Compiled {
    exe: Option<GlobMatcher>,
    unit: Option<GlobMatcher>,
    container: Option<GlobMatcher>,
    uid: Option<u32>,
    ports: Option<(u16, u16)>,
    proto: Option<crate::event::Proto>,
    scope: Option<Scope>,
    exposure: Option<ExposureKind>,
}

/// Reads, parses and compiles a policy file (what `policy check`, the
/// monitor and its reloads use).
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    use crate::files::Untrusted;
    let bytes = crate::files::read_trusted(path, MAX_FILE_BYTES)
        .map_err(|e| match e {
            Untrusted::Io(source) => PolicyError::Io {
                path: path.to_path_buf(),
                source,
            },
            Untrusted::NotAFile => PolicyError::NotAFile(path.to_path_buf()),
            Untrusted::TooLarge => PolicyError::TooLarge {
                path: path.to_path_buf(),
                max: MAX_FILE_BYTES,
            },
            Untrusted::NotOwned(owner) => PolicyError::NotOwned {
                path: path.to_path_buf(),
                owner,
            },
        })?
        .ok_or_else(|| PolicyError::Missing(path.to_path_buf()))?;
    Policy::parse(&bytes).map_err(|why| PolicyError::Invalid {
        path: path.to_path_buf(),
        why,
    })
}

impl Policy {
    /// From the file's bytes; Err is one sentence (with where in the file).
    pub fn parse(bytes: &[u8]) -> Result<Policy, String> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let file: PolicyFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let inner = crate::safe_text::safe_str(&e.into_inner().to_string());
            if at == "." {
                inner
            } else {
                format!("at {at}: {inner}")
            }
        })?;
        Policy::compile(file)
    }

    /// Checks every entry and readies it for matching.
    pub fn compile(file: PolicyFile) -> Result<Policy, String> {
        if file.version != model::VERSION {
            return Err(format!(
                "version {} is not one this portwatch reads (it reads {})",
                file.version,
                model::VERSION
            ));
        }
        let entries = file
            .expected
            .iter()
            .enumerate()
            .map(|(i, e)| compile_entry(e).map_err(|why| format!("at expected[{i}]: {why}")))
            .collect::<Result<_, _>>()?;
        Ok(Policy { file, entries })
    }

    pub fn file(&self) -> &PolicyFile {
        &self.file
    }

    pub fn entries(&self) -> &[Entry] {
        &self.file.expected
    }

    /// The first entry `listener` matches, by index.
    pub fn matching(&self, listener: &Listener) -> Option<usize> {
        let facts = Facts::of(listener);
        self.entries
            .iter()
            .position(|c| c.matches(listener, &facts))
    }

    /// The tags of a drift: the policy's, then the entry's.
    pub fn tags(&self, entry: Option<usize>) -> Vec<String> {
        merged_tags(
            &self.file.tags,
            entry.and_then(|i| self.file.expected.get(i)),
        )
    }
}

/// A policy's tags, then an entry's that are not among them.
pub(crate) fn merged_tags(policy: &[String], entry: Option<&Entry>) -> Vec<String> {
    let mut tags = policy.to_vec();
    for t in entry.map(|e| e.tags.as_slice()).unwrap_or_default() {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    tags
}

fn glob(text: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(text)
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| format!("`{}` is no glob: {e}", crate::safe_text::safe_str(text)))
}

fn compile_entry(e: &Entry) -> Result<Compiled, String> {
    if e.exe.is_none() && e.unit.is_none() && e.container.is_none() && e.port.is_none() {
        return Err(
            "an entry needs at least one of exe, unit, container and port (else it expects every listener)"
                .into(),
        );
    }
    let uid = match &e.user {
        None => None,
        Some(u) => Some(crate::sys::users::uid_of(u).ok_or_else(|| {
            format!(
                "there is no user `{}` on this host",
                crate::safe_text::safe_str(u)
            )
        })?),
    };
    Ok(Compiled {
        exe: e.exe.as_deref().map(glob).transpose()?,
        unit: e.unit.as_deref().map(glob).transpose()?,
        container: e.container.as_deref().map(glob).transpose()?,
        uid,
        ports: e.port.as_ref().map(PortSpec::bounds).transpose()?,
        proto: e.proto,
        scope: e.scope,
        exposure: e.exposure,
    })
    .and_then(|c| check_rest(e).map(|()| c))
}

/// Fields serde checked already; tags must be printable.
fn check_rest(e: &Entry) -> Result<(), String> {
    for t in &e.tags {
        if t.is_empty() || t.chars().any(char::is_control) {
            return Err("a tag must be a non-empty line of text".into());
        }
    }
    Ok(())
}

/// What of a listener an entry looks at, found once per match.
struct Facts<'a> {
    exe: Option<&'a str>,
    unit: Option<&'a str>,
    containers: [Option<&'a str>; 2],
    /// In a user's own systemd tree: its unit and container names vouch
    /// only for entries that name the user.
    in_user_tree: bool,
    scope: Scope,
    exposure: Option<&'static str>,
}

impl<'a> Facts<'a> {
    fn of(l: &'a Listener) -> Facts<'a> {
        let context = l.context.as_deref();
        let (unit, containers) = match &l.container {
            Some(c) if c.runtime == Runtime::Service => (Some(c.id.as_str()), [None, None]),
            Some(c) => (None, [c.name.as_deref(), Some(c.id.as_str())]),
            None => (None, [None, None]),
        };
        // A user unit or an unnamed service is in the context's source.
        let unit = unit.or_else(|| {
            context
                .filter(|c| c.source.kind == OriginKind::Systemd)
                .map(|c| c.source.name.as_str())
        });
        Facts {
            exe: context.and_then(|c| c.exe.as_deref()),
            unit,
            containers,
            // A user's own systemd manager names its units and cgroups as
            // it likes (`systemd-run --user --unit nginx.service`).
            in_user_tree: l.cgroup.split('/').any(|p| p.starts_with("user@")),
            scope: Scope::of(l.address),
            exposure: l.exposure.as_ref().map(crate::event::Exposure::name),
        }
    }
}

impl Compiled {
    fn matches(&self, l: &Listener, f: &Facts) -> bool {
        // Names from a user's own tree count only for entries about that
        // user: that user chose them.
        let (unit, containers) = if f.in_user_tree && self.uid.is_none() {
            (None, [None, None])
        } else {
            (f.unit, f.containers)
        };
        let glob_ok = |g: &Option<GlobMatcher>, v: Option<&str>| match g {
            None => true,
            Some(g) => v.is_some_and(|v| g.is_match(v)),
        };
        self.ports
            .is_none_or(|(lo, hi)| (lo..=hi).contains(&l.port))
            && self.proto.is_none_or(|p| p == l.proto)
            && self.scope.is_none_or(|s| s == f.scope)
            && self.exposure.is_none_or(|e| f.exposure == Some(e.as_str()))
            && self.uid.is_none_or(|u| u == l.uid)
            && glob_ok(&self.exe, f.exe)
            && glob_ok(&self.unit, unit)
            && (self.container.is_none()
                || containers
                    .iter()
                    .any(|c| c.is_some() && glob_ok(&self.container, *c)))
    }
}
