//! `--webhook URL`: each alert POSTed as JSON, in order, retried with
//! backoff when the server is down or answers with an error.

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::report;

/// Tries per alert.
const ATTEMPTS: u32 = 4;
/// The wait before the first retry; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// A webhook URL as reports show it: scheme, host and port. Services
/// such as Slack keep the secret in the path.
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}/...", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) => "(invalid URL)".into(),
    }
}

pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    // One process-wide TLS provider; a second install finds it in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("portwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the webhook's HTTP client")
}

pub async fn worker(
    client: reqwest::Client,
    url: String,
    name: String,
    mut rx: mpsc::Receiver<String>,
    failures: mpsc::Sender<String>,
) {
    while let Some(json) = rx.recv().await {
        if let Err(why) = post(&client, &url, json).await {
            report(&failures, format!("{name}: {why}"));
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, json: String) -> Result<(), String> {
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("the server answered {}", r.status()),
            Err(e) if e.is_timeout() => last = "no answer in time".to_string(),
            // Its message would quote the URL, secret and all.
            Err(e) => last = error_chain(&e.without_url()),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(format!("not delivered after {ATTEMPTS} tries: {last}"))
}

/// reqwest's message and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.dedup();
    parts.join(": ")
}
