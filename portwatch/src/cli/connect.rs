//! `portwatch watch --connect`: the events of a running daemon, read from
//! its socket, printed as `watch` prints its own. Needs no privileges
//! beyond the socket's group.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use portwatch::{Filter, output, serve::request_line, wire::Line};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines},
    net::UnixStream,
};

use crate::{args::WatchArgs, shutdown::Shutdown, sink::Sink};

/// The daemon's lines, once `filter` is sent.
pub type DaemonLines = Lines<BufReader<UnixStream>>;

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
    Ok(reader.lines())
}

/// The daemon's next line, as it came and as read; an error line or the
/// end of the connection is an error. A line this version cannot read
/// (from a newer daemon, with a value it does not know) is an error too:
/// shown, never guessed at.
pub async fn next(lines: &mut DaemonLines) -> anyhow::Result<(String, Line)> {
    let Some(text) = lines
        .next_line()
        .await
        .context("cannot read from the daemon")?
    else {
        bail!("the daemon closed the connection");
    };
    let line = Line::parse(&text).map_err(|e| anyhow::anyhow!("the daemon sent {e}"))?;
    if let Line::Error(refusal) = &line {
        bail!("the daemon refused: {}", refusal.message);
    }
    Ok((text, line))
}

pub async fn run(path: &Path, args: &WatchArgs) -> anyhow::Result<()> {
    let filter = args.engine.config()?.filter;
    let mut shutdown = Shutdown::install()?;
    let mut lines = open(path, &filter).await?;
    let mut sink = Sink::chosen(args.json, args.output.as_deref())?;
    let mut hangups = sink.hangups()?;
    if !sink.is_json() {
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
        if sink.is_json() {
            sink.line(&text)?;
        } else {
            print_text(&mut sink, &line)?;
        }
        // A burst read at once is written at once.
        if lines.get_ref().buffer().is_empty() {
            sink.flush()?;
        }
    }
    sink.flush()?;
    Ok(())
}

/// One line of the daemon, as `watch` prints it without `--json`.
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
                comm: &p.comm,
                uid: p.uid,
                source: p.source.as_str(),
            }))?;
        }
        Line::Ready(r) => {
            sink.flush()?;
            eprintln!(
                "portwatch: watching through the daemon's socket with {} ({} already open); Ctrl-C stops",
                r.backend, r.listeners
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
