//! What the exposure judgement reads about a network namespace, read from
//! the kernel: interfaces and addresses (rtnetlink), the nftables
//! ruleset (nfnetlink), the iptables-legacy tables loaded.

use std::{io, os::fd::BorrowedFd};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::{links, nftables};
use crate::exposure::{NetnsFacts, nft};

/// The facts of the calling thread's namespace.
pub(crate) fn facts_here() -> io::Result<NetnsFacts> {
    let interfaces = links::interfaces_here()?;
    let mut raw = match nftables::ruleset_here() {
        Ok(raw) => raw,
        // No nf_tables in this kernel: no nftables rule filters anything.
        Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => nft::RawRuleset::default(),
        Err(e) => return Err(e),
    };
    raw.interfaces = interfaces
        .iter()
        .map(|(i, f)| (*i, f.name.clone()))
        .collect();
    let translated = nft::translate(&raw);
    Ok(NetnsFacts {
        interfaces: interfaces.into_iter().map(|(_, f)| f).collect(),
        chains: translated.chains,
        dnat: translated.dnat,
        legacy_tables: nftables::legacy_tables_here(),
    })
}

/// The facts of namespace `ns` (`None`: portwatch's own), read on a
/// short-lived thread that enters it.
pub(crate) fn facts_in(ns: Option<BorrowedFd<'_>>) -> io::Result<NetnsFacts> {
    let Some(ns) = ns else {
        return std::thread::scope(|s| {
            // A thread of its own even here: /proc/thread-self is then
            // this namespace's whatever the caller entered.
            s.spawn(facts_here)
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the namespace reader panicked")))
        });
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // setns(2) changes the network namespace of this thread alone.
            move_into_link_name_space(ns, Some(LinkNameSpaceType::Network))?;
            facts_here()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace reader panicked")))
    })
}
