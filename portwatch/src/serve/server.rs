//! The event socket's server: accepts clients, reads and checks each
//! one's request, and hands the accepted ones to the monitor loop as
//! [`Join`]s. Each client's lines are written by a task of its own, from
//! its bounded queue, so a client that stops reading blocks only itself.
//! Slots are counted per user, and root's apart, so no user can take
//! them all; a client that reads nothing for a while is cut off, whether
//! or not a write of ours is waiting for it.

use std::{
    collections::HashMap,
    io,
    os::fd::AsFd as _,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader, Interest},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::mpsc,
    task::JoinHandle,
    time::MissedTickBehavior,
};

use super::hub::Join;
use crate::{
    error::{Error, Result},
    sys::local_socket::{self, BoundSocket},
    wire::request::{MAX_REQUEST_BYTES, Subscription, parse_subscription},
};

/// Where and how the event socket is served.
#[derive(Clone, Debug)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// The group that may connect besides root; None: root alone.
    pub group: Option<u32>,
    /// Items (lines or a baseline) queued per client before it counts as
    /// lost.
    pub queue: usize,
    /// Clients of users other than root served at once; more are
    /// refused.
    pub max_clients: usize,
    /// Clients of one user other than root served at once, so that one
    /// user cannot take every slot.
    pub max_clients_per_user: usize,
    /// Root's clients served at once, besides the others': what other
    /// users hold never keeps root out.
    pub max_root_clients: usize,
    /// A client that has unread lines and reads none of them for this
    /// long is disconnected, and its slot freed.
    pub stall_timeout: Duration,
}

impl SocketConfig {
    /// `path`, group `portwatch` when it exists, 4096 items per client,
    /// 64 clients of other users (8 per user) and 64 of root's, cut off
    /// after 30 s without reading.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            group: local_socket::group_id("portwatch"),
            queue: 4096,
            max_clients: 64,
            max_clients_per_user: 8,
            max_root_clients: 64,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// The gid of group `name`, or one sentence.
pub fn group_id(name: &str) -> Result<u32> {
    local_socket::group_id(name).ok_or_else(|| {
        Error::Refused(format!(
            "there is no group named {:?}",
            crate::safe_text::safe_str(name)
        ))
    })
}

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a client with unread lines is looked at (one ioctl).
const STALL_CHECK: Duration = Duration::from_secs(1);

/// A serving event socket. Dropping it stops accepting and removes the
/// socket file.
pub struct Server {
    joins: mpsc::Receiver<Join>,
    accept: JoinHandle<()>,
    _socket: BoundSocket,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Server {
    /// Binds the socket and starts accepting. Needs a tokio runtime.
    pub fn start(config: SocketConfig) -> Result<Self> {
        let socket = local_socket::bind(&config.path, config.group)?;
        let std_listener = socket.listener.try_clone().map_err(|source| Error::Io {
            what: "cannot use the event socket",
            source,
        })?;
        std_listener
            .set_nonblocking(true)
            .and_then(|()| UnixListener::from_std(std_listener))
            .map_err(|source| Error::Io {
                what: "cannot use the event socket",
                source,
            })
            .map(|listener| {
                let (tx, joins) = mpsc::channel(16);
                let accept = tokio::spawn(accept_loop(listener, tx, config));
                Self {
                    joins,
                    accept,
                    _socket: socket,
                }
            })
    }

    /// The next accepted client. Cancel-safe.
    pub async fn next_join(&mut self) -> Option<Join> {
        self.joins.recv().await
    }
}

async fn accept_loop(listener: UnixListener, joins: mpsc::Sender<Join>, config: SocketConfig) {
    let slots = Arc::new(Mutex::new(Slots::new(&config)));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: the listener stays usable.
                tracing::warn!("event socket: cannot accept a client: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                tracing::warn!("event socket: no credentials for a client: {e}");
                continue;
            }
        };
        let taken = lock(&slots).take(uid);
        if let Err(message) = taken {
            tokio::spawn(async move { refuse(stream, &message).await });
            continue;
        }
        let slot = Slot {
            slots: slots.clone(),
            uid,
        };
        let (joins, queue, stall) = (joins.clone(), config.queue, config.stall_timeout);
        tokio::spawn(async move {
            serve_client(stream, uid, joins, queue, stall).await;
            drop(slot);
        });
    }
}

/// The clients connected, per uid, against the limits: each user other
/// than root has a share of the slots that all of them have together;
/// root has an allowance of its own.
#[derive(Debug)]
struct Slots {
    per_user: usize,
    users: usize,
    root: usize,
    /// Live clients per uid; a uid with none has no entry.
    held: HashMap<u32, usize>,
    /// Live clients of users other than root.
    others: usize,
}

impl Slots {
    fn new(config: &SocketConfig) -> Self {
        Self {
            per_user: config.max_clients_per_user,
            users: config.max_clients,
            root: config.max_root_clients,
            held: HashMap::new(),
            others: 0,
        }
    }

    /// A slot for a client of `uid`, or why there is none.
    fn take(&mut self, uid: u32) -> std::result::Result<(), String> {
        let mine = self.held.get(&uid).copied().unwrap_or_default();
        if uid == 0 {
            if mine >= self.root {
                return Err(format!(
                    "root has {mine} clients connected already (at most {} for root)",
                    self.root
                ));
            }
        } else {
            if mine >= self.per_user {
                return Err(format!(
                    "user {uid} has {mine} clients connected already (at most {} per user)",
                    self.per_user
                ));
            }
            if self.others >= self.users {
                return Err(format!(
                    "{} clients of users other than root are connected already (at most {} in all)",
                    self.others, self.users
                ));
            }
            self.others += 1;
        }
        *self.held.entry(uid).or_default() += 1;
        Ok(())
    }

    /// Gives back a slot `take` gave a client of `uid`.
    fn give_back(&mut self, uid: u32) {
        if let Some(n) = self.held.get_mut(&uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(&uid);
            }
            if uid != 0 {
                self.others = self.others.saturating_sub(1);
            }
        }
    }
}

/// The counts stay consistent whatever panicked while holding the lock:
/// each change is one step.
fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A client's slot while it lives.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.slots).give_back(self.uid);
    }
}

/// Whether a client still reads, judged from looks at how much of what
/// was written to it it has not read yet (the kernel's count, which falls
/// only as the client reads). It is stalled once it has had unread bytes
/// and that count has not fallen for `timeout`. A count that stays level
/// while writes of ours go on is no sign of reading: [`Stall::wrote`]
/// takes the level after each write, so only the client's reads lower it.
#[derive(Debug)]
struct Stall {
    timeout: Duration,
    /// Unread bytes at the last look or write.
    last: u64,
    /// Since when the client has had unread bytes and read none of them.
    since: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Reading,
    Stalled,
}

impl Stall {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            last: 0,
            since: None,
        }
    }

    /// A look at `now`, with no write of ours since the last look.
    fn observe(&mut self, now: Instant, unread: u64) -> Verdict {
        if unread == 0 {
            self.since = None;
        } else if unread < self.last || self.since.is_none() {
            // It read some (or had nothing to read until now).
            self.since = Some(now);
        }
        self.last = unread;
        match self.since {
            Some(t) if now.saturating_duration_since(t) >= self.timeout => Verdict::Stalled,
            _ => Verdict::Reading,
        }
    }

    /// Right after a write of ours: `unread` counts it now, which is no
    /// read of the client's either way.
    fn wrote(&mut self, now: Instant, unread: u64) {
        if unread > 0 && self.since.is_none() {
            self.since = Some(now);
        }
        self.last = unread;
    }

    /// Whether the client has bytes to read, so it is worth looking at.
    fn watching(&self) -> bool {
        self.last > 0
    }
}

async fn refuse(mut stream: UnixStream, message: &str) {
    let mut line = crate::wire::Line::refusal(message).to_json();
    line.push('\n');
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(line.as_bytes())).await;
}

/// Reads the request, checks it against the client's credentials, joins,
/// then writes the client's queue out until either side is gone.
async fn serve_client(
    stream: UnixStream,
    uid: u32,
    joins: mpsc::Sender<Join>,
    queue: usize,
    stall_timeout: Duration,
) {
    let (read, write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES as u64);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let filter = match read {
        Ok(Ok(_)) if line.ends_with('\n') => parse_subscription(&line).and_then(|s| {
            authorize(uid, s.filter.pid)?;
            Ok(s)
        }),
        Ok(Ok(_)) => Err(format!(
            "send one request line (at most {MAX_REQUEST_BYTES} bytes, `{{}}` for everything) first"
        )),
        Ok(Err(e)) => Err(format!("cannot read the request: {e}")),
        Err(_) => Err(format!(
            "no request line within {} s (send `{{}}` for everything)",
            REQUEST_TIMEOUT.as_secs()
        )),
    };
    let read = reader.into_inner().into_inner();
    let subscription = match filter {
        Ok(s) => s,
        Err(message) => {
            if let Ok(stream) = read.reunite(write) {
                refuse(stream, &message).await;
            }
            return;
        }
    };
    let (tx, rx) = mpsc::channel::<String>(queue.max(1));
    let Subscription { filter, ocsf } = subscription;
    if joins
        .send(Join {
            filter,
            tx,
            uid,
            ocsf,
        })
        .await
        .is_err()
    {
        return;
    }
    match write_out(&read, &write, rx, stall_timeout).await {
        Ok(End::Stalled) => tracing::info!(
            "event socket: disconnected a client of uid {uid} that read nothing for {} s",
            stall_timeout.as_secs()
        ),
        Ok(End::Talked) => tracing::warn!(
            "event socket: disconnected a client of uid {uid} that sent more after its request"
        ),
        // The daemon stops, or the client left: its queue and slot go.
        Ok(End::Done) | Err(_) => {}
    }
}

/// Why a client's writer stopped, when nothing failed.
enum End {
    /// The queue closed, or the client hung up.
    Done,
    /// The client read nothing for the stall timeout.
    Stalled,
    /// The client sent more after its request.
    Talked,
}

/// Writes the client's queue out, a write at a time as the socket takes
/// it, while watching that the client reads and is still there.
async fn write_out(
    read: &OwnedReadHalf,
    write: &OwnedWriteHalf,
    mut rx: mpsc::Receiver<String>,
    stall_timeout: Duration,
) -> io::Result<End> {
    let unread = || local_socket::unread_bytes(write.as_ref().as_fd());
    let mut stall = Stall::new(stall_timeout);
    let mut tick = tokio::time::interval(STALL_CHECK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The line being written, and how much of it is out.
    let mut pending: Option<(String, usize)> = None;
    // It shut down its sending side only: it may still read.
    let mut half_closed = false;
    let mut scratch = [0u8; 512];
    loop {
        tokio::select! {
            // A hang-up frees the slot now, not at the next write.
            ready = read.readable(), if !half_closed => {
                ready?;
                match read.try_read(&mut scratch) {
                    Ok(0) if hung_up(write).await => return Ok(End::Done),
                    Ok(0) => half_closed = true,
                    // The protocol is one request line: a client that keeps
                    // talking would keep the event loop reading for nothing.
                    Ok(_) => return Ok(End::Talked),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            next = rx.recv(), if pending.is_none() => match next {
                Some(chunk) => pending = Some((chunk, 0)),
                None => return Ok(End::Done),
            },
            ready = write.writable(), if pending.is_some() => {
                ready?;
                let Some((chunk, done)) = pending.as_mut() else { continue };
                if stall.observe(Instant::now(), unread()?) == Verdict::Stalled {
                    return Ok(End::Stalled);
                }
                match write.try_write(chunk.as_bytes().get(*done..).unwrap_or_default()) {
                    Ok(n) => {
                        *done += n;
                        stall.wrote(Instant::now(), unread()?);
                        if *done >= chunk.len() {
                            pending = None;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            _ = tick.tick(), if stall.watching() || pending.is_some() || half_closed => {
                if half_closed && hung_up(write).await {
                    return Ok(End::Done);
                }
                if stall.observe(Instant::now(), unread()?) == Verdict::Stalled {
                    return Ok(End::Stalled);
                }
            }
        }
    }
}

/// Whether the client closed its socket (not only its sending side):
/// the kernel's hang-up, as the runtime last saw it, without waiting.
async fn hung_up(write: &OwnedWriteHalf) -> bool {
    let now = tokio::time::timeout(Duration::ZERO, write.ready(Interest::WRITABLE)).await;
    matches!(now, Ok(Ok(ready)) if ready.is_write_closed())
}

/// Root may watch any process tree; anybody else only their own.
fn authorize(uid: u32, pid: Option<u32>) -> std::result::Result<(), String> {
    let Some(pid) = pid else { return Ok(()) };
    match local_socket::process_owner(pid) {
        None => Err(format!("no process with pid {pid} exists")),
        Some(owner) if uid == 0 || owner == uid => Ok(()),
        Some(_) => Err(format!(
            "process {pid} belongs to another user: only root may watch it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_client_that_reads_nothing_is_stalled_after_the_timeout() {
        let t0 = Instant::now();
        let mut s = Stall::new(T);
        s.wrote(t0, 4096);
        assert_eq!(s.observe(t0 + secs(1), 4096), Verdict::Reading);
        assert_eq!(s.observe(t0 + secs(29), 4096), Verdict::Reading);
        assert_eq!(s.observe(t0 + secs(30), 4096), Verdict::Stalled);
    }

    #[test]
    fn writes_of_ours_do_not_count_as_reading_nor_restart_the_clock() {
        // One event every 10 s, none of them read.
        let t0 = Instant::now();
        let mut s = Stall::new(T);
        s.wrote(t0, 1000);
        for (at, level) in [(10, 2000), (20, 3000)] {
            assert_eq!(s.observe(t0 + secs(at), level - 1000), Verdict::Reading);
            s.wrote(t0 + secs(at), level);
        }
        assert_eq!(s.observe(t0 + secs(30), 3000), Verdict::Stalled);
    }

    #[test]
    fn a_slow_reader_whose_buffer_stays_full_is_reading() {
        // It takes some each second; our writes fill the room again.
        let t0 = Instant::now();
        let mut s = Stall::new(T);
        s.wrote(t0, 200_000);
        for at in 1..=120 {
            assert_eq!(s.observe(t0 + secs(at), 199_000), Verdict::Reading);
            s.wrote(t0 + secs(at), 200_000);
        }
    }

    #[test]
    fn a_client_that_read_everything_is_not_watched() {
        let t0 = Instant::now();
        let mut s = Stall::new(T);
        assert!(!s.watching());
        s.wrote(t0, 500);
        assert!(s.watching());
        assert_eq!(s.observe(t0 + secs(1), 0), Verdict::Reading);
        assert!(!s.watching());
        // A quiet hour later, one more line: the clock starts there.
        s.wrote(t0 + secs(3600), 500);
        assert_eq!(s.observe(t0 + secs(3629), 500), Verdict::Reading);
        assert_eq!(s.observe(t0 + secs(3630), 500), Verdict::Stalled);
    }

    /// `write_out` on one end of a socket pair; the other end, and the
    /// queue, are the test's.
    fn writer(
        stall: Duration,
    ) -> (
        JoinHandle<io::Result<End>>,
        UnixStream,
        mpsc::Sender<String>,
    ) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            let (read, write) = ours.into_split();
            write_out(&read, &write, rx, stall).await
        });
        (task, theirs, tx)
    }

    /// A deadline for a hang, not a timing check.
    async fn ended(task: JoinHandle<io::Result<End>>) -> End {
        tokio::time::timeout(secs(60), task)
            .await
            .expect("the writer ends")
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_frees_its_slot_with_nothing_written() {
        let (task, theirs, _tx) = writer(T);
        drop(theirs);
        assert!(matches!(ended(task).await, End::Done));
    }

    #[tokio::test]
    async fn a_client_that_only_stops_sending_still_gets_its_lines() {
        let (task, mut theirs, tx) = writer(T);
        // Its sending side only (shutdown(2) with SHUT_WR).
        theirs.shutdown().await.unwrap();
        tx.send("one\n".to_string()).await.unwrap();
        let mut lines = BufReader::new(theirs).lines();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "one");
        tx.send("two\n".to_string()).await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "two");
        assert!(!task.is_finished());
        // Then it closes for good.
        drop(lines);
        assert!(matches!(ended(task).await, End::Done));
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_is_cut_off_with_nothing_more_to_write() {
        let (task, _theirs, tx) = writer(secs(1));
        tx.send("a baseline the socket's buffer takes\n".to_string())
            .await
            .unwrap();
        assert!(matches!(ended(task).await, End::Stalled));
    }

    fn slots() -> Slots {
        let mut config = SocketConfig::new(PathBuf::from("/nonexistent"));
        (
            config.max_clients,
            config.max_clients_per_user,
            config.max_root_clients,
        ) = (5, 2, 3);
        Slots::new(&config)
    }

    #[test]
    fn each_user_has_a_share_and_root_its_own() {
        let mut s = slots();
        assert!(s.take(1000).is_ok());
        assert!(s.take(1000).is_ok());
        let why = s.take(1000).unwrap_err();
        assert_eq!(
            why,
            "user 1000 has 2 clients connected already (at most 2 per user)"
        );
        assert!(s.take(1001).is_ok());
        assert!(s.take(1001).is_ok());
        assert!(s.take(1002).is_ok());
        let why = s.take(1003).unwrap_err();
        assert_eq!(
            why,
            "5 clients of users other than root are connected already (at most 5 in all)"
        );
        // Root, with every other slot taken.
        for _ in 0..3 {
            assert!(s.take(0).is_ok());
        }
        let why = s.take(0).unwrap_err();
        assert_eq!(
            why,
            "root has 3 clients connected already (at most 3 for root)"
        );
        // A slot given back is another's to take.
        s.give_back(1000);
        assert!(s.take(1003).is_ok());
        s.give_back(0);
        assert!(s.take(0).is_ok());
    }

    #[test]
    fn slots_given_back_leave_nothing_behind() {
        let mut s = slots();
        for uid in [0, 7, 7, 8] {
            s.take(uid).unwrap();
        }
        for uid in [0, 7, 7, 8] {
            s.give_back(uid);
        }
        assert!(s.held.is_empty());
        assert_eq!(s.others, 0);
    }
}
