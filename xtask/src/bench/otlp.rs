//! The OTLP export's cost: the same burst of listener opens and closes
//! watched with and without `--otlp` (to a local receiver that answers
//! 200 at once), and the CPU time portwatch spent on each. The difference
//! per event is what the export costs: the queue on the event loop, the
//! records, encoding, gzip and POSTs on the exporter's own thread.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::util::{Lines, cpu_seconds, median, status_field};

/// A receiver that reads each request and answers 200: no decoding, so
/// it keeps up with any batch.
const SINK: &str = r#"
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print("port", s.server_address[1], flush=True)
s.serve_forever()
"#;

/// One watch of `workers` x `per` opens (and closes): portwatch's CPU
/// seconds, and the records the exporter sent (from its metrics).
fn one(root: &Path, workers: usize, per: usize, otlp: Option<&str>) -> Result<Run> {
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(super::portwatch_bin(root));
    cmd.args([
        "watch",
        "--json",
        "--ring-buffer",
        "64M",
        "--resync-interval",
        "0",
        "--proto",
        "tcp",
    ])
    .args(["--metrics", &format!("127.0.0.1:{metrics}")]);
    if let Some(url) = otlp {
        cmd.args(["--otlp", url]);
    }
    let watch = Lines::spawn(&mut cmd)?;
    watch.wait_for("\"ready\"", Duration::from_secs(30))?;
    let pid = watch.child.id();
    let before = cpu_seconds(pid);
    let mut storm = super::storm::Storm::start(root, workers, per, 1_000_000)?;
    let start = Instant::now();
    storm.wait_done(workers)?;
    let storm_s = start.elapsed().as_secs_f64();
    // Every event out (and, with --otlp, sent): the last close's line,
    // then the exporter's count.
    // storm.py keeps each worker's first listener open.
    let events = (workers * per * 2 - workers) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (sent, lost, drained_s) = loop {
        let body = scrape(metrics).unwrap_or_default();
        let count = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        let sent = count("portwatch_otlp_records_sent_total ");
        let seen = count("portwatch_events_total{event=\"opened\",proto=\"tcp\"} ")
            + count("portwatch_events_total{event=\"closed\",proto=\"tcp\"} ");
        let lost = count("portwatch_otlp_records_lost_total ");
        if seen >= events && (otlp.is_none() || sent + lost >= events) || Instant::now() > deadline
        {
            break (sent, lost, start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let cpu = cpu_seconds(pid) - before;
    // The most memory it held, the queue at its fullest included.
    let peak_rss_kib = status_field(pid, "VmHWM");
    storm.end();
    watch.stop();
    Ok(Run {
        cpu,
        events,
        sent,
        lost,
        storm_s,
        drained_s,
        peak_rss_kib,
    })
}

struct Run {
    cpu: f64,
    events: u64,
    sent: u64,
    lost: u64,
    /// The storm's own length, and until the last record was sent.
    storm_s: f64,
    drained_s: f64,
    peak_rss_kib: u64,
}

pub fn otlp(root: &Path, workers: usize, per: usize, rounds: usize) -> Result<Value> {
    let mut sink = Command::new("python3")
        .args(["-u", "-c", SINK])
        .stdout(Stdio::piped())
        .spawn()
        .context("python3 runs the receiver")?;
    let mut line = String::new();
    BufReader::new(sink.stdout.take().context("stdout")?).read_line(&mut line)?;
    let url = format!(
        "http://127.0.0.1:{}/v1/logs",
        line.trim().trim_start_matches("port ")
    );
    let (mut per_event_us, mut runs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let plain = one(root, workers, per, None)?;
        let with = one(root, workers, per, Some(&url))?;
        per_event_us.push((with.cpu - plain.cpu) / with.events as f64 * 1e6);
        runs.push(json!({
            "events": with.events,
            "cpu_s_without": plain.cpu,
            "cpu_s_with": with.cpu,
            "records_sent": with.sent,
            "records_lost": with.lost,
            "storm_s": with.storm_s,
            "all_sent_after_s": with.drained_s,
            "all_reported_without_after_s": plain.drained_s,
            "peak_rss_kib_without": plain.peak_rss_kib,
            "peak_rss_kib_with": with.peak_rss_kib,
        }));
    }
    let _ = sink.kill();
    Ok(json!({
        "per_event_us_median": median(&per_event_us),
        "runs": runs,
    }))
}

/// The metrics' text.
fn scrape(port: u16) -> Result<String> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut all = String::new();
    s.read_to_string(&mut all)?;
    Ok(all)
}
