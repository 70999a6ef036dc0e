//! Command-line arguments.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "portwatch",
    version,
    about = "Reports the moment any process starts or stops listening on a TCP port"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the current listeners, then every listener opened or closed
    Watch(WatchArgs),
    /// Print the listening TCP sockets and their owners, like `ss -ltnp`
    List(ListArgs),
    /// Manage the alert rules file (alerts.json)
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Watch and evaluate the alert rules, printing each alert
    Daemon(DaemonArgs),
}

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Check a rules file (default: the one portwatch reads)
    Validate {
        /// The file to check
        file: Option<PathBuf>,
    },
    /// Print the path of the rules file portwatch reads
    Path,
    /// Write the example rules to the canonical path
    Init {
        /// Replace an existing file (it is kept as alerts.json.bak)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// The rules file (default: the canonical path, or the legacy one)
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
    /// Only this process and its descendants
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// How often the CPU and memory of listening processes are sampled
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub sample_interval: Duration,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// One JSON object per line instead of aligned text
    #[arg(long)]
    pub json: bool,
    /// Print event, loss and resync counters on exit
    #[arg(long)]
    pub stats: bool,
    /// Only this process and its descendants (children, threads, daemons that re-parented)
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Which local addresses: all, or local (127.0.0.1, 0.0.0.0, ::1, ::)
    #[arg(long, value_enum, default_value_t = ScopeArg::All)]
    pub scope: ScopeArg,
    /// Only this network namespace (the inode number of /proc/PID/ns/net)
    #[arg(long, value_name = "INODE")]
    pub netns: Option<u64>,
    /// Event source: ebpf, procfs polling, or auto (eBPF, else procfs with a warning)
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Rescan procfs and report differences this often (0 disables; e.g. 60, 30s, 500ms)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// Poll interval of the procfs backend
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Kernel ring buffer size: a power of two of at least 4096 bytes (suffixes K, M)
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size)]
    pub ring_buffer: u64,
    /// Tracepoint flavour of the kernel program: auto (tp-btf when the kernel has BTF), tracepoint, tp-btf
    #[arg(long, value_enum, default_value_t = HookArg::Auto)]
    pub hook: HookArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    All,
    Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Auto,
    Ebpf,
    Procfs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HookArg {
    Auto,
    Tracepoint,
    TpBtf,
}

/// Parses `60`, `60s`, `500ms`, `2m`; `0` means off.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let err = || format!("`{s}` is not a duration (e.g. 60, 30s, 500ms, 2m)");
    let (digits, unit_ms) = if let Some(d) = s.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = s.strip_suffix('s') {
        (d, 1000)
    } else if let Some(d) = s.strip_suffix('m') {
        (d, 60_000)
    } else {
        (s, 1000)
    };
    let n: u64 = digits.trim().parse().map_err(|_| err())?;
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(err)
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// One JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Parses `4096`, `256K`, `4M` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a size in bytes (e.g. 4096, 256K, 4M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256K"), Ok(262_144));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999999999999M").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
