//! `portwatch watch --connect`: the events of a running daemon, read from
//! its socket, printed as `watch` prints its own. Needs no privileges
//! beyond the socket's group.

use std::{path::Path, time::Duration};

use anyhow::bail;
use portwatch::{Filter, output, safe_text::safe_str, serve::request_line, wire::Line};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

use crate::{args::WatchArgs, shutdown::Shutdown, sink::Sink};

/// The longest line a daemon may send: a line is an event, a few hundred
/// bytes; anything this long is no portwatch daemon's.
const MAX_LINE: usize = 1 << 20;

/// The daemon's lines, once `filter` is sent, each at most [`MAX_LINE`]
/// bytes.
pub struct DaemonLines {
    reader: BufReader<UnixStream>,
    /// The part of a line read so far: kept here, so that a read cancelled
    /// (a `select!` that took another branch) loses nothing.
    partial: Vec<u8>,
    /// Lines this version could not read, and whether that was said.
    unreadable: u64,
}

impl DaemonLines {
    /// The next line, without its newline; None at the end. Cancel-safe.
    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        use std::io::{Error, ErrorKind};
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return if self.partial.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::new(
                        ErrorKind::UnexpectedEof,
                        "the daemon's last line is cut off",
                    ))
                };
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            self.partial
                .extend_from_slice(&available[..if done { take - 1 } else { take }]);
            self.reader.consume(take);
            if self.partial.len() > MAX_LINE {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("the daemon sent a line longer than {MAX_LINE} bytes"),
                ));
            }
            if done {
                let bytes = std::mem::take(&mut self.partial);
                return String::from_utf8(bytes).map(Some).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidData,
                        "the daemon sent a line that is no UTF-8",
                    )
                });
            }
        }
    }

    /// Whether what was read is all handed out (a burst is over).
    pub fn drained(&self) -> bool {
        self.reader.buffer().is_empty()
    }

    /// Counts a line of a newer daemon's that is skipped; the sentence to
    /// say about it, the first time only.
    pub fn skipped(&mut self, why: &str) -> Option<String> {
        self.unreadable += 1;
        (self.unreadable == 1).then(|| {
            format!("skipping lines this portwatch cannot read (is the daemon newer?): {why}")
        })
    }
}

/// How long the daemon may take to start answering. A stopped daemon's
/// socket still accepts (into its backlog), so only a read can tell.
/// Later lines have no deadline: a quiet host sends nothing.
const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the daemon's socket, sends `filter`, and waits until the
/// daemon starts answering (its baseline, ready or error line).
pub async fn open(path: &Path, filter: &Filter) -> anyhow::Result<DaemonLines> {
    let mut stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e) => bail!(
            "cannot connect to {} ({e}): is `portwatch daemon --socket` running, and are you in its group?",
            path.display()
        ),
    };
    let mut request = request_line(filter);
    request.push('\n');
    // A daemon that refuses at once (all slots taken) may close before
    // the request is out: its reason is still there to read.
    let sent = stream.write_all(request.as_bytes()).await;
    let mut reader = BufReader::new(stream);
    // The first bytes stay buffered for the caller's first line.
    let answered = match tokio::time::timeout(FIRST_LINE_TIMEOUT, reader.fill_buf()).await {
        Ok(Ok(buf)) => Ok(!buf.is_empty()),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!(
            "the daemon at {} accepted the connection but sent nothing within {} s (is it starting, stopped or overloaded?)",
            path.display(),
            FIRST_LINE_TIMEOUT.as_secs()
        ),
    };
    // The socket's errors go into the message, not the error chain: a
    // broken pipe there would pass for a closed stdout, which ends quietly.
    match (answered, sent) {
        // An answer (a refusal, maybe), or the end, which `next` reports.
        (Ok(true), _) | (Ok(false), Ok(())) => {}
        (_, Err(e)) => bail!("cannot send the request to {} ({e})", path.display()),
        (Err(e), Ok(())) => bail!("cannot read from the daemon at {} ({e})", path.display()),
    }
    Ok(DaemonLines {
        reader,
        partial: Vec::new(),
        unreadable: 0,
    })
}

/// The daemon's next line, as it came and as this version reads it (or
/// why it cannot: a newer daemon's value it does not know, which callers
/// skip, never guess at). A refusal or the end of the connection is an
/// error.
pub async fn next(lines: &mut DaemonLines) -> anyhow::Result<(String, Result<Line, String>)> {
    let Some(text) = lines
        .next_line()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read from the daemon: {e}"))?
    else {
        bail!("the daemon closed the connection");
    };
    let line = Line::parse(&text);
    if let Ok(Line::Error(refusal)) = &line {
        bail!("the daemon refused: {}", safe_str(&refusal.message));
    }
    Ok((text, line))
}

pub async fn run(path: &Path, args: &WatchArgs) -> anyhow::Result<()> {
    let filter = args.engine.config()?.filter;
    let mut shutdown = Shutdown::install()?;
    let mut lines = open(path, &filter).await?;
    let mut sink = Sink::formatted(
        crate::args::format_of(args.json, args.format),
        args.output.as_deref(),
    )?;
    let mut hangups = sink.hangups()?;
    if sink.is_text() {
        sink.line(&output::event_header())?;
    }
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            () = &mut stop => break,
            next = next(&mut lines) => next,
            Some(()) = crate::sink::hangup(&mut hangups) => {
                // Refused (a name planted at the path): lines still go to
                // the file open now, and the warning says why.
                if let Err(e) = sink.reopen() {
                    crate::log::warn(&format!("{e:#}"));
                }
                continue;
            }
        };
        let (text, line) = match next {
            Ok(x) => x,
            Err(e) => {
                sink.flush()?;
                return Err(e);
            }
        };
        match line {
            // The line as the daemon wrote it: a newer daemon's too, when
            // it is a JSON object.
            _ if sink.is_json() && is_json_object(&text) => sink.line(&text)?,
            // OCSF records made here, from the daemon's typed lines; what
            // OCSF has no class for is said as text on stderr.
            Ok(line) if sink.ocsf(&line)? => {}
            Ok(line) if !sink.is_json() => print_text(&mut sink, &line)?,
            Ok(_) => {}
            Err(why) => {
                if let Some(m) = lines.skipped(&why) {
                    crate::log::warn(&m);
                }
            }
        }
        // A burst read at once is written at once.
        if lines.drained() {
            sink.flush()?;
        }
    }
    sink.flush()?;
    Ok(())
}

/// Whether `text` is one JSON object (what a daemon's line is, whatever
/// its fields).
fn is_json_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// One line of the daemon, as `watch` prints it without `--json`. Its text
/// was made safe by the daemon; escaped again here, since a client prints
/// what a socket sent.
fn print_text(sink: &mut Sink, line: &Line) -> anyhow::Result<()> {
    match line {
        Line::Opened(p) | Line::Closed(p) => {
            let change = if matches!(line, Line::Opened(_)) {
                "opened"
            } else {
                "closed"
            };
            sink.line(&output::event_line_of(&output::EventColumns {
                ts: &output::format_ts(&p.ts),
                change,
                proto: p.proto.as_str(),
                socket: &std::net::SocketAddr::new(p.address, p.port).to_string(),
                pid: p.pid,
                comm: &safe_str(&p.comm),
                uid: p.uid,
                source: p.source.as_str(),
            }))?;
        }
        Line::Ready(r) => {
            sink.flush()?;
            eprintln!(
                "portwatch: watching through the daemon's socket with {} ({} already open); Ctrl-C stops",
                safe_str(&r.backend),
                r.listeners
            );
        }
        Line::Lost(l) => {
            sink.flush()?;
            eprintln!(
                "portwatch: this client fell behind and lost {} events; a fresh baseline follows",
                l.events
            );
        }
        Line::Resync(r) => {
            sink.flush()?;
            eprintln!(
                "portwatch: resync ({}): {} opened, {} closed that events had missed",
                r.reason.as_str(),
                r.opened,
                r.closed
            );
        }
        // Alerts and notices are the daemon's to print; JSON readers get
        // them. A line of a newer daemon's is skipped.
        _ => {}
    }
    Ok(())
}
