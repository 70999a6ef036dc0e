//! Writes reports to stdout. Lines are held until [`Sink::flush`]: the
//! caller flushes after the last event of a burst, so a reader sees each
//! line as soon as nothing more is queued, and a burst costs one write.

use std::io::{self, BufWriter, Write as _};

use portwatch::{PortEvent, output};

/// Where reports go: JSON lines or aligned text on stdout.
pub struct Sink {
    json: bool,
    out: BufWriter<io::StdoutLock<'static>>,
}

impl Sink {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            out: BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    pub fn event(&mut self, ev: &PortEvent) -> io::Result<()> {
        let line = if self.json {
            output::event_json(ev)
        } else {
            output::event_line(ev)
        };
        self.line(&line)
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
