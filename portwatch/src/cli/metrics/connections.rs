//! The metrics endpoint's connections, bounded. Any local user can connect
//! to 127.0.0.1, so without limits a few thousand idle connections would
//! take every descriptor the process has (and the monitor needs them):
//! connections are capped per peer and in total, one that is idle
//! (no byte read or written) for [`IDLE`] is closed, and none lives longer
//! than [`LIFETIME`] (a scraper reconnects; a trickling client cannot hold a
//! slot). Connections past a cap are closed at once, so the kernel's accept
//! queue never fills either.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    time::{Instant, Sleep},
};

/// Connections at once, from all peers.
pub const TOTAL: usize = 64;
/// Connections at once from one peer: a local user (every local user
/// shares the loopback addresses, and may pick any of 127.0.0.0/8), or a
/// remote address.
pub const PER_PEER: usize = 16;

/// Who a connection counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Peer {
    /// A local process's connection: its owner.
    User(u32),
    /// A remote one (or a local one whose owner cannot be read).
    Address(IpAddr),
}

/// The peer of a connection from `from` to `to`: on loopback, the user
/// that owns the other end (a sock_diag lookup, off the event loop).
fn peer_of(from: SocketAddr, to: SocketAddr) -> Peer {
    if from.ip().is_loopback()
        && let Some(uid) = portwatch::host::local_peer_uid(from, to)
    {
        return Peer::User(uid);
    }
    Peer::Address(from.ip())
}
/// A connection with no byte read or written for this long is closed.
pub const IDLE: Duration = Duration::from_secs(10);
/// No connection lives longer than this.
pub const LIFETIME: Duration = Duration::from_secs(60);

/// Connections held, per peer address.
#[derive(Default)]
struct Held {
    total: usize,
    by_peer: HashMap<Peer, usize>,
}

/// Whether one more connection from `peer` fits; counts it when it does.
/// Pure, so the caps are unit-tested.
fn admit(held: &mut Held, peer: Peer, total: usize, per_peer: usize) -> bool {
    let n = held.by_peer.get(&peer).copied().unwrap_or(0);
    if held.total >= total || n >= per_peer {
        return false;
    }
    held.total += 1;
    held.by_peer.insert(peer, n + 1);
    true
}

fn release(held: &mut Held, peer: Peer) {
    held.total = held.total.saturating_sub(1);
    if let Some(n) = held.by_peer.get_mut(&peer) {
        *n -= 1;
        if *n == 0 {
            held.by_peer.remove(&peer);
        }
    }
}

/// A listener that hands axum only connections within the caps.
pub struct Bounded {
    inner: TcpListener,
    held: Arc<Mutex<Held>>,
}

impl Bounded {
    pub fn new(inner: TcpListener) -> Self {
        Self {
            inner,
            held: Arc::default(),
        }
    }
}

/// A connection's place under the caps: given back when it closes.
struct Slot {
    held: Arc<Mutex<Held>>,
    peer: Peer,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A poisoned lock means a panic elsewhere: nothing to give back to.
        if let Ok(mut held) = self.held.lock() {
            release(&mut held, self.peer);
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors, say: the listener stays usable.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let who = match stream.local_addr() {
                Ok(local) => peer_of(peer, local),
                Err(_) => Peer::Address(peer.ip()),
            };
            let admitted = self
                .held
                .lock()
                .is_ok_and(|mut held| admit(&mut held, who, TOTAL, PER_PEER));
            if !admitted {
                // Closed at once: the descriptor is given back now.
                drop(stream);
                continue;
            }
            let now = Instant::now();
            let conn = Conn {
                stream,
                _slot: Slot {
                    held: self.held.clone(),
                    peer: who,
                },
                idle: Box::pin(tokio::time::sleep_until(now + IDLE)),
                end: Box::pin(tokio::time::sleep_until(now + LIFETIME)),
            };
            return (conn, peer);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that ends when idle or old.
pub struct Conn {
    stream: TcpStream,
    _slot: Slot,
    idle: Pin<Box<Sleep>>,
    end: Pin<Box<Sleep>>,
}

impl Conn {
    /// After the inner call: progress resets the idle clock; while waiting,
    /// the clocks may end the connection.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.end.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection is too old",
            )));
        }
        match polled {
            Poll::Ready(r) => {
                self.idle.as_mut().reset(Instant::now() + IDLE);
                Poll::Ready(r)
            }
            Poll::Pending if self.idle.as_mut().poll(cx).is_ready() => Poll::Ready(Err(
                io::Error::new(io::ErrorKind::TimedOut, "the connection is idle"),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.timed(cx, polled)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.timed(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.timed(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_peer_and_in_total_and_free_on_release() {
        let mut held = Held::default();
        let (a, b) = (
            Peer::User(65534),
            Peer::Address("192.0.2.1".parse().unwrap()),
        );
        for _ in 0..3 {
            assert!(admit(&mut held, a, 5, 3));
        }
        assert!(!admit(&mut held, a, 5, 3), "a's share is full");
        assert!(admit(&mut held, b, 5, 3), "b still gets in");
        assert!(admit(&mut held, b, 5, 3));
        assert!(!admit(&mut held, b, 5, 3), "the total is full");
        release(&mut held, a);
        assert!(admit(&mut held, a, 5, 3));
        for _ in 0..3 {
            release(&mut held, a);
        }
        assert!(!held.by_peer.contains_key(&a));
        assert_eq!(held.total, 2);
    }
}
