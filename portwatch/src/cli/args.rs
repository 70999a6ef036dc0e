//! Command-line arguments: the raw flags, and the one step that turns
//! them into validated settings ([`EngineArgs::config`]).

use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use portwatch::{Backend, EngineConfig, Filter, Hook, Proto, Scope, engine::ring_buffer_bytes};

#[derive(Parser, Debug)]
#[command(
    name = "portwatch",
    version,
    about = "Reports the moment any process starts or stops listening on a TCP port or binds a UDP port",
    long_about = "Reports the moment any process starts or stops listening on a TCP port or binds a UDP port. \
        Without a command, opens the terminal UI.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub tui: TuiArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The terminal UI (also what `portwatch` alone opens)
    Tui(TuiArgs),
    /// Print the current listeners, then every listener opened or closed
    Watch(WatchArgs),
    /// Print the listening TCP sockets and bound UDP ports and their owners, like `ss -ltunp`
    List(ListArgs),
    /// Manage the alert rules file (alerts.json)
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Expected listeners: learn a policy from this host, or check the host against one
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Who held a port, from the journal: at an instant (--at), or every open and close in order
    History(HistoryArgs),
    /// Watch and evaluate the alert rules, printing each alert; with --socket, serve events to local clients
    Daemon(DaemonArgs),
    /// Show a running daemon's alerts as desktop notifications, in your session (no root needed)
    Notify(NotifyArgs),
    /// Check what portwatch needs here, in order, and name the first blocker with its fix
    Doctor {
        /// One JSON object instead of lines
        #[arg(long)]
        json: bool,
    },
    /// Print the completion script for a shell (e.g. `portwatch completions bash > /etc/bash_completion.d/portwatch`)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write the man pages (portwatch.1 and one per command) into DIR; packages run it
    #[command(hide = true)]
    Manpages {
        /// Where to write them (made if missing)
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Write the listeners open now (and those opened within --for) as a policy
    Learn {
        /// Also watch this long and add what opens meanwhile (e.g. 10m)
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Write the policy to FILE (replaced atomically) instead of stdout
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// A tag for every drift the policy reports, e.g. PCI-DSS-10.2.7 (repeatable)
        #[arg(long, value_name = "TAG")]
        tag: Vec<String>,
        /// Only the listeners of this network namespace (the inode number of /proc/PID/ns/net)
        #[arg(long, value_name = "INODE")]
        netns: Option<u64>,
    },
    /// Compare the listeners open now with a policy: exit 0 when they match, 1 with each drift, 2 when the check cannot run
    Check {
        /// The policy file
        file: PathBuf,
        /// One JSON `drift` line per drift instead of text
        #[arg(long)]
        json: bool,
        /// Only the listeners of this network namespace (the inode number of /proc/PID/ns/net)
        #[arg(long, value_name = "INODE")]
        netns: Option<u64>,
    },
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

/// What to watch and how: shared by `watch` and `daemon`.
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Only this process and its descendants (children, threads, daemons that re-parented)
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Which local addresses: all, or local (127.0.0.1, 0.0.0.0, ::1, ::)
    #[arg(long, value_enum, default_value_t = Scope::All)]
    pub scope: Scope,
    /// Only this network namespace (the inode number of /proc/PID/ns/net)
    #[arg(long, value_name = "INODE")]
    pub netns: Option<u64>,
    /// Only this protocol
    #[arg(long, value_enum, default_value_t = ProtoArg::All)]
    pub proto: ProtoArg,
    /// Event source: ebpf, procfs polling, or auto (eBPF, else procfs with a warning)
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
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
    #[arg(long, value_enum, default_value_t = Hook::Auto)]
    pub hook: Hook,
    /// Report each listen() once it returned, with its final port (a kernel program at listen()'s return; io_uring's once the socket tables show it): auto (when tp-btf and tracefs allow), off
    #[arg(long, value_enum, default_value_t = Toggle::Auto)]
    pub listen_callback: Toggle,
    /// Report a listener only once it has lived this long; one that closes sooner is not reported (e.g. 50ms; 0: off)
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub settle: Duration,
    /// Count UDP binds per process and port class instead of reporting each: a udp_summary every DURATION (default 1s), and the sockets still open then reported one by one
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "1s", value_parser = parse_duration)]
    pub udp_aggregate: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    Auto,
    Off,
}

impl EngineArgs {
    /// The settle time, if any.
    pub fn settle(&self) -> Option<Duration> {
        (!self.settle.is_zero()).then_some(self.settle)
    }

    /// The validated engine settings, or one sentence naming the flag.
    pub fn config(&self) -> anyhow::Result<EngineConfig> {
        if self.interval.is_zero() {
            bail!("--interval must be longer than 0");
        }
        if self.udp_aggregate.is_some_and(|d| d.is_zero()) {
            bail!("--udp-aggregate must be longer than 0");
        }
        Ok(EngineConfig {
            backend: self.backend,
            ring_buffer_bytes: ring_buffer_bytes(self.ring_buffer)?,
            hook: self.hook,
            listen_callback: self.listen_callback == Toggle::Auto,
            filter: Filter {
                scope: self.scope,
                netns: self.netns,
                pid: self.pid,
                proto: self.proto.proto(),
            },
            resync_interval: (!self.resync_interval.is_zero()).then_some(self.resync_interval),
            poll_interval: self.interval,
            connections: false,
            udp_aggregate: self.udp_aggregate,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
    All,
}

impl ProtoArg {
    pub fn proto(self) -> Option<Proto> {
        match self {
            ProtoArg::Tcp => Some(Proto::Tcp),
            ProtoArg::Udp => Some(Proto::Udp),
            ProtoArg::All => None,
        }
    }
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// The rules file (default: the canonical path, or the legacy one)
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
    /// How lines are written
    #[arg(long, value_enum, conflicts_with = "json")]
    pub format: Option<crate::sink::Format>,
    /// How often the CPU and memory of listening processes are sampled
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub sample_interval: Duration,
    /// portwatch 0.1.8's refresh, in milliseconds: sets --sample-interval and, for the procfs backend, --interval (eBPF reports ports live)
    #[arg(short = 'i', long, value_name = "MS", conflicts_with_all = ["sample_interval", "interval"])]
    pub interval_ms: Option<u64>,
    /// Kept for portwatch 0.1.8's scripts: the rules file is always reloaded when it changes
    #[arg(long)]
    pub watch_config: bool,
    /// Run this shell command for each alert, the alert's JSON on its stdin (repeatable)
    #[arg(long, value_name = "CMD")]
    pub exec: Vec<String>,
    /// Kill an --exec command still running after this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub exec_timeout: Duration,
    /// POST each alert's JSON to this URL, retried with backoff (repeatable)
    #[arg(long, value_name = "URL")]
    pub webhook: Vec<String>,
    /// Give up on one webhook request after this long (it is then retried)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
    /// Show each alert as a desktop notification (needs a session bus: for a root daemon, run `portwatch notify` in the user's session instead)
    #[arg(long)]
    pub notify: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (and /healthz, /readyz), e.g. 127.0.0.1:9187
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// What portwatch says on stderr: text lines, or one JSON object per line (for journald and log shippers)
    #[arg(long, value_enum, default_value_t = crate::log::LogFormat::Text)]
    pub log_format: crate::log::LogFormat,
    /// Report drifts from this expected-listeners policy (reloaded when it changes)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Keep the journal of every listener opened and closed here (`portwatch history` reads it)
    #[arg(long, value_name = "PATH", default_value = portwatch::journal::DEFAULT_PATH)]
    pub journal: PathBuf,
    /// Keep no journal
    #[arg(long, conflicts_with = "journal")]
    pub no_journal: bool,
    #[command(flatten)]
    pub journal_limits: JournalArgs,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    /// Serve events to local clients on this Unix socket (default /run/portwatch/portwatch.sock)
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = portwatch::serve::DEFAULT_SOCKET)]
    pub socket: Option<PathBuf>,
    /// The group whose members may connect to the socket (default: portwatch, when it exists; else root alone)
    #[arg(long, value_name = "GROUP", requires = "socket")]
    pub socket_group: Option<String>,
    /// Lines or baselines queued per socket client before it is told it lost events
    #[arg(
        long,
        value_name = "ITEMS",
        default_value_t = 4096,
        requires = "socket"
    )]
    pub socket_queue: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl DaemonArgs {
    /// The validated engine settings and sampling interval.
    pub fn config(&self) -> anyhow::Result<(EngineConfig, Duration)> {
        let mut engine = self.engine.config()?;
        let mut sample = self.sample_interval;
        if let Some(ms) = self.interval_ms {
            if ms == 0 {
                bail!("--interval-ms must be longer than 0");
            }
            sample = Duration::from_millis(ms);
            engine.poll_interval = sample;
        }
        if sample.is_zero() {
            bail!("--sample-interval must be longer than 0");
        }
        Ok((engine, sample))
    }

    /// Where alerts are delivered besides the daemon's output.
    pub fn delivery_config(&self) -> anyhow::Result<crate::deliver::DeliveryConfig> {
        if self.exec_timeout.is_zero() {
            bail!("--exec-timeout must be longer than 0");
        }
        if self.webhook_timeout.is_zero() {
            bail!("--webhook-timeout must be longer than 0");
        }
        // A URL is quoted without its secrets (user and password, path,
        // query): an error message ends up in logs.
        for url in &self.webhook {
            crate::deliver::webhook::check_url("webhook", url)?;
        }
        if self.exec.iter().any(|c| c.trim().is_empty()) {
            bail!("--exec needs a command");
        }
        if self.notify {
            crate::deliver::notify::check_session_bus()?;
        }
        Ok(crate::deliver::DeliveryConfig {
            exec: self.exec.clone(),
            exec_timeout: self.exec_timeout,
            webhooks: self.webhook.clone(),
            webhook_timeout: self.webhook_timeout,
            notify: self.notify,
        })
    }

    /// The event socket's settings, if it is asked for.
    pub fn socket_config(&self) -> anyhow::Result<Option<portwatch::serve::SocketConfig>> {
        let Some(path) = &self.socket else {
            return Ok(None);
        };
        if self.socket_queue == 0 {
            bail!("--socket-queue must be at least 1");
        }
        let mut config = portwatch::serve::SocketConfig::new(path.clone());
        if let Some(name) = &self.socket_group {
            config.group = Some(portwatch::serve::group_id(name)?);
        }
        config.queue = self.socket_queue;
        Ok(Some(config))
    }
}

/// `--otlp` and its settings (watch and daemon).
#[derive(Args, Clone)]
pub struct OtlpArgs {
    /// Export every event and alert as an OpenTelemetry log record to this OTLP/HTTP logs endpoint, e.g. http://collector:4318/v1/logs
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
    /// A header for each OTLP request, e.g. 'Authorization=Bearer TOKEN' (repeatable; never printed, but other users see a command line: prefer OTEL_EXPORTER_OTLP_HEADERS)
    #[arg(long, value_name = "NAME=VALUE", requires = "otlp")]
    pub otlp_header: Vec<String>,
    /// Give up on one OTLP request after this long (it is then retried)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, requires = "otlp")]
    pub otlp_timeout: Duration,
    /// Log records kept for the collector while it is slow or down; more are dropped, and counted
    #[arg(
        long,
        value_name = "RECORDS",
        default_value_t = 65536,
        requires = "otlp"
    )]
    pub otlp_queue: usize,
}

/// Without the headers, which hold secrets.
impl std::fmt::Debug for OtlpArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpArgs")
            .field(
                "otlp",
                &self.otlp.as_deref().map(crate::deliver::webhook::shown),
            )
            .field("otlp_header", &self.otlp_header.len())
            .field("otlp_timeout", &self.otlp_timeout)
            .field("otlp_queue", &self.otlp_queue)
            .finish()
    }
}

impl OtlpArgs {
    /// The exporter's settings, when `--otlp` asks for one. Without
    /// `--otlp-header`, the headers of `OTEL_EXPORTER_OTLP_LOGS_HEADERS`
    /// or `OTEL_EXPORTER_OTLP_HEADERS` (`NAME=VALUE,NAME=VALUE`): an
    /// environment only root reads.
    pub fn config(&self) -> anyhow::Result<Option<crate::otlp::OtlpConfig>> {
        let Some(url) = &self.otlp else {
            return Ok(None);
        };
        let mut headers = self.otlp_header.clone();
        if headers.is_empty() {
            // As OpenTelemetry's SDKs read them: pairs joined by commas,
            // values percent-encoded (`Authorization=Basic%20...`).
            let env = [
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                "OTEL_EXPORTER_OTLP_HEADERS",
            ]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|v| !v.trim().is_empty())
            .unwrap_or_default();
            headers = env
                .split(',')
                .filter(|h| !h.trim().is_empty())
                .map(|h| match h.split_once('=') {
                    Some((name, value)) => format!("{name}={}", percent_decoded(value)),
                    None => h.to_string(),
                })
                .collect();
        }
        crate::otlp::OtlpConfig::new(url, &headers, self.otlp_timeout, self.otlp_queue).map(Some)
    }
}

/// Where the journal is kept and how much of it.
#[derive(Args, Debug, Clone)]
pub struct JournalArgs {
    /// Drop closed listeners older than this from the journal (0: keep them)
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
    pub journal_retention: Duration,
    /// Drop the oldest closed listeners while the journal takes more than this (0: no limit)
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub journal_max: u64,
    /// The group whose members may read the journal (default: portwatch, when it exists; else root alone)
    #[arg(long, value_name = "GROUP")]
    pub journal_group: Option<String>,
}

impl JournalArgs {
    pub fn config(&self, path: PathBuf) -> anyhow::Result<portwatch::journal::JournalConfig> {
        let group = match &self.journal_group {
            Some(name) => Some(portwatch::serve::group_id(name)?),
            None => portwatch::serve::group_id("portwatch").ok(),
        };
        Ok(portwatch::journal::JournalConfig {
            path,
            retention: Some(self.journal_retention).filter(|d| !d.is_zero()),
            max_bytes: Some(self.journal_max).filter(|&m| m > 0),
            group,
        })
    }
}

#[derive(Args, Debug)]
pub struct TuiArgs {
    /// How often CPU and memory are sampled, in milliseconds (portwatch 0.1.8's refresh)
    #[arg(short = 'r', long, value_name = "MS", default_value_t = 2000)]
    pub refresh_interval: u64,
    /// Show only the rows this filter matches (e.g. node, port:3000..3999, !proto:udp)
    #[arg(short = 'f', long, value_name = "TEXT", default_value = "")]
    pub filter: String,
    /// No kill keys and no rule editor
    #[arg(long)]
    pub read_only: bool,
    /// The rules file to evaluate and edit (default: the canonical path, or the legacy one)
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
    /// Mark the listeners this expected-listeners policy does not expect (filter `drift:yes`)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The journal whose last holders of a port the details show (when it can be read)
    #[arg(long, value_name = "PATH", default_value = portwatch::journal::DEFAULT_PATH)]
    pub journal: PathBuf,
    /// Show a running `portwatch daemon --socket` (no root needed; default /run/portwatch/portwatch.sock). Only --pid, --proto, --scope and --netns apply
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        default_missing_value = portwatch::serve::DEFAULT_SOCKET,
        conflicts_with_all = ["alerts", "policy", "backend", "resync_interval", "interval", "ring_buffer", "hook", "listen_callback", "settle"],
    )]
    pub connect: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// One JSON object per line instead of aligned text
    #[arg(long)]
    pub json: bool,
    /// How lines are written
    #[arg(long, value_enum, conflicts_with = "json")]
    pub format: Option<crate::sink::Format>,
    /// Read the events of a running `portwatch daemon --socket` (no root needed; default /run/portwatch/portwatch.sock). Only --pid, --proto, --scope and --netns apply
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        default_missing_value = portwatch::serve::DEFAULT_SOCKET,
        conflicts_with_all = ["stats", "backend", "resync_interval", "interval", "ring_buffer", "hook", "listen_callback", "settle"],
    )]
    pub connect: Option<PathBuf>,
    /// Print event, loss and resync counters on exit
    #[arg(long)]
    pub stats: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (and /healthz, /readyz), e.g. 127.0.0.1:9187
    #[arg(long, value_name = "ADDR", conflicts_with = "connect")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Report drifts from this expected-listeners policy (reloaded when it changes)
    #[arg(long, value_name = "FILE", conflicts_with = "connect")]
    pub policy: Option<PathBuf>,
    /// Keep a journal of every listener opened and closed at PATH (`portwatch history --journal PATH` reads it)
    #[arg(long, value_name = "PATH", conflicts_with = "connect")]
    pub journal: Option<PathBuf>,
    #[command(flatten)]
    pub journal_limits: JournalArgs,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    /// Append the lines to FILE instead of stdout; SIGHUP opens it again (after logrotate moved it)
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// What portwatch says on stderr: text lines, or one JSON object per line (for journald and log shippers)
    #[arg(long, value_enum, default_value_t = crate::log::LogFormat::Text)]
    pub log_format: crate::log::LogFormat,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The journal to read
    #[arg(long, value_name = "PATH", default_value = portwatch::journal::DEFAULT_PATH)]
    pub journal: PathBuf,
    /// Only this port
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Only this protocol
    #[arg(long, value_enum, default_value_t = ProtoArg::All)]
    pub proto: ProtoArg,
    /// Only this owner
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only owners whose executable matches this glob (`*` also crosses `/`)
    #[arg(long, value_name = "GLOB")]
    pub exe: Option<String>,
    /// From this time on (2026-12-04T03:12:00Z, 2026-12-04 03:12, 03:12, 2h ago)
    #[arg(long, value_name = "TIME", conflicts_with = "at")]
    pub since: Option<String>,
    /// Up to this time
    #[arg(long, value_name = "TIME", conflicts_with = "at")]
    pub until: Option<String>,
    /// Who held each matching port at this instant
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct NotifyArgs {
    /// The daemon's event socket
    #[arg(long, value_name = "PATH", default_value = portwatch::serve::DEFAULT_SOCKET)]
    pub connect: PathBuf,
    /// Only alerts about this process and its descendants
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// One JSON array instead of a table
    #[arg(long)]
    pub json: bool,
    /// Only this protocol
    #[arg(long, value_enum, default_value_t = ProtoArg::All)]
    pub proto: ProtoArg,
    /// Add the SHA-256 of each owner's executable (`exe_sha256`, with
    /// --json)
    #[arg(long)]
    pub hash: bool,
}

/// Parses `60`, `60s`, `500ms`, `2m`; `0` means off.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let err = || format!("`{s}` is not a duration (e.g. 60, 30s, 500ms, 2m, 12h, 30d)");
    let (digits, unit_ms) = if let Some(d) = s.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = s.strip_suffix('s') {
        (d, 1000)
    } else if let Some(d) = s.strip_suffix('m') {
        (d, 60_000)
    } else if let Some(d) = s.strip_suffix('h') {
        (d, 3_600_000)
    } else if let Some(d) = s.strip_suffix('d') {
        (d, 86_400_000)
    } else {
        (s, 1000)
    };
    let n: u64 = digits.trim().parse().map_err(|_| err())?;
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(err)
}

/// Parses `4096`, `256K`, `4M` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    // `1GiB` and `1G` alike: binary multiples either way.
    let bare = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let (digits, mult) = match bare.char_indices().last() {
        Some((i, 'k' | 'K')) => (&bare[..i], 1024),
        Some((i, 'm' | 'M')) => (&bare[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&bare[..i], 1024 * 1024 * 1024),
        _ => (bare, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a size in bytes (e.g. 4096, 256K, 4M, 1GiB)"))
}

/// `%XX` sequences decoded; anything else, and a malformed sequence, as
/// it is.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `--json`, or `--format`.
pub fn format_of(json: bool, format: Option<crate::sink::Format>) -> crate::sink::Format {
    match format {
        Some(f) => f,
        None if json => crate::sink::Format::Json,
        None => crate::sink::Format::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_header_values_from_the_environment_are_percent_decoded() {
        assert_eq!(super::percent_decoded("Basic%20YWxh%3D"), "Basic YWxh=");
        assert_eq!(super::percent_decoded("100%"), "100%");
        assert_eq!(super::percent_decoded("%zz%2"), "%zz%2");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256K"), Ok(262_144));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999999999999M").is_err());
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert!(parse_size("iB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    fn engine_args(args: &[&str]) -> EngineArgs {
        let mut all = vec!["portwatch", "daemon"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Some(Command::Daemon(d)) => d.engine,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_daemon_takes_every_engine_flag() {
        let config = engine_args(&[
            "--pid",
            "7",
            "--scope",
            "local",
            "--netns",
            "42",
            "--proto",
            "tcp",
            "--backend",
            "procfs",
            "--resync-interval",
            "0",
            "--interval",
            "2s",
            "--ring-buffer",
            "64K",
            "--hook",
            "tracepoint",
        ])
        .config()
        .unwrap();
        assert_eq!(
            config.filter,
            Filter {
                scope: Scope::Local,
                netns: Some(42),
                pid: Some(7),
                proto: Some(Proto::Tcp),
            }
        );
        assert_eq!(config.backend, Backend::Procfs);
        assert_eq!(config.resync_interval, None);
        assert_eq!(config.poll_interval, Duration::from_secs(2));
        assert_eq!(config.ring_buffer_bytes, 65536);
        assert_eq!(config.hook, Hook::Tracepoint);
    }

    #[test]
    fn no_command_is_the_tui_with_0_1_8_flags() {
        let cli = Cli::try_parse_from(["portwatch", "-r", "500", "-f", "port:22"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(
            (cli.tui.refresh_interval, cli.tui.filter.as_str()),
            (500, "port:22")
        );
        let cli = Cli::try_parse_from(["portwatch", "tui", "--read-only"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Tui(t)) if t.read_only));
        let cli = Cli::try_parse_from(["portwatch", "watch", "--pid", "7"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Watch(_))));
        assert!(Cli::try_parse_from(["portwatch", "-r", "5", "watch"]).is_err());
    }

    fn daemon(args: &[&str]) -> anyhow::Result<(EngineConfig, Duration)> {
        let mut argv = vec!["portwatch", "daemon"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::Daemon(d)) => d.config(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_daemon_keeps_0_1_8s_interval_and_watch_config_flags() {
        let (engine, sample) = daemon(&["-i", "250", "--watch-config"]).unwrap();
        assert_eq!(sample, Duration::from_millis(250));
        assert_eq!(engine.poll_interval, Duration::from_millis(250));
        let (engine, sample) = daemon(&["--interval-ms", "3000"]).unwrap();
        assert_eq!(
            (sample, engine.poll_interval),
            (Duration::from_secs(3), Duration::from_secs(3))
        );
        let (engine, sample) = daemon(&[]).unwrap();
        assert_eq!(
            (sample, engine.poll_interval),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        assert_eq!(
            daemon(&["-i", "0"]).unwrap_err().to_string(),
            "--interval-ms must be longer than 0"
        );
        assert_eq!(
            daemon(&["--sample-interval", "0"]).unwrap_err().to_string(),
            "--sample-interval must be longer than 0"
        );
        // Two flags for one setting: refused, not one silently ignored.
        assert!(daemon(&["-i", "250", "--sample-interval", "2s"]).is_err());
        assert!(daemon(&["-i", "250", "--interval", "2s"]).is_err());
        assert!(daemon(&["-i", "many"]).is_err());
    }

    #[test]
    fn engine_flags_are_checked_in_one_place() {
        let err = |args: &[&str]| engine_args(args).config().unwrap_err().to_string();
        assert_eq!(
            err(&["--interval", "0"]),
            "--interval must be longer than 0"
        );
        assert!(err(&["--ring-buffer", "5000"]).contains("power of two"));
        let defaults = engine_args(&[]).config().unwrap();
        assert_eq!(defaults.filter, Filter::default());
        assert_eq!(defaults.resync_interval, Some(Duration::from_secs(60)));
    }
}
