//! The one place that decides when a command stops: SIGINT or SIGTERM, or
//! a reader of stdout that went away.

use std::os::fd::{AsFd as _, OwnedFd};

use anyhow::Context as _;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
};

pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
    stdout: Option<AsyncFd<OwnedFd>>,
}

impl Shutdown {
    /// Installs the handlers. Done first, so that a signal during start-up
    /// still ends the run cleanly (the kernel programs detached).
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            stdout: watch_stdout(),
        })
    }

    /// Completes at the first signal, or when stdout is a pipe or socket
    /// whose reader is gone (`portwatch watch | head -1`): without that,
    /// a quiet host would keep portwatch running until its next write.
    pub async fn requested(&mut self) {
        let stdout_gone = async {
            match &self.stdout {
                // Any readiness here is an error or hang-up: nothing else
                // was asked for.
                Some(fd) => {
                    let _ = fd.ready(Interest::ERROR).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            () = stdout_gone => {}
        }
    }
}

/// stdout registered for errors and hang-ups only. None for a terminal
/// that cannot report them, a file or /dev/null (epoll refuses those).
fn watch_stdout() -> Option<AsyncFd<OwnedFd>> {
    let fd = rustix::io::dup(std::io::stdout().as_fd()).ok()?;
    // SAFETY: the AsyncFd owns this duplicate, so the fd stays open and
    // the same for as long as it is registered.
    unsafe { AsyncFd::register_with_interest(fd, Interest::ERROR) }.ok()
}
