//! Live exposure facts: one thread holds, for each network namespace
//! with listeners, two netlink sockets subscribed to its changes (the
//! nftables group, and rtnetlink's links and addresses), and reads the
//! namespace's facts again once a burst of changes is over. Nothing polls
//! the ruleset in a loop.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsFd, OwnedFd},
        unix::{fs::MetadataExt as _, net::UnixStream},
    },
    sync::{Arc, mpsc},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use netlink_sys::{
    Socket, SocketAddr,
    protocols::{NETLINK_NETFILTER, NETLINK_ROUTE},
};
use rustix::{
    event::{PollFd, PollFlags, poll},
    thread::{LinkNameSpaceType, move_into_link_name_space},
};
use tokio::sync::mpsc as tokio_mpsc;

use super::exposure_facts::facts_in;
use crate::netns_facts::{NetnsFacts, Translate};

/// How long a burst of changes may go on before the facts are read again
/// (an `nft -f` file or a container start sends many messages at once).
const SETTLE: Duration = Duration::from_millis(50);

/// The most namespaces watched at once (each holds three descriptors and
/// its facts); listeners of any beyond are `unknown`.
const MAX_WATCHED: usize = 2_000;

/// The most messages read from one socket per wake: a namespace whose
/// rules change without pause is marked changed, and the others' turn
/// comes.
const MAX_DRAIN: usize = 1_024;

/// `NFNLGRP_NFTABLES`, and rtnetlink's link and address groups, as
/// `bind(2)` group masks (bit `group - 1`).
const NFTABLES_GROUPS: u32 = 1 << (7 - 1);
const ROUTE_GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// A namespace's facts, or why they could not be read.
pub(crate) type FactsResult = std::result::Result<Arc<NetnsFacts>, String>;

/// Where the monitor gets exposure facts from (a fake in tests).
pub(crate) trait FactsSource: Send {
    /// Starts watching namespace `netns`, entered through process `pid`
    /// (0: portwatch's own namespace); its facts follow from
    /// [`Self::poll_changed`], then again whenever they change.
    fn watch(&mut self, netns: u64, pid: u32);
    /// Stops watching `netns`.
    fn forget(&mut self, netns: u64);
    /// The next namespace whose facts were read.
    fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<Option<(u64, FactsResult)>>;
    /// Reads the facts of `netns` now, on the caller's thread (at
    /// start-up, for the baseline).
    fn read_now(&mut self, netns: u64, pid: u32) -> FactsResult;
    /// portwatch's own network namespace.
    fn own_netns(&self) -> Option<u64>;
}

enum Command {
    Watch { netns: u64, ns: Option<OwnedFd> },
    Forget(u64),
}

/// The system's [`FactsSource`]: the watching thread and its channels.
pub(crate) struct SystemFacts {
    translate: Translate,
    commands: mpsc::Sender<Command>,
    wake: UnixStream,
    changed: tokio_mpsc::Receiver<(u64, FactsResult)>,
    own: Option<u64>,
}

impl SystemFacts {
    /// Starts the watching thread; `translate` makes what it reads ready
    /// to judge (the exposure layer's, given from above).
    pub(crate) fn start(translate: Translate) -> io::Result<Self> {
        let (commands, rx) = mpsc::channel();
        let (wake, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        let (tx, changed) = tokio_mpsc::channel(256);
        std::thread::Builder::new()
            .name("portwatch-exposure".into())
            .spawn(move || watch_loop(&rx, &wake_rx, &tx, translate))?;
        Ok(Self {
            translate,
            commands,
            wake,
            changed,
            own: super::netns::of_process(std::process::id()),
        })
    }

    fn enter(&self, netns: u64, pid: u32) -> Option<Option<OwnedFd>> {
        enter(netns, pid, self.own)
    }

    fn send(&mut self, c: Command) {
        if self.commands.send(c).is_ok() {
            // A full socket buffer already wakes the thread.
            let _ = self.wake.write(&[1]);
        }
    }
}

impl FactsSource for SystemFacts {
    fn watch(&mut self, netns: u64, pid: u32) {
        if let Some(ns) = self.enter(netns, pid) {
            self.send(Command::Watch { netns, ns });
        }
    }

    fn forget(&mut self, netns: u64) {
        self.send(Command::Forget(netns));
    }

    fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<Option<(u64, FactsResult)>> {
        self.changed.poll_recv(cx)
    }

    fn own_netns(&self) -> Option<u64> {
        self.own
    }

    fn read_now(&mut self, netns: u64, pid: u32) -> FactsResult {
        read_now(netns, pid, self.own, self.translate)
    }
}

/// A way into `netns` through `pid`: `Some(None)` for portwatch's own
/// namespace (`own`), `None` when `pid` is no longer in it.
fn enter(netns: u64, pid: u32, own: Option<u64>) -> Option<Option<OwnedFd>> {
    if Some(netns) == own {
        return Some(None);
    }
    if pid == 0 {
        return None;
    }
    // The same namespace still? The pid may have been reused.
    match File::open(format!("/proc/{pid}/ns/net")) {
        Ok(f) if f.metadata().is_ok_and(|m| m.ino() == netns) => Some(Some(OwnedFd::from(f))),
        _ => None,
    }
}

/// The facts of `netns`, read now through process `pid` (see
/// [`FactsSource::read_now`]).
pub(crate) fn read_now(
    netns: u64,
    pid: u32,
    own: Option<u64>,
    translate: Translate,
) -> FactsResult {
    let ns = enter(netns, pid, own).ok_or("no process of it is left to enter it by")?;
    facts_in(ns.as_ref().map(AsFd::as_fd))
        .map(|raw| Arc::new(translate(raw)))
        .map_err(|e| read_error(&e))
}

/// Why a namespace's facts cannot be read, in a few words.
fn read_error(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::PermissionDenied {
        "reading netfilter rules needs root (CAP_NET_ADMIN)".into()
    } else {
        format!("cannot read its rules and interfaces: {e}")
    }
}

/// One watched namespace.
struct Watched {
    ns: Option<OwnedFd>,
    sockets: [Socket; 2],
}

/// The two subscribed sockets, made inside the namespace (a netlink
/// socket belongs to the namespace it was made in).
fn subscribe(ns: Option<&OwnedFd>) -> io::Result<[Socket; 2]> {
    let make = || -> io::Result<[Socket; 2]> {
        let mut nft = Socket::new(NETLINK_NETFILTER)?;
        nft.bind(&SocketAddr::new(0, NFTABLES_GROUPS))?;
        let mut route = Socket::new(NETLINK_ROUTE)?;
        route.bind(&SocketAddr::new(0, ROUTE_GROUPS))?;
        nft.set_non_blocking(true)?;
        route.set_non_blocking(true)?;
        Ok([nft, route])
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(ns) = ns {
                move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))?;
            }
            make()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace subscriber panicked")))
    })
}

/// Reads what a socket has; true if anything (or a lost message) came.
fn drain(socket: &Socket) -> bool {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut any = false;
    for _ in 0..MAX_DRAIN {
        buf.clear();
        match socket.recv(&mut buf, 0) {
            Ok(_) => any = true,
            // ENOBUFS: messages were lost; read again all the same.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
            Err(_) => return any,
        }
    }
    // More to read: it is still changing; what is left wakes the next
    // poll.
    any
}

fn watch_loop(
    commands: &mpsc::Receiver<Command>,
    wake: &UnixStream,
    changed: &tokio_mpsc::Sender<(u64, FactsResult)>,
    translate: Translate,
) {
    let mut watched: HashMap<u64, Watched> = HashMap::new();
    // Namespaces changed, and when they are to be read again.
    let mut dirty: HashMap<u64, Instant> = HashMap::new();
    // A namespace just read is not read again before this: reading one
    // takes time in proportion to its rules, and anyone may change the
    // rules of a namespace of their own without pause. Each rests twice
    // as long as its last read took, so that none takes more than a third
    // of this thread, and the others' turns come.
    let mut rest_until: HashMap<u64, Instant> = HashMap::new();
    loop {
        let timeout = dirty
            .values()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .min();
        let order: Vec<u64> = watched.keys().copied().collect();
        let mut fds = vec![PollFd::new(wake, PollFlags::IN)];
        for ino in &order {
            for s in &watched[ino].sockets {
                fds.push(PollFd::new(s, PollFlags::IN));
            }
        }
        let ms = timeout.map_or(-1, |t| {
            i32::try_from(t.as_millis()).unwrap_or(i32::MAX).max(1)
        });
        if poll(&mut fds, ms).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            let mut buf = [0u8; 64];
            while matches!((&*wake).read(&mut buf), Ok(n) if n > 0) {}
        }
        loop {
            match commands.try_recv() {
                Ok(Command::Watch { netns, .. }) if watched.len() >= MAX_WATCHED => {
                    let why = format!("more than {MAX_WATCHED} network namespaces are watched");
                    if changed.blocking_send((netns, Err(why))).is_err() {
                        return;
                    }
                }
                Ok(Command::Watch { netns, ns }) => match subscribe(ns.as_ref()) {
                    Ok(sockets) => {
                        watched.insert(netns, Watched { ns, sockets });
                        // Read at once.
                        dirty.insert(netns, Instant::now());
                    }
                    Err(e) => {
                        let why = format!("cannot watch its rules and interfaces: {e}");
                        if changed.blocking_send((netns, Err(why))).is_err() {
                            return;
                        }
                    }
                },
                // Its rest is kept: a listener opened and closed in a loop
                // would otherwise have it read back to back.
                Ok(Command::Forget(netns)) => {
                    watched.remove(&netns);
                    dirty.remove(&netns);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        for (i, ino) in order.iter().enumerate() {
            let Some(w) = watched.get(ino) else { continue };
            let hit = [ready[1 + 2 * i], ready[2 + 2 * i]];
            let mut any = false;
            for (s, h) in w.sockets.iter().zip(hit) {
                if h {
                    any |= drain(s);
                }
            }
            if any {
                let settled = Instant::now() + SETTLE;
                let rested = rest_until.get(ino).copied().unwrap_or(settled);
                dirty.entry(*ino).or_insert(settled.max(rested));
            }
        }
        let now = Instant::now();
        let due: Vec<u64> = dirty
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in due {
            dirty.remove(&ino);
            let Some(w) = watched.get(&ino) else { continue };
            let started = Instant::now();
            let result = facts_in(w.ns.as_ref().map(AsFd::as_fd))
                .map(|raw| Arc::new(translate(raw)))
                .map_err(|e| read_error(&e));
            let took = started.elapsed();
            rest_until.insert(ino, Instant::now() + 2 * took);
            // The benchmark reads this line too.
            tracing::debug!("exposure: read netns {ino} in {} us", took.as_micros());
            if changed.blocking_send((ino, result)).is_err() {
                return;
            }
        }
    }
}
