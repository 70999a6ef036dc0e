//! `portwatch list`: a snapshot of listening TCP sockets and bound UDP
//! ports, like `ss -tlunp`.

use crate::{args::ListArgs, sink::Sink};

pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let mut listeners = portwatch::list_listeners(args.proto.proto())?;
    listeners.sort_by_key(|l| (l.port, l.proto, l.address, l.netns, l.pid));
    let mut sink = Sink::new(args.json);
    if args.json {
        sink.line(&portwatch::wire::list::to_json(&listeners))?;
    } else {
        sink.line(portwatch::output::listeners_table(&listeners).trim_end())?;
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
