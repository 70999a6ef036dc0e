//! The event socket's server: accepts clients, reads and checks each
//! one's request, and hands the accepted ones to the monitor loop as
//! [`Join`]s. Each client's lines are written by a task of its own, from
//! its bounded queue, so a client that stops reading blocks only itself.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::mpsc,
    task::JoinHandle,
};

use super::{
    hub::Join,
    request::{MAX_REQUEST_BYTES, parse_request},
};
use crate::{
    error::{Error, Result},
    sys::local_socket::{self, BoundSocket},
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
    /// Clients served at once; more are refused.
    pub max_clients: usize,
}

impl SocketConfig {
    /// `path`, group `portwatch` when it exists, 4096 items per client,
    /// 64 clients.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            group: local_socket::group_id("portwatch"),
            queue: 4096,
            max_clients: 64,
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
/// How long a write to a client may wait for it to read: one that reads
/// nothing for this long is disconnected, and its slot freed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

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
    let connected = Arc::new(AtomicUsize::new(0));
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
        let guard = Connected::new(connected.clone());
        let (joins, queue, max) = (joins.clone(), config.queue, config.max_clients);
        tokio::spawn(async move {
            if guard.count > max {
                refuse(stream, &format!("{max} clients are connected already")).await;
                return;
            }
            serve_client(stream, joins, queue).await;
            drop(guard);
        });
    }
}

/// Counts a connected client while it lives.
struct Connected {
    all: Arc<AtomicUsize>,
    count: usize,
}

impl Connected {
    fn new(all: Arc<AtomicUsize>) -> Self {
        let count = all.fetch_add(1, Ordering::Relaxed) + 1;
        Self { all, count }
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.all.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    event: &'static str,
    message: &'a str,
}

async fn refuse(mut stream: UnixStream, message: &str) {
    let mut line = crate::output::to_json(&ErrorJson {
        event: "error",
        message,
    });
    line.push('\n');
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(line.as_bytes())).await;
}

/// Reads the request, checks it against the client's credentials, joins,
/// then writes the client's queue out until either side is gone.
async fn serve_client(stream: UnixStream, joins: mpsc::Sender<Join>, queue: usize) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            tracing::warn!("event socket: no credentials for a client: {e}");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES as u64);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let filter = match read {
        Ok(Ok(_)) if line.ends_with('\n') => parse_request(&line).and_then(|f| {
            authorize(uid, f.pid)?;
            Ok(f)
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
    let filter = match filter {
        Ok(f) => f,
        Err(message) => {
            if let Ok(stream) = reader.into_inner().into_inner().reunite(write) {
                refuse(stream, &message).await;
            }
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel::<String>(queue.max(1));
    if joins.send(Join { filter, tx }).await.is_err() {
        return;
    }
    while let Some(chunk) = rx.recv().await {
        match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(chunk.as_bytes())).await {
            Ok(Ok(())) => {}
            // Gone, or stuck: either way its queue and slot go.
            Ok(Err(_)) | Err(_) => return,
        }
    }
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
