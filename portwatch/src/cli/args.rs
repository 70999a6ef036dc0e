//! Command-line arguments.

use clap::{Args, Parser, Subcommand};

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
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// One JSON object per line instead of aligned text
    #[arg(long)]
    pub json: bool,
    /// Print event and loss counters on exit
    #[arg(long)]
    pub stats: bool,
    /// Kernel ring buffer size: a power of two of at least 4096 bytes (suffixes K, M)
    #[arg(long, value_name = "BYTES", default_value = "256K", value_parser = parse_size)]
    pub ring_buffer: u64,
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
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
