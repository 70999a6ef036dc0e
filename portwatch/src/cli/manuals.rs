//! Shell completions and man pages, made from the command line's own
//! definition (`args.rs`), so that neither can drift from the flags.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::args::Cli;

/// `portwatch completions SHELL`: the script, on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "portwatch", &mut out);
    Ok(())
}

/// `portwatch manpages DIR`: portwatch.1, and portwatch-COMMAND.1 for each
/// command (and portwatch-alerts-validate.1 for nested ones).
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages in {}", dir.display()))
}
