//! What the socket tables hold, however they are read (sock_diag or the
//! /proc/net text files): one row per socket, asked for by protocol and
//! state.

use std::net::SocketAddr;

use crate::event::Proto;

/// Kernel socket states (`include/net/tcp_states.h`), as sock_diag and
/// /proc/net number them. UDP uses ESTABLISHED (connected) and CLOSE.
pub(crate) mod state {
    pub(crate) const LISTEN: u8 = 10;
}

/// A set of socket states, one bit per state number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct States(pub u32);

impl States {
    /// Every state.
    pub(crate) const ALL: States = States(u32::MAX);

    pub(crate) const fn only(state: u8) -> States {
        States(1 << state)
    }

    pub(crate) fn contains(self, state: u8) -> bool {
        state < 32 && self.0 & (1 << state) != 0
    }
}

/// Which sockets to read: one protocol, some states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketQuery {
    pub proto: Proto,
    pub states: States,
}

impl SocketQuery {
    /// Listening TCP sockets.
    pub(crate) const TCP_LISTEN: SocketQuery = SocketQuery {
        proto: Proto::Tcp,
        states: States::only(state::LISTEN),
    };

    /// Every socket of `proto`, in any state.
    pub(crate) const fn every_state(proto: Proto) -> SocketQuery {
        SocketQuery {
            proto,
            states: States::ALL,
        }
    }
}

/// One socket as the tables show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketEntry {
    pub proto: Proto,
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub uid: u32,
    pub inode: u64,
    /// The socket cookie; only sock_diag shows it.
    pub cookie: Option<u64>,
    pub netns: u64,
    /// The socket's cgroup v2 id; only sock_diag shows it (0 unknown).
    pub cgroup: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_sets() {
        let listen = States::only(state::LISTEN);
        assert!(listen.contains(state::LISTEN));
        assert!(!listen.contains(7));
        assert!(!States(u32::MAX).contains(40));
    }
}
