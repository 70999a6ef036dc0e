//! What portwatch says on stderr besides its output: plain lines
//! (`portwatch: ...`), or with `--log-format json` one JSON object per
//! line (tracing's JSON format: `timestamp`, `level`, `fields.message`),
//! so journald and log shippers get structured fields.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Diagnostics go to stderr through `tracing`; `RUST_LOG` selects them
/// (default: warnings, or with JSON also what portwatch says). In the
/// terminal UI they go to the file `PORTWATCH_LOG` names, if any, and
/// nowhere else: the screen is the UI's.
pub fn init(format: LogFormat, tui: bool) {
    let json = format == LogFormat::Json && !tui;
    JSON.store(json, Ordering::Relaxed);
    let default = if json { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().with_writer(std::io::stderr).init();
        return;
    }
    if !tui {
        builder.with_writer(std::io::stderr).init();
        return;
    }
    // Through a checked directory, never a link: the TUI often runs as
    // root, and the log may be asked for in a shared directory.
    let file = std::env::var_os("PORTWATCH_LOG").and_then(|p| {
        let opened = portwatch::files::CheckedDir::of_file(p.as_ref(), false)
            .and_then(|(dir, name)| dir.append(&name, 0o600));
        // Said before the screen is the UI's.
        opened
            .map_err(|e| eprintln!("portwatch: PORTWATCH_LOG is not used: {e}"))
            .ok()
    });
    match file {
        Some(file) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        None => builder.with_writer(std::io::sink).init(),
    }
}

/// Something the user should know; `message` is one sentence, its
/// untrusted parts already made safe.
pub fn info(message: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::info!("{message}");
    } else {
        eprintln!("portwatch: {message}");
    }
}

/// A warning; plain text says `warning:` itself.
pub fn warn(message: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::warn!("{message}");
    } else {
        eprintln!("portwatch: warning: {message}");
    }
}

/// The error portwatch stops with.
pub fn error(message: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::error!("{message}");
    } else {
        eprintln!("portwatch: {message}");
    }
}

/// A monitor's notice: warnings as warnings.
pub fn notice(n: &portwatch::monitor::Notice) {
    match n.kind {
        portwatch::monitor::NoticeKind::Warning => {
            warn(n.message.strip_prefix("warning: ").unwrap_or(&n.message));
        }
        _ => info(&n.message),
    }
}
