//! Prints the ports a process and its descendants open and close, until
//! that process exits.
//!
//! ```sh
//! cargo build --release --example watch_pid
//! sudo target/release/examples/watch_pid PID
//! ```

use std::{path::Path, thread, time::Duration};

use portwatch::watcher::{PortChange, PortWatcher};

fn main() {
    let pid: u32 = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(pid)) => pid,
        _ => {
            eprintln!("usage: watch_pid PID");
            std::process::exit(2);
        }
    };
    let mut watcher = match PortWatcher::new(pid, |change| match change {
        PortChange::Opened(p) => println!("opened {} port {} (pid {})", p.address, p.port, p.pid),
        PortChange::Closed(p) => println!("closed {} port {} (pid {})", p.address, p.port, p.pid),
    }) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("watch_pid: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = watcher.start() {
        eprintln!("watch_pid: {e}");
        std::process::exit(1);
    }
    println!("watching pid {pid}");
    while Path::new(&format!("/proc/{pid}")).exists() {
        thread::sleep(Duration::from_millis(200));
    }
    watcher.stop();
}
