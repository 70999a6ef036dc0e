//! The `portwatch` command.

mod alerts;
mod args;
mod connect;
mod daemon;
mod deliver;
#[cfg(test)]
mod docs_check;
mod doctor;
mod history;
mod journal;
mod list;
mod log;
mod manuals;
mod metrics;
mod notify;
mod otlp;
mod policy;
mod shutdown;
mod sink;
mod tui;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        None => Command::Tui(cli.tui),
        Some(c) => c,
    };
    // The terminal UI owns the screen: diagnostics go to a file, if any.
    let format = match &command {
        Command::Daemon(a) => a.log_format,
        Command::Watch(a) => a.log_format,
        _ => log::LogFormat::Text,
    };
    log::init(format, matches!(command, Command::Tui(_)));
    // `policy check`: 1 means drift; any other failure is 2.
    let checking = matches!(command, Command::Policy(args::PolicyCommand::Check { .. }));
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portwatch: cannot start the event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Tui(args) => tui::run(args).await,
            Command::Watch(args) => watch::run(args).await,
            Command::List(args) => list::run(args),
            Command::Alerts(cmd) => alerts::run(cmd),
            Command::Policy(cmd) => policy::run(cmd).await,
            Command::History(args) => history::run(args),
            Command::Daemon(args) => daemon::run(args).await,
            Command::Notify(args) => notify::run(args).await,
            Command::Doctor { json } => doctor::run(json).await,
            Command::Completions { shell } => manuals::completions(shell),
            Command::Manpages { dir } => manuals::man_pages(&dir),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if sink::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<policy::Drifted>().is_some() => {
            log::info(&e.to_string());
            ExitCode::from(1)
        }
        Err(e) => {
            // Library errors are whole sentences that already name their
            // cause; the flags that change it are the binary's to name.
            match advice(&e) {
                Some(fix) => log::error(&format!("{e}: {fix}")),
                None => log::error(&e.to_string()),
            }
            // A pid or namespace that cannot be watched is a usage error,
            // like a bad flag.
            match e.downcast_ref::<portwatch::Error>() {
                _ if checking => ExitCode::from(2),
                Some(
                    portwatch::Error::NoSuchProcess(_)
                    | portwatch::Error::NotAProcess { .. }
                    | portwatch::Error::NoSuchNetns(_),
                ) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// What a user can do about a library error, in terms of this binary's
/// flags (the library knows none).
fn advice(e: &anyhow::Error) -> Option<&'static str> {
    if let Some(portwatch::Error::NoBtf) = e.downcast_ref::<portwatch::Error>() {
        return Some("use --hook tracepoint");
    }
    if let Some(portwatch::rules::store::StoreError::Exists(_)) =
        e.downcast_ref::<portwatch::rules::store::StoreError>()
    {
        return Some("use --force to replace it (the old file is kept as alerts.json.bak)");
    }
    None
}

/// The descriptor limits portwatch was started with (soft, hard): what the
/// commands it runs get back, since some still use select(), which breaks
/// past 1,024.
pub(crate) static ORIGINAL_NOFILE: std::sync::OnceLock<(Option<u64>, Option<u64>)> =
    std::sync::OnceLock::new();

/// The soft limit on open descriptors raised to the hard one: every
/// socket, client and /proc read needs one, and the soft default (1,024)
/// is a historical limit for select(), which portwatch does not use.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = ORIGINAL_NOFILE.set((limit.current, limit.maximum));
    if limit.current != limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}
