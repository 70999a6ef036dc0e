//! Sockets in any state, as `ss -tuanp` lists them: plain data.

use std::net::SocketAddr;

use serde::Serialize;

use crate::{container::Container, event::Proto};

/// A socket's state, named as `ss` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum SocketState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    /// A UDP socket that is not connected (the kernel's CLOSE).
    Unconnected,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    Other(u8),
}

impl SocketState {
    /// From the kernel's state number (`include/net/tcp_states.h`), which
    /// UDP shares: ESTABLISHED when connected, CLOSE otherwise.
    pub fn from_kernel(proto: Proto, state: u8) -> Self {
        match state {
            1 => Self::Established,
            2 => Self::SynSent,
            3 => Self::SynRecv,
            4 => Self::FinWait1,
            5 => Self::FinWait2,
            6 => Self::TimeWait,
            7 if proto == Proto::Udp => Self::Unconnected,
            7 => Self::Close,
            8 => Self::CloseWait,
            9 => Self::LastAck,
            10 => Self::Listen,
            11 => Self::Closing,
            n => Self::Other(n),
        }
    }

    /// As `ss` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Established => "ESTAB",
            Self::SynSent => "SYN-SENT",
            Self::SynRecv => "SYN-RECV",
            Self::FinWait1 => "FIN-WAIT-1",
            Self::FinWait2 => "FIN-WAIT-2",
            Self::TimeWait => "TIME-WAIT",
            Self::Unconnected => "UNCONN",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE-WAIT",
            Self::LastAck => "LAST-ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::Other(_) => "?",
        }
    }
}

/// One socket and its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    pub proto: Proto,
    pub state: SocketState,
    pub local: SocketAddr,
    /// The peer, for a connected socket.
    pub remote: Option<SocketAddr>,
    /// The oldest process holding it; 0 when none is visible (a TIME-WAIT
    /// socket has no holder).
    pub pid: u32,
    pub comm: String,
    pub uid: u32,
    pub netns: u64,
    pub cookie: Option<u64>,
    pub inode: u64,
    pub cgroup: String,
    pub container: Option<Container>,
}

#[cfg(test)]
impl SocketInfo {
    /// A socket of pid 1 in the fakes' namespace, for tests.
    pub(crate) fn example(proto: Proto, local: &str, remote: Option<&str>) -> SocketInfo {
        SocketInfo {
            proto,
            state: if remote.is_some() {
                SocketState::Established
            } else if proto == Proto::Udp {
                SocketState::Unconnected
            } else {
                SocketState::Listen
            },
            local: local.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            remote: remote.and_then(|r| r.parse().ok()),
            pid: 1,
            comm: "p1".into(),
            uid: 0,
            netns: 4026531840,
            cookie: None,
            inode: 1,
            cgroup: String::new(),
            container: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_named_as_ss_names_them() {
        assert_eq!(SocketState::from_kernel(Proto::Tcp, 10).as_str(), "LISTEN");
        assert_eq!(SocketState::from_kernel(Proto::Tcp, 1).as_str(), "ESTAB");
        assert_eq!(SocketState::from_kernel(Proto::Udp, 7).as_str(), "UNCONN");
        assert_eq!(SocketState::from_kernel(Proto::Tcp, 7).as_str(), "CLOSE");
        assert_eq!(
            SocketState::from_kernel(Proto::Tcp, 42),
            SocketState::Other(42)
        );
    }
}
