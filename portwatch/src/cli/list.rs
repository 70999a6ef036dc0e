//! `portwatch list`: a snapshot of listening TCP sockets and bound UDP
//! ports, like `ss -tlunp`.

use crate::{args::ListArgs, sink::Sink};

pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let mut listing = portwatch::list(args.proto.proto())?;
    if args.hash
        && let Some(why) = listing.hash_executables()
    {
        crate::log::info(&format!("some executables are not hashed ({why})"));
    }
    listing
        .listeners
        .sort_by_key(|l| (l.port, l.proto, l.address, l.netns, l.pid));
    let listeners = &listing.listeners;
    let mut sink = Sink::new(args.json);
    if args.json {
        sink.line(&portwatch::wire::list::to_json(&listing))?;
    } else {
        sink.line(portwatch::output::listing_table(&listing).trim_end())?;
    }
    sink.flush()?;
    if !rustix::process::geteuid().is_root() {
        let unowned = listeners.iter().filter(|l| l.pid == 0).count();
        crate::log::info(&format!(
            "as a user, {unowned} of {} sockets show no owner (other users' processes are out of reach) and other network namespaces are not listed: `sudo portwatch list` shows everything",
            listeners.len()
        ));
    }
    Ok(())
}
