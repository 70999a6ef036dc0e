//! Snapshot cost: `portwatch list` against `ss -ltnp` and `lsof` with many
//! listening sockets spread over many processes.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::util::{median, raise_nofile};

/// `xtask hold-child COUNT INDEX`: holds COUNT listeners on its own
/// loopback address (so no address runs out of ports), says "ready", and
/// waits for stdin to close.
pub fn hold_child_main(count: usize, index: usize) -> Result<()> {
    raise_nofile();
    let ip = format!("127.1.{}.{}", index / 250, index % 250 + 1);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(TcpListener::bind((ip.as_str(), 0)).with_context(|| format!("listen on {ip}"))?);
    }
    println!("ready");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    Ok(())
}

fn time_ms(cmd: &mut Command, runs: usize) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if !status.success() {
            bail!("{cmd:?} failed");
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&times))
}

/// `procs` processes holding `per` listeners each, once all are ready.
pub fn spawn_holders(procs: usize, per: usize) -> Result<Vec<Child>> {
    let exe = super::worker_exe()?;
    let mut children = Vec::new();
    for i in 0..procs {
        let mut child = Command::new(&exe)
            .args(["hold-child", &per.to_string(), &i.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("a socket holder failed to start");
        }
        children.push(child);
    }
    Ok(children)
}

/// Ends the holders (they exit when their stdin closes).
pub fn release(children: Vec<Child>) {
    for mut c in children {
        drop(c.stdin.take());
        let _ = c.wait();
    }
}

/// For each size: spawn the holders, time each tool `runs` times.
pub fn scan_cost(root: &Path, sizes: &[usize], procs: usize, runs: usize) -> Result<Value> {
    let mut rows = Vec::new();
    for &size in sizes {
        let per = size / procs;
        let children = spawn_holders(procs, per)?;
        let pw = time_ms(
            Command::new(super::portwatch_bin(root)).args(["list", "--json"]),
            runs,
        )?;
        let ss = time_ms(Command::new("ss").args(["-ltnp"]), runs)?;
        let lsof = time_ms(
            Command::new("lsof").args(["-nP", "-iTCP", "-sTCP:LISTEN"]),
            runs.min(3),
        )?;
        rows.push(json!({
            "listeners": per * procs,
            "processes": procs,
            "portwatch_list_ms": pw,
            "ss_ltnp_ms": ss,
            "lsof_ms": lsof,
            "ratio_vs_ss": pw / ss,
        }));
        release(children);
    }
    Ok(Value::Array(rows))
}
