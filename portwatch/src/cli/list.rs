//! `portwatch list`: a snapshot of listening TCP sockets.

use portwatch::{output, sys::procfs_scan};

use crate::{args::ListArgs, sink::Sink};

pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let mut listeners = procfs_scan::scan_listeners(&|_| true)?;
    listeners.sort_by_key(|l| (l.port, l.address, l.netns, l.pid));
    let mut sink = Sink::new(args.json);
    if args.json {
        sink.line(&output::listeners_json(&listeners))?;
    } else {
        sink.line(output::listeners_table(&listeners).trim_end())?;
    }
    Ok(())
}
