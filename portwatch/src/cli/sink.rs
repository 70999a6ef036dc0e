//! Writes reports to stdout, one flushed line at a time.

use std::io::{self, Write as _};

use portwatch::{PortEvent, output};

/// Where reports go: JSON lines or aligned text on stdout.
pub struct Sink {
    json: bool,
    out: io::StdoutLock<'static>,
}

impl Sink {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            out: io::stdout().lock(),
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

    /// Writes one line and flushes it, so a reader sees it at once.
    pub fn line(&mut self, line: &str) -> io::Result<()> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
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
