//! `portwatch notify`: a running daemon's alerts as desktop
//! notifications, in the user's own session, as that user: a root daemon
//! has no session bus to show them on.

use portwatch::Filter;

use crate::{
    args::NotifyArgs,
    connect,
    deliver::notify::{check_session_bus, notification, show},
    shutdown::Shutdown,
};

pub async fn run(args: NotifyArgs) -> anyhow::Result<()> {
    check_session_bus()?;
    let mut shutdown = Shutdown::install()?;
    let filter = Filter {
        pid: args.pid,
        ..Filter::default()
    };
    let mut lines = connect::open(&args.connect, &filter).await?;
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        let (_, line) = tokio::select! {
            () = &mut stop => return Ok(()),
            next = connect::next(&mut lines) => next?,
        };
        let line = match line {
            Ok(line) => line,
            Err(why) => {
                if let Some(m) = lines.skipped(&why) {
                    eprintln!("portwatch: {m}");
                }
                continue;
            }
        };
        if let portwatch::wire::Line::Ready(_) = line {
            eprintln!(
                "portwatch: showing the alerts of the daemon at {} as desktop notifications; Ctrl-C stops",
                args.connect.display()
            );
        } else if let Some(n) = notification(&line)
            && let Err(why) = show(&n).await
        {
            eprintln!("portwatch: {why}");
        }
    }
}
