//! A watcher with a monitor of its own (root): the monitor's port events
//! reported, and pids added and removed as the user asks.

use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

use super::{Callback, Command};
use crate::{
    error::Result,
    monitor::{Monitor, MonitorConfig, MonitorEvent},
};

/// Watches until dropped or the monitor fails: `started` gets Ok once the
/// baseline is reported, or why the monitor could not start (and then
/// this returns the callback).
pub(crate) async fn run(
    config: MonitorConfig,
    more_roots: Vec<u32>,
    mut callback: Callback,
    started: std_mpsc::Sender<Result<()>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) -> Option<Callback> {
    let mut monitor = match Monitor::start(config) {
        Ok(m) => m,
        Err(e) => {
            let _ = started.send(Err(e));
            return Some(callback);
        }
    };
    for pid in more_roots {
        if let Err(e) = monitor.add_root(pid) {
            let _ = started.send(Err(e));
            return Some(callback);
        }
    }
    loop {
        tokio::select! {
            Some(cmd) = commands.recv() => match cmd {
                Command::Add(pid, reply) => {
                    let _ = reply.send(monitor.add_root(pid));
                }
                Command::Remove(pid, reply) => {
                    let _ = reply.send(monitor.remove_root(pid));
                }
            },
            ev = monitor.next() => match ev {
                Ok(MonitorEvent::Port(ev)) => callback((&ev).into()),
                Ok(MonitorEvent::Ready(_)) => {
                    let _ = started.send(Ok(()));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("portwatch stopped: {e}");
                    return None;
                }
            },
        }
    }
}
