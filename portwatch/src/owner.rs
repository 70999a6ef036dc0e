//! Why a listener's owner is there: its ancestry, what started it, the
//! project it runs in and where its binary comes from. Plain data, and the
//! pure judgement of a process's origin from what `sys` reads
//! ([`OwnerFacts`]).

use serde::{Deserialize, Serialize};

use crate::container::{Container, Runtime};

/// A listener owner's story, told once per process (by pid and start
/// time) when its first listener opens, and kept while it listens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OwnerContext {
    /// The owner, its parent, ... up to pid 1 or the init of the owner's
    /// pid namespace, as it was when the owner's first listener opened.
    pub ancestry: Vec<Ancestor>,
    /// What started it.
    pub source: Origin,
    /// Its working directory, made safe; absent when unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The git work tree its working directory is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitCheckout>,
    /// Its executable's path, made safe; absent when unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The executable was removed or replaced after the process started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exe_deleted: bool,
    /// Its arguments, joined by spaces, made safe and cut to
    /// [`MAX_TEXT`] characters; absent when unreadable. They may hold a
    /// secret: only root and the owner's own user are shown them, and the
    /// journal does not keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// The Debian package that owns the executable; `null` when no
    /// package does (or the host has no dpkg database).
    pub package: Option<String>,
    /// SHA-256 of the executable the process runs (hex), where asked for
    /// (`list --hash`, the TUI's details).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_sha256: Option<String>,
}

/// One process of an ancestry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ancestor {
    pub pid: u32,
    /// Its name (`comm`), made safe.
    pub comm: String,
}

/// What started a process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Origin {
    pub kind: OriginKind,
    /// `systemd`: the unit; `container`: `RUNTIME:NAME` (the name, or
    /// the short id); `supervisor`: `supervisord`, `pm2`, `s6` or `runit`;
    /// `cron`: the cron daemon's name; `ssh`: the login user; `terminal`:
    /// the multiplexer or terminal (`tmux`, `screen`, ...) or the tty
    /// (`pts/3`); `init`: the name of pid 1 (or of the namespace's init).
    pub name: String,
    /// `systemd`: the user whose manager runs the unit (absent for a
    /// system unit); `ssh`, `terminal`: the login user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ssh`, `terminal`: the login session (its audit session id) or the
    /// tmux pane, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Root vouches for it: a system unit, a container in a cgroup only
    /// root makes, or a supervisor, cron or sshd that runs as root. An
    /// untrusted source is the owner's user's own word (a process name,
    /// an environment variable, a cgroup of its own user manager), which
    /// that user can forge; `known_processes` entries `source:` match
    /// trusted sources only.
    #[serde(default)]
    pub trusted: bool,
}

/// See [`Origin`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OriginKind {
    Systemd,
    Container,
    Supervisor,
    Cron,
    Ssh,
    Terminal,
    #[default]
    Init,
}

impl OriginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OriginKind::Systemd => "systemd",
            OriginKind::Container => "container",
            OriginKind::Supervisor => "supervisor",
            OriginKind::Cron => "cron",
            OriginKind::Ssh => "ssh",
            OriginKind::Terminal => "terminal",
            OriginKind::Init => "init",
        }
    }
}

impl Origin {
    /// `KIND:NAME`, what a `known_processes` entry `source:REGEX` matches.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)?;
        if let Some(user) = &self.user {
            write!(f, " (user {user})")?;
        }
        if let Some(session) = &self.session {
            write!(f, " session {session}")?;
        }
        Ok(())
    }
}

/// A git work tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GitCheckout {
    /// The work tree's top directory.
    pub root: String,
    /// The branch checked out; absent for a detached HEAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// What `sys` reads about a process to tell its story.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerFacts {
    /// Start time, in clock ticks since boot: with the pid, it names the
    /// process for its whole life.
    pub start_time: u64,
    /// The owner first.
    pub ancestry: Vec<Forebear>,
    /// The controlling terminal (`pts/3`), if any.
    pub tty: Option<String>,
    /// The audit login user and session (`/proc/PID/loginuid`,
    /// `sessionid`), if set.
    pub login_user: Option<String>,
    pub session: Option<u32>,
    /// `TMUX_PANE`, when its environment says it runs in tmux.
    pub tmux_pane: Option<String>,
    /// Its environment says it came from an ssh login (`SSH_CONNECTION`).
    pub ssh_env: bool,
    pub cwd: Option<String>,
    pub git: Option<GitCheckout>,
    pub exe: Option<String>,
    /// The file it runs (device, inode), to check that the file at `exe`
    /// is that one before naming its package.
    pub exe_id: Option<(u64, u64)>,
    pub exe_deleted: bool,
    pub cmdline: Option<String>,
}

/// The longest text a context keeps of a path or name (in characters,
/// after it was made safe): a path a user made long cannot make every
/// line about their listener long.
pub const MAX_TEXT: usize = 1024;

/// `text`, cut to [`MAX_TEXT`] characters with `…` when longer.
pub fn capped(text: String) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
        None => text,
    }
}

/// A process of an owner's ancestry, as `sys` read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forebear {
    pub ancestor: Ancestor,
    /// Its cgroup path, read while it is the owner's (empty after the
    /// first that is not).
    pub cgroup: String,
    /// It runs as root (real and effective uid 0): no other user can
    /// have made it, whatever its name. Read for the owner, and for an
    /// ancestor whose name tells a story ([`names_a_story`]); false for
    /// the others.
    pub root: bool,
}

/// Ancestors read during one batch (the baseline's listeners), by pid:
/// name, parent, and cgroup once read. A batch is one snapshot, so a
/// shared ancestor is read once for all its descendants; a live open
/// starts with an empty memo, its ancestors read as they are now.
#[derive(Debug, Default)]
pub struct AncestorMemo(pub std::collections::HashMap<u32, Remembered>);

/// An ancestor as [`AncestorMemo`] keeps it.
#[derive(Debug, Default)]
pub struct Remembered {
    pub comm: String,
    pub ppid: u32,
    pub root: bool,
    /// Read only when needed (see [`Forebear::cgroup`]).
    pub cgroup: Option<String>,
}

/// Supervisors, by the name their process has.
fn supervisor(comm: &str) -> Option<&'static str> {
    match comm {
        "supervisord" => Some("supervisord"),
        "s6-supervise" | "s6-svscan" => Some("s6"),
        "runsv" | "runsvdir" => Some("runit"),
        // PM2's daemon names itself `PM2 v5.3.0: God Daemon`.
        c if c.starts_with("PM2 ") || c == "pm2" => Some("pm2"),
        _ => None,
    }
}

/// Terminals and multiplexers, by the name their process has.
fn terminal(comm: &str) -> Option<&'static str> {
    match comm {
        c if c.starts_with("tmux") => Some("tmux"),
        "screen" | "SCREEN" => Some("screen"),
        "gnome-terminal-" => Some("gnome-terminal"),
        "konsole" => Some("konsole"),
        "xterm" => Some("xterm"),
        "alacritty" => Some("alacritty"),
        "kitty" => Some("kitty"),
        "wezterm-gui" => Some("wezterm"),
        _ => None,
    }
}

/// The story a process's name tells of its descendants, and whether it
/// must run as root to be believed.
fn story(comm: &str) -> Option<(OriginKind, &'static str)> {
    if let Some(name) = supervisor(comm) {
        return Some((OriginKind::Supervisor, name));
    }
    match comm {
        "cron" => Some((OriginKind::Cron, "cron")),
        "crond" => Some((OriginKind::Cron, "crond")),
        "CRON" => Some((OriginKind::Cron, "CRON")),
        "sshd" | "sshd-session" => Some((OriginKind::Ssh, "sshd")),
        _ => terminal(comm).map(|name| (OriginKind::Terminal, name)),
    }
}

/// Whether a process of this name tells its descendants' story (a
/// supervisor, cron, sshd, a terminal): `sys` reads whether such an
/// ancestor runs as root, and no other's.
pub fn names_a_story(comm: &str) -> bool {
    story(comm).is_some()
}

impl OwnerFacts {
    /// What an ancestor's name says started the owner. A supervisor,
    /// cron or sshd is trusted when one of its kind runs as root in the
    /// ancestry (an ssh login's own sshd runs as the user, its parent as
    /// root); a name alone is anyone's to take.
    fn origin_of(&self, comm: &str) -> Option<Origin> {
        let (kind, name) = story(comm)?;
        let login = || self.login_user.clone();
        let session = || self.session.map(|s| s.to_string());
        let trusted = kind != OriginKind::Terminal
            && self
                .ancestry
                .iter()
                .skip(1)
                .any(|f| f.root && story(&f.ancestor.comm).is_some_and(|(k, _)| k == kind));
        let o = match kind {
            OriginKind::Ssh => Origin {
                user: login(),
                session: session(),
                ..origin(
                    OriginKind::Ssh,
                    &self.login_user.clone().unwrap_or_default(),
                )
            },
            OriginKind::Terminal => Origin {
                user: login(),
                session: self.tmux_pane.clone().filter(|_| name == "tmux"),
                ..origin(OriginKind::Terminal, name)
            },
            _ => origin(kind, name),
        };
        Some(Origin { trusted, ..o })
    }

    /// What started the owner. A container says it first. Then the
    /// nearest ancestor that names a story (a supervisor, cron, sshd, a
    /// terminal) in the owner's own cgroup; then the owner's systemd
    /// service; then such an ancestor anywhere (a shell in a tmux pane
    /// that tmux put in a scope of its own); then what the environment
    /// and the terminal say (a server started through `setsid` lost its
    /// parents but not its environment); else init.
    pub fn origin(&self, container: Option<&Container>) -> Origin {
        let own_cgroup = self.ancestry.first().map(|f| f.cgroup.as_str());
        if let Some(c) = container.filter(|c| c.runtime != Runtime::Service) {
            let name = c.name.clone().unwrap_or_else(|| c.short_id().to_string());
            return Origin {
                // A rootless container sits in its user's own manager.
                trusted: own_cgroup.is_some_and(|cg| user_manager(cg).is_none()),
                ..origin(
                    OriginKind::Container,
                    &format!("{}:{name}", c.runtime.as_str()),
                )
            };
        }
        let parents = self.ancestry.iter().skip(1);
        let same_cgroup = parents
            .clone()
            .take_while(|f| Some(f.cgroup.as_str()) == own_cgroup);
        for f in same_cgroup {
            if let Some(o) = self.origin_of(&f.ancestor.comm) {
                return o;
            }
        }
        if let Some(o) = own_cgroup.and_then(systemd_unit) {
            return o;
        }
        for f in parents {
            if let Some(o) = self.origin_of(&f.ancestor.comm) {
                return o;
            }
        }
        if let Some(pane) = &self.tmux_pane {
            return Origin {
                user: self.login_user.clone(),
                session: Some(pane.clone()),
                ..origin(OriginKind::Terminal, "tmux")
            };
        }
        if self.ssh_env {
            return Origin {
                user: self.login_user.clone(),
                session: self.session.map(|s| s.to_string()),
                ..origin(
                    OriginKind::Ssh,
                    &self.login_user.clone().unwrap_or_default(),
                )
            };
        }
        if let Some(tty) = &self.tty {
            return Origin {
                user: self.login_user.clone(),
                session: self.session.map(|s| s.to_string()),
                ..origin(OriginKind::Terminal, tty)
            };
        }
        let init = self.ancestry.last().map(|f| f.ancestor.comm.as_str());
        origin(OriginKind::Init, init.unwrap_or_default())
    }
}

/// The uid whose systemd user manager a cgroup path is under
/// (`.../user@1000.service/...`), if any.
fn user_manager(cgroup: &str) -> Option<&str> {
    cgroup
        .split('/')
        .find_map(|p| p.strip_prefix("user@")?.strip_suffix(".service"))
}

fn origin(kind: OriginKind, name: &str) -> Origin {
    Origin {
        kind,
        name: name.to_string(),
        user: None,
        session: None,
        trusted: false,
    }
}

/// The systemd service unit a cgroup path is the innermost of: a system
/// unit (`/system.slice/nginx.service`) or a user's
/// (`/user.slice/user-1000.slice/user@1000.service/app.slice/dev.service`,
/// user `1000`). Scopes (login sessions, terminals) are no service.
pub fn systemd_unit(cgroup: &str) -> Option<Origin> {
    let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
    let unit = parts.last().filter(|p| p.ends_with(".service"))?;
    // Only root makes cgroups outside a user manager's delegated tree.
    let system = Origin {
        trusted: true,
        ..origin(OriginKind::Systemd, unit)
    };
    match user_manager(cgroup) {
        // The user manager itself (`user@1000.service` is a system unit).
        Some(_) if unit.starts_with("user@") => Some(system),
        Some(uid) => Some(Origin {
            user: Some(uid.to_string()),
            ..origin(OriginKind::Systemd, unit)
        }),
        None => Some(system),
    }
}

/// The branch a git `HEAD` file names (`ref: refs/heads/NAME`): `Some`
/// of the branch, or of `None` for a detached HEAD; `None` when it is no
/// HEAD file.
pub fn branch_of_head(head: &[u8]) -> Option<Option<String>> {
    let text = std::str::from_utf8(head).ok()?.trim_end();
    if let Some(r) = text.strip_prefix("ref: ") {
        let name = r.strip_prefix("refs/heads/").unwrap_or(r);
        return Some(Some(capped(crate::safe_text::safe_str(name))));
    }
    if text.len() >= 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(None);
    }
    None
}

/// The directory a `.git` file points to (`gitdir: PATH`, as a linked
/// work tree or a submodule has it), relative to the `.git` file's
/// directory when not absolute.
pub fn gitdir_of_file(dotgit: &[u8]) -> Option<&str> {
    std::str::from_utf8(dotgit)
        .ok()?
        .trim_end()
        .strip_prefix("gitdir: ")
        .filter(|p| !p.is_empty() && !p.contains('\0'))
}

#[cfg(test)]
mod tests;
