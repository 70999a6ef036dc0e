//! `cargo xtask setup | build | run | test`: the project's own tasks.

mod bench;
mod modgraph;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "portwatch's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the eBPF build needs: rust-src for nightly and a project-local bpf-linker
    Setup,
    /// Build the release binary (eBPF programs embedded) into target/release/portwatch
    Build,
    /// Build the Debian package (cargo-deb) into target/debian/
    Package,
    /// Build, then run portwatch as root with the given arguments
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks against bpftrace, an ss poller, ss -ltnp and lsof (root)
    Bench {
        /// Smaller workloads and shorter runs, for a quick look
        #[arg(long)]
        quick: bool,
        /// Run only these sections (comma-separated); all by default
        #[arg(long, value_delimiter = ',')]
        only: Vec<bench::Section>,
        /// Measure this portwatch binary instead of target/release/portwatch (e.g. an older build)
        #[arg(long, value_name = "PATH")]
        portwatch: Option<PathBuf>,
    },
    /// Loopback connection churn for the benchmarks (internal)
    #[command(hide = true)]
    Churn { seconds: f64 },
    /// A loop of the cheapest syscall, for the benchmarks (internal)
    #[command(hide = true)]
    Syscalls { seconds: f64 },
    /// UDP socket/bind/close churn for the benchmarks (internal)
    #[command(hide = true)]
    UdpChurn { seconds: f64, cpu: usize },
    /// Holds listening sockets for the scan benchmark (internal)
    #[command(hide = true)]
    HoldChild { count: usize, index: usize },
    /// Print the portwatch crate's module graph and check its layering
    Modgraph {
        /// Another source tree to read (default: portwatch/src)
        src: Option<PathBuf>,
    },
    /// Write the published JSON Schemas (schema/) from the types that write and read the formats
    Schema,
    /// Write the generated parts of docs/ (each page's contents, the command reference's help)
    Docs,
    /// Run every test: unit tests and the root integration tests
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = workspace_root();
    match cli.task {
        Task::Setup => setup::ensure(&root),
        Task::Build => build(&root),
        Task::Run { args } => {
            build(&root)?;
            let bin = root.join("target/release/portwatch");
            let mut cmd = as_root(&bin);
            cmd.args(args);
            // The exit status of portwatch is ours.
            let status = cmd
                .status()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Bench {
            quick,
            only,
            portwatch,
        } => {
            build(&root)?;
            bench::run(
                &root,
                &bench::Options {
                    quick,
                    only,
                    portwatch,
                },
            )
        }
        Task::Churn { seconds } => bench::churn_main(seconds),
        Task::Syscalls { seconds } => bench::syscalls_main(seconds),
        Task::UdpChurn { seconds, cpu } => bench::udp_churn_main(seconds, cpu),
        Task::Modgraph { src } => modgraph::print(&src.unwrap_or(root.join("portwatch/src"))),
        Task::HoldChild { count, index } => bench::hold_child_main(count, index),
        Task::Package => package(&root),
        // The tests that compare generated files with their sources write
        // them when asked: one place knows how each is made.
        Task::Docs => write_generated(
            &root,
            // Two tests write docs/commands.md: one at a time.
            &["--bin", "portwatch", "docs_check", "--", "--test-threads=1"],
            "PORTWATCH_WRITE_DOCS",
        ),
        Task::Schema => write_generated(
            &root,
            &[
                "--lib",
                "wire::schema::tests::the_published_schemas_are_the_types",
            ],
            "PORTWATCH_WRITE_SCHEMAS",
        ),
        Task::Test { args } => {
            // The package test installs what this builds.
            package(&root)?;
            setup::ensure_python_packages(&root)?;
            let mut cmd = cargo();
            cmd.current_dir(&root)
                .args(["test", "--release"])
                .args(args);
            if !is_root() {
                // Integration tests load eBPF programs: run the test binaries as root.
                cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
            }
            check(&mut cmd, "cargo test")
        }
    }
}

/// Runs the portwatch tests `args` select with `env` set to 1, which makes
/// them write the files they otherwise compare.
fn write_generated(root: &Path, args: &[&str], env: &str) -> Result<()> {
    setup::ensure(root)?;
    check(
        cargo()
            .current_dir(root)
            .args(["test", "--release", "-p", "portwatch"])
            .args(args)
            .env(env, "1"),
        &format!("cargo test (with {env}=1)"),
    )
}

/// The release binary, then the Debian package around it.
fn package(root: &Path) -> Result<()> {
    build(root)?;
    manuals(root)?;
    let cargo_deb = setup::ensure_cargo_deb(root)?;
    check(
        Command::new(cargo_deb)
            .current_dir(root)
            .args(["--package", "portwatch", "--no-build", "--output"])
            .arg(root.join("target/debian/portwatch.deb")),
        "cargo deb",
    )
}

/// Man pages (gzipped, as Debian installs them) and shell completions,
/// made by the binary from its own arguments, into `release/assets/` of
/// the target directory (`CARGO_TARGET_DIR` when set, as cargo and
/// cargo-deb use it).
fn manuals(root: &Path) -> Result<()> {
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release");
    let bin = release.join("portwatch");
    let assets = release.join("assets");
    let man = assets.join("man");
    let _ = std::fs::remove_dir_all(&man);
    check(
        Command::new(&bin).arg("manpages").arg(&man),
        "portwatch manpages",
    )?;
    for page in std::fs::read_dir(&man)? {
        check(
            Command::new("gzip").args(["-9nf"]).arg(page?.path()),
            "gzip",
        )?;
    }
    let completions = assets.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in [
        ("bash", "portwatch"),
        ("zsh", "_portwatch"),
        ("fish", "portwatch.fish"),
    ] {
        let out = Command::new(&bin)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !out.status.success() {
            bail!("portwatch completions {shell} failed");
        }
        std::fs::write(completions.join(file), out.stdout)?;
    }
    Ok(())
}

fn build(root: &Path) -> Result<()> {
    setup::ensure(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root).args(["build", "--release"]);
    check(&mut cmd, "cargo build")
}

/// A cargo command without what `cargo run` put in this program's
/// environment: build scripts that watch `CARGO_MANIFEST_DIR` (ring's, through
/// cc) would otherwise see it change between `cargo xtask build` and a
/// plain `cargo build`, and every alternation rebuilt ring, rustls and
/// portwatch (about a minute on 2 cores).
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn workspace_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `program` as root: directly when we are root, through sudo otherwise.
fn as_root(program: &Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg("-E").arg(program);
        cmd
    }
}

pub(crate) fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
