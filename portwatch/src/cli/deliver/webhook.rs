//! `--webhook URL`: each alert POSTed as JSON, in order, retried with
//! backoff when the server is down or answers with an error. A redirect
//! is a failure, not followed.

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::{Reporter, report};

/// Tries per alert.
const ATTEMPTS: u32 = 4;
/// The wait before the first retry; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// A webhook URL as reports and errors show it: scheme, host and port,
/// never the user and password, path or query (services such as Slack
/// keep the secret in the path). Of a URL that does not parse, only its
/// scheme, when there is a plausible one: where the secrets would be in
/// a malformed URL cannot be told.
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match u.host_str() {
            Some(host) => {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{host}{port}/...", u.scheme())
            }
            // `user:password@host` parses as scheme `user`: no host, so
            // nothing of it is shown.
            None => "...".into(),
        },
        Err(_) => match url.split_once("://") {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme.len() <= 10
                    && scheme.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                format!("{scheme}://...")
            }
            _ => "...".into(),
        },
    }
}

/// Checks `--FLAG URL`: it parses, and is http:// or https://. The error
/// quotes it without its secrets ([`shown`]).
pub fn check_url(flag: &str, url: &str) -> anyhow::Result<()> {
    let shown = shown(url);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("--{flag} {shown} is no valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        anyhow::bail!("--{flag} {shown} is no http:// or https:// URL");
    }
    Ok(())
}

/// The HTTP client of the webhooks and the OTLP exporter.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    // One process-wide TLS provider; a second install finds it in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("portwatch/", env!("CARGO_PKG_VERSION")))
        // A redirect followed would turn the POST into a GET without the
        // alert, and the answer to that GET would count as delivered.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot set up an HTTP client")
}

pub async fn worker(
    client: reqwest::Client,
    url: String,
    name: String,
    mut rx: mpsc::Receiver<std::sync::Arc<super::Delivery>>,
    failures: Reporter,
) {
    while let Some(json) = rx.recv().await {
        if let Err(why) = post(&client, &url, json.json.clone()).await {
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
            // Asking again gets the same answer: no retry.
            Ok(r) if r.status().is_redirection() => {
                return Err(format!(
                    "the server answered {} (redirects are not followed: give the final URL)",
                    r.status()
                ));
            }
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
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn shows_no_secret() {
        for (url, want) in [
            (
                "https://user:pw@hooks.example.com:8443/T0/B0/secret?token=x",
                "https://hooks.example.com:8443/...",
            ),
            (
                "htps://user:pw@example.invalid/hook?t=x",
                "htps://example.invalid/...",
            ),
            ("http://user:pw@[::1/hook?t=x", "http://..."),
            ("http://user:pw@example.invalid:99999/hook", "http://..."),
            ("user:pw@example.invalid/hook", "..."),
            ("//user:pw@example.invalid/hook", "..."),
            ("we!rd://user:pw@x/hook", "..."),
        ] {
            assert_eq!(shown(url), want, "{url}");
        }
    }
}
