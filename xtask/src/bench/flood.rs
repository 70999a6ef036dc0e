//! An unprivileged user must not be able to delay anybody's events: user
//! nobody opens waves of 3,000 sockets that call listen() without bind()
//! and closes them again, while root opens listeners on explicit ports
//! every 10 ms. The figure is the delay of root's listeners, from listen()
//! returning to portwatch's line being read.

use std::{
    collections::HashMap,
    io::Write as _,
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::util::{Lines, cpu_seconds, mono_ns, quantile};

/// Waves of unbound listeners, at least `min_waves`, then until told to
/// stop; prints how many waves it made.
const FLOOD: &str = r#"
import resource, select, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
min_waves, per_wave = int(sys.argv[1]), int(sys.argv[2])
print("flooding", flush=True)
waves = 0
while waves < min_waves or not select.select([sys.stdin], [], [], 0)[0]:
    socks = []
    for _ in range(per_wave):
        s = socket.socket(); s.listen(); socks.append(s)
    for s in socks:
        s.close()
    waves += 1
print("done", waves, flush=True)
"#;

/// At least `min_waves` waves of `per_wave` sockets, and on until the
/// `probes` root listeners are all open.
pub fn flood(root: &Path, min_waves: usize, per_wave: usize, probes: usize) -> Result<Value> {
    let watch = Lines::spawn(Command::new(super::portwatch_bin(root)).args([
        "watch",
        "--json",
        "--stats",
        "--resync-interval",
        "0",
    ]))?;
    watch.wait_for("\"ready\"", Duration::from_secs(30))?;
    let cpu_before = cpu_seconds(watch.child.id());
    // Debian's python3, which user nobody can run.
    let mut flooder = Lines::spawn(
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args(["/usr/bin/python3", "-u", "-c", FLOOD])
            .args([min_waves.to_string(), per_wave.to_string()])
            .stdin(Stdio::piped()),
    )
    .context("setpriv and /usr/bin/python3 are needed for the flood")?;
    flooder.wait_for("flooding", Duration::from_secs(10))?;
    let started = Instant::now();

    // Root's listeners, every 10 ms while the flood runs.
    let mut opened_at: HashMap<u16, u64> = HashMap::new();
    let mut held = Vec::with_capacity(probes);
    for _ in 0..probes {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let t = mono_ns();
        opened_at.insert(l.local_addr()?.port(), t);
        held.push(l);
        thread::sleep(Duration::from_millis(10));
    }
    let probing = started.elapsed();
    if let Some(mut stdin) = flooder.child.stdin.take() {
        let _ = stdin.write_all(b"stop\n");
    }
    let waves = flooder
        .wait_for_value("done", Duration::from_secs(60))
        .ok()
        .and_then(|w| w.parse::<u64>().ok());
    let _ = flooder.child.wait();

    // Whatever is still queued may take a while on a slow build: up to 60 s.
    let mut delays_ms = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !opened_at.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((t, line)) = watch.rx.recv_timeout(left) else {
            break;
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["event"] == "opened"
            && v["address"] == "127.0.0.1"
            && let Some(t0) = opened_at.remove(&(v["port"].as_u64().unwrap_or(0) as u16))
        {
            delays_ms.push(t.saturating_sub(t0) as f64 / 1e6);
        }
    }
    let cpu = cpu_seconds(watch.child.id()) - cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    drop(held);
    watch.stop();
    delays_ms.sort_by(f64::total_cmp);
    Ok(json!({
        "waves": waves,
        "per_wave": per_wave,
        "probes": probes,
        "reported": delays_ms.len(),
        "probing_s": probing.as_secs_f64(),
        "p50_ms": quantile(&delays_ms, 0.5),
        "p99_ms": quantile(&delays_ms, 0.99),
        "max_ms": delays_ms.last().copied().unwrap_or(f64::NAN),
        "cpu_percent": 100.0 * cpu / elapsed,
    }))
}
