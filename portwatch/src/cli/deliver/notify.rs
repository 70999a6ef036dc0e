//! Desktop notifications through the session bus (notify-rust): one per
//! alert, its urgency from the rule's severity; one when the kernel
//! dropped events. Used by `daemon --notify` and by `portwatch notify`.

use std::sync::Arc;

use notify_rust::{Notification, Urgency};
use portwatch::{report::ResyncReason, rules::model::Severity, wire::Line};
use tokio::sync::mpsc;

use super::{Delivery, report};

/// Whether this process can reach a session bus at all; the sentence
/// says what to do when it cannot.
pub fn check_session_bus() -> anyhow::Result<()> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|a| a.is_empty()) {
        anyhow::bail!(
            "desktop notifications need a D-Bus session bus, and DBUS_SESSION_BUS_ADDRESS is not set: run `portwatch notify` in the user's session instead"
        );
    }
    Ok(())
}

/// Text for a notification body or summary: servers read a little
/// markup there (`<b>`, `<a href>`), and a process name is its owner's
/// choice.
fn plain(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The notification for one line of the daemon's, if it is one to
/// show: an alert, or events lost.
pub fn notification(line: &Line) -> Option<Notification> {
    let mut n = Notification::new();
    n.appname("portwatch");
    let lost = |n: &mut Notification, dropped: u64, opened: usize, closed: usize| {
        n.summary("portwatch lost events").body(&format!(
            "The kernel dropped {dropped} events; a rescan found {opened} opened and {closed} closed."
        ));
    };
    match line {
        Line::Alert(a) => {
            n.summary(&format!("portwatch: {}", plain(&a.rule_name)))
                .body(&plain(&a.message))
                .urgency(match a.severity {
                    Severity::Critical => Urgency::Critical,
                    Severity::Info => Urgency::Low,
                    Severity::Warning => Urgency::Normal,
                });
        }
        Line::EventsLost(l) => lost(&mut n, l.dropped, l.opened, l.closed),
        Line::Resync(r) if r.reason == ResyncReason::Drops => {
            lost(&mut n, r.drops, r.opened, r.closed);
        }
        _ => return None,
    }
    Some(n)
}

/// Shows one; Err is one sentence.
pub async fn show(n: &Notification) -> Result<(), String> {
    n.show_async()
        .await
        .map(drop)
        .map_err(|e| format!("the notification was not shown: {e}"))
}

pub async fn worker(mut rx: mpsc::Receiver<Arc<Delivery>>, failures: super::Reporter) {
    while let Some(delivery) = rx.recv().await {
        if let Some(n) = notification(&delivery.line)
            && let Err(why) = show(&n).await
        {
            report(&failures, format!("notify: {why}"));
        }
    }
}
