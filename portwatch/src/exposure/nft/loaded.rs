//! What a register holds while a rule runs, and the matches made of it:
//! shared by the bytecode run (`expr`) and set lookups (`sets`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::{
    event::Proto,
    netns_facts::{CtState, Match},
};

/// What a register holds.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Loaded {
    IifName,
    Iif,
    L4Proto,
    NfProto,
    /// An address of the network header, its first `len` bytes.
    Addr {
        source: bool,
        v6: bool,
        len: usize,
    },
    DestPort,
    CtState,
    /// `ct state` masked: the states of the mask.
    CtStates(Vec<CtState>),
    /// An address under a mask: a prefix of this many bits.
    Prefix {
        source: bool,
        v6: bool,
        bits: u8,
    },
    /// A constant (for nat).
    Value(Vec<u8>),
    /// Something the model has no match for, by name.
    Other(String),
}

pub(super) fn proto_match(number: Option<u8>, negated: bool) -> Match {
    match number {
        Some(6) => Match::Proto {
            proto: Proto::Tcp,
            negated,
        },
        Some(17) => Match::Proto {
            proto: Proto::Udp,
            negated,
        },
        _ => Match::OtherProto { negated },
    }
}

/// The network of the first bytes of an address and a prefix length.
pub(super) fn addr_net(data: &[u8], v6: bool, bits: u8) -> Option<IpNet> {
    if v6 {
        let mut b = [0u8; 16];
        let n = data.len().min(16);
        b[..n].copy_from_slice(&data[..n]);
        IpNet::new(IpAddr::V6(Ipv6Addr::from(b)), bits).ok()
    } else {
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        IpNet::new(IpAddr::V4(Ipv4Addr::from(b)), bits).ok()
    }
}

pub(super) fn addr_match(source: bool, nets: Vec<IpNet>, negated: bool) -> Match {
    if source {
        Match::SourceAddr { nets, negated }
    } else {
        Match::DestAddr { nets, negated }
    }
}

/// `NFT_CT_STATE` bits (`NF_CT_STATE_BIT`).
pub(super) fn ct_states(mask: u32) -> Vec<CtState> {
    let mut out = Vec::new();
    for (bit, state) in [
        (1, CtState::Invalid),
        (2, CtState::Established),
        (4, CtState::Related),
        (8, CtState::New),
        (64, CtState::Untracked),
    ] {
        if mask & bit != 0 {
            out.push(state);
        }
    }
    out
}
