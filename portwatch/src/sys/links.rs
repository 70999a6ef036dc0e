//! A network namespace's interfaces and their addresses, over rtnetlink.

use std::{collections::HashMap, io};

use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage},
};
use netlink_sys::protocols::NETLINK_ROUTE;

use super::netlink_dump::{dump, socket};
use crate::{netns_facts::Interface, safe_text::safe_str};

/// The most interfaces (and addresses) read from one namespace: its owner
/// decides how many there are.
const MAX_LINKS: usize = 20_000;

/// The interfaces of the calling thread's network namespace, with their
/// indexes.
pub(crate) fn interfaces_here() -> io::Result<Vec<(u32, Interface)>> {
    let socket = socket(NETLINK_ROUTE)?;
    let mut by_index: HashMap<u32, Interface> = HashMap::new();
    for m in dump(
        &socket,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        MAX_LINKS,
    )? {
        let RouteNetlinkMessage::NewLink(link) = m else {
            continue;
        };
        let flags = link.header.flags;
        let name = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        by_index.insert(
            link.header.index,
            Interface {
                // Any user can name interfaces of a namespace of theirs:
                // made safe here, as nftables' names are.
                name: name.map_or_else(|| format!("if{}", link.header.index), |n| safe_str(&n)),
                loopback: flags.contains(LinkFlags::Loopback),
                // Up, and its carrier too: a veth whose peer is down
                // carries nothing in.
                up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
                addresses: Vec::new(),
            },
        );
    }
    for m in dump(
        &socket,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        MAX_LINKS,
    )? {
        let RouteNetlinkMessage::NewAddress(addr) = m else {
            continue;
        };
        // IFA_LOCAL is the local end where there is a peer (IFA_ADDRESS).
        let local = addr.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let address = local.or_else(|| {
            addr.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let (Some(ip), Some(iface)) = (address, by_index.get_mut(&addr.header.index)) {
            iface.addresses.push(ip);
        }
    }
    let mut all: Vec<(u32, Interface)> = by_index.into_iter().collect();
    all.sort_by_key(|(i, _)| *i);
    Ok(all)
}
