//! Desktop notifications through the session bus (notify-rust): one per
//! alert, its urgency from the rule's severity; one when the kernel
//! dropped events. Used by `daemon --notify` and by `portwatch notify`.

use notify_rust::{Notification, Urgency};
use serde_json::Value;
use tokio::sync::mpsc;

use super::report;

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

/// The notification for one JSON object from the daemon, if it is one
/// to show: an alert, or events lost.
pub fn notification(v: &Value) -> Option<Notification> {
    let text = |k: &str| plain(v[k].as_str().unwrap_or_default());
    let mut n = Notification::new();
    n.appname("portwatch");
    match v["event"].as_str()? {
        "alert" => {
            n.summary(&format!("portwatch: {}", text("rule_name")))
                .body(&text("message"))
                .urgency(match v["severity"].as_str() {
                    Some("Critical") => Urgency::Critical,
                    Some("Info") => Urgency::Low,
                    _ => Urgency::Normal,
                });
        }
        "events_lost" => {
            n.summary("portwatch lost events").body(&format!(
                "The kernel dropped {} events; a rescan found {} opened and {} closed.",
                v["dropped"], v["opened"], v["closed"]
            ));
        }
        "resync" if v["reason"] == "drops" => {
            n.summary("portwatch lost events").body(&format!(
                "The kernel dropped {} events; a rescan found {} opened and {} closed.",
                v["drops"], v["opened"], v["closed"]
            ));
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

pub async fn worker(mut rx: mpsc::Receiver<String>, failures: super::Reporter) {
    while let Some(json) = rx.recv().await {
        let Ok(v) = serde_json::from_str::<Value>(&json) else {
            continue;
        };
        if let Some(n) = notification(&v)
            && let Err(why) = show(&n).await
        {
            report(&failures, format!("notify: {why}"));
        }
    }
}
