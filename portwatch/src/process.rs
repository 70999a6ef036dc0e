//! What portwatch shows about a process that owns sockets: plain data.

use chrono::{DateTime, Utc};

use crate::container::Container;

/// A process, as /proc shows it, with every text made safe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// The process's name (`comm`).
    pub comm: String,
    /// The executable's path; empty when it cannot be read.
    pub exe: String,
    pub cwd: String,
    /// Arguments, each made safe, joined by spaces.
    pub cmdline: String,
    pub uid: u32,
    pub start_time: Option<DateTime<Utc>>,
    pub rss_bytes: u64,
    /// User plus system CPU time, in clock ticks (see `ticks_per_second`).
    pub cpu_ticks: u64,
    pub ticks_per_second: u64,
    pub threads: u32,
    /// Environment variables; values of names that look secret are `***`.
    pub environ: Vec<(String, String)>,
    /// Parent, grandparent, ... up to pid 1: (pid, name).
    pub ancestry: Vec<(u32, String)>,
    /// Processes whose parent this is: (pid, name), by pid.
    pub children: Vec<(u32, String)>,
    pub cgroup: String,
    pub container: Option<Container>,
    /// Network namespace inode.
    pub netns: Option<u64>,
    /// SHA-256 of the executable it runs (hex), or why there is none.
    pub exe_sha256: Result<String, String>,
}

/// What a process adds to a socket's row: where it comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessBrief {
    pub exe: String,
    pub cmdline: String,
    /// Parent, grandparent, ... up to pid 1: (pid, name).
    pub ancestry: Vec<(u32, String)>,
}

/// Words in a variable name that say its value is a secret.
const SECRET_WORDS: [&str; 7] = [
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "KEY",
    "CREDENTIAL",
    "AUTH",
];

/// The value to show for environment variable `name`: `***` when the
/// name looks secret (`API_TOKEN`, `db_password`, `AWS_SECRET_ACCESS_KEY`).
pub fn shown_env_value(name: &str, value: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if SECRET_WORDS.iter().any(|w| upper.contains(w)) {
        "***".into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_values_are_masked() {
        for name in [
            "API_TOKEN",
            "db_password",
            "AWS_SECRET_ACCESS_KEY",
            "GPG_KEY",
            "X_AUTH",
        ] {
            assert_eq!(shown_env_value(name, "hunter2"), "***", "{name}");
        }
        for name in ["PATH", "HOME", "LANG", "PWD"] {
            assert_eq!(shown_env_value(name, "/x"), "/x", "{name}");
        }
    }
}
