//! `portwatch history`: who held a port at an instant, or every open and
//! close of a span in order with lifetimes, from the journal.

use chrono::Local;
use portwatch::journal::{
    history::{History, Query},
    when,
};
use serde::Serialize;

use crate::{args::HistoryArgs, sink::Sink};

/// One open or close as a JSON line.
#[derive(Serialize)]
struct ChangeLine<'a> {
    event: &'static str,
    ts: String,
    #[serde(flatten)]
    hold: &'a portwatch::journal::history::Hold,
    /// For a close: how long it was held, in microseconds (at least this
    /// long when it was open before the watch).
    #[serde(skip_serializing_if = "Option::is_none")]
    lifetime_us: Option<i64>,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let now = Local::now();
    let time = |t: &Option<String>, flag: &str| {
        t.as_deref()
            .map(|t| when::parse(t, now))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let at = time(&args.at, "at")?;
    let since = time(&args.since, "since")?;
    let until = time(&args.until, "until")?;
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        anyhow::bail!("--until is before --since: nothing can be between them");
    }
    let query = Query {
        port: args.port,
        proto: args.proto.proto(),
        pid: args.pid,
        exe: args.exe.clone(),
    };
    let history = History::open(&args.journal)?;
    let mut sink = Sink::new(args.json);
    if let Some(at) = at {
        let holds = history.at(at, &query)?;
        for h in &holds {
            if args.json {
                sink.line(&serde_json::to_string(h)?)?;
            } else {
                sink.line(&portwatch::output::hold_line(h))?;
            }
        }
        sink.flush()?;
        if holds.is_empty() && !args.json {
            // A time before the journal's first row is no answer.
            match history.first_opened()? {
                Some(first) if at < first => crate::log::info(&format!(
                    "the journal starts at {}: it cannot say who held a port at {}",
                    portwatch::wire::format_ts(&first),
                    portwatch::wire::format_ts(&at)
                )),
                _ => crate::log::info(&format!(
                    "nobody held a matching port at {}",
                    portwatch::wire::format_ts(&at)
                )),
            }
        }
        return Ok(());
    }
    let mut n = 0u64;
    history.between(since, until, &query, |c| {
        n += 1;
        let line = if args.json {
            serde_json::to_string(&ChangeLine {
                event: if c.opened { "opened" } else { "closed" },
                ts: portwatch::wire::format_ts(&c.ts),
                hold: &c.hold,
                lifetime_us: (!c.opened).then(|| {
                    (c.ts - c.hold.opened)
                        .num_microseconds()
                        .unwrap_or(i64::MAX)
                }),
            })
            .map_err(std::io::Error::other)?
        } else {
            portwatch::output::history_line(&c)
        };
        sink.line(&line)
    })?;
    sink.flush()?;
    if n == 0 && !args.json {
        crate::log::info("no matching opens or closes in the journal");
    }
    Ok(())
}
