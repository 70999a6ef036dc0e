//! Writes reports to stdout, or to a file (`--output`) that is opened
//! again on SIGHUP, after logrotate moved it. Lines are held until
//! [`Sink::flush`]: the caller flushes after the last event of a burst,
//! so a reader sees each line as soon as nothing more is queued, and a
//! burst costs one write.
//!
//! The file is opened relative to its directory, checked once at start
//! (see [`CheckedDir`]): a name planted there by another user (a link, a
//! file of theirs) is refused, at start and at every reopen.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use portwatch::{
    MonitorEvent, PortEvent,
    files::CheckedDir,
    output,
    wire::{
        Line,
        ocsf::{self, OcsfHost},
    },
};

/// How lines are written (`--format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned text
    #[default]
    Text,
    /// One JSON object per line (as --json)
    Json,
    /// One OCSF record per line: Network Activity (4001) for ports, Detection Finding (2004) for alerts and drifts; the rest goes to stderr as text
    Ocsf,
}

/// Where reports go: JSON lines, OCSF records or aligned text, on stdout
/// or in a file.
pub struct Sink {
    json: bool,
    /// `--format ocsf`: the host its records name.
    ocsf: Option<OcsfHost>,
    out: BufWriter<Box<dyn Write>>,
    /// Text lines, their buffers kept from one to the next.
    text: output::EventLines,
    /// The file, when it is one: its checked directory and name.
    file: Option<(CheckedDir, PathBuf)>,
}

const BUFFER: usize = 64 * 1024;
/// Event lines hold command lines: not for every user to read.
const MODE: u32 = 0o640;

fn append(dir: &CheckedDir, name: &Path) -> anyhow::Result<File> {
    Ok(dir.append(name, MODE)?)
}

impl Sink {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            ocsf: None,
            out: BufWriter::with_capacity(BUFFER, Box::new(io::stdout().lock())),
            text: output::EventLines::default(),
            file: None,
        }
    }

    /// Appends to `path`, created when missing.
    pub fn to_file(json: bool, path: &Path) -> anyhow::Result<Self> {
        let opened = CheckedDir::of_file(path, false).and_then(|(dir, name)| {
            let file = dir.append(&name, MODE)?;
            Ok((dir, name, file))
        });
        let (dir, name, file) = opened.map_err(|e| anyhow::anyhow!("the --output file: {e}"))?;
        Ok(Self {
            json,
            ocsf: None,
            out: BufWriter::with_capacity(BUFFER, Box::new(file)),
            text: output::EventLines::default(),
            file: Some((dir, name)),
        })
    }

    /// Stdout, or `--output FILE`.
    pub fn chosen(json: bool, output: Option<&Path>) -> anyhow::Result<Self> {
        match output {
            Some(path) => Self::to_file(json, path),
            None => Ok(Self::new(json)),
        }
    }

    /// Stdout, or `--output FILE`, in `format`.
    pub fn formatted(format: Format, output: Option<&Path>) -> anyhow::Result<Self> {
        let mut sink = Self::chosen(format == Format::Json, output)?;
        if format == Format::Ocsf {
            sink.ocsf = Some(this_host());
        }
        Ok(sink)
    }

    /// SIGHUP, handled in every mode (its default action would end the
    /// run): a file is opened again, stdout stays.
    pub fn hangups(&self) -> anyhow::Result<Option<tokio::signal::unix::Signal>> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("cannot handle SIGHUP: {e}"))
    }

    /// After a rotation moved the file away: what is buffered goes to the
    /// old one, and from now on lines go to a new file at the name, in the
    /// directory checked at start. When the name cannot be opened safely
    /// (another user planted something there), lines keep going to the
    /// file open now, and the error says why.
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        let Some((dir, name)) = &self.file else {
            return Ok(());
        };
        self.out.flush()?;
        let file = append(dir, name).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the output file again, so lines still go to the one open before: {e}"
            )
        })?;
        self.out = BufWriter::with_capacity(BUFFER, Box::new(file));
        Ok(())
    }

    pub fn is_ocsf(&self) -> bool {
        self.ocsf.is_some()
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Aligned text: not JSON lines, not OCSF records.
    pub fn is_text(&self) -> bool {
        !self.json && self.ocsf.is_none()
    }

    /// In `--format ocsf`, writes the record of `line` and says true; says
    /// false for a line OCSF has no class for, and in other formats.
    pub fn ocsf(&mut self, line: &Line) -> io::Result<bool> {
        let Some(host) = &self.ocsf else {
            return Ok(false);
        };
        match ocsf::record(line, host) {
            Some(record) => {
                let text = record.to_string();
                self.line(&text)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// [`Self::ocsf`] for a monitor's event.
    pub fn ocsf_event(&mut self, ev: &MonitorEvent) -> io::Result<bool> {
        if self.ocsf.is_none() {
            return Ok(false);
        }
        let line = match ev {
            MonitorEvent::Port(p) => Line::from(p),
            MonitorEvent::Alert(a) => Line::from(a),
            MonitorEvent::Drift(d) => Line::from(d),
            MonitorEvent::ExposureChanged(c) => Line::from(c),
            _ => return Ok(false),
        };
        self.ocsf(&line)
    }

    pub fn event(&mut self, ev: &PortEvent) -> io::Result<()> {
        if self.ocsf.is_some() {
            return self.ocsf(&Line::from(ev)).map(|_| ());
        }
        if self.json {
            portwatch::wire::Line::from(ev).write_json(&mut self.out)?;
            return self.out.write_all(b"\n");
        }
        let line = self.text.line(ev);
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")
    }

    /// Queues one line.
    pub fn line(&mut self, line: &str) -> io::Result<()> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")
    }

    /// Writes every queued line out.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A closed stdout (`portwatch watch | head`) ends the run quietly.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The next SIGHUP of [`Sink::hangups`]; never, when there is none.
pub async fn hangup(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// This host, as OCSF records name it: its name and machine id.
pub fn this_host() -> OcsfHost {
    let hostname =
        portwatch::safe_text::safe_str(&rustix::system::uname().nodename().to_string_lossy());
    let uid = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    OcsfHost { hostname, uid }
}
