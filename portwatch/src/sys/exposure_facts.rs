//! What the exposure judgement reads about a network namespace, read from
//! the kernel: interfaces and addresses (rtnetlink), the nftables
//! ruleset (nfnetlink), the iptables-legacy tables loaded.

use std::{
    io,
    os::{fd::BorrowedFd, unix::fs::MetadataExt as _},
};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::{links, netns::GetUserns, nftables};
use crate::netns_facts::{RawFacts, RawRuleset};

/// The facts of the calling thread's namespace.
pub(crate) fn facts_here() -> io::Result<RawFacts> {
    let interfaces = links::interfaces_here()?;
    let ruleset = match nftables::ruleset_here() {
        Ok(raw) => raw,
        // No nf_tables in this kernel: no nftables rule filters anything.
        Err(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => RawRuleset::default(),
        Err(e) => return Err(e),
    };
    Ok(RawFacts {
        interfaces,
        ruleset,
        legacy_tables: nftables::legacy_tables_here(),
        // Said by the caller, which knows the namespace's owner.
        trusted: false,
    })
}

/// The facts of namespace `ns` (`None`: portwatch's own), read on a
/// short-lived thread that enters it.
pub(crate) fn facts_in(ns: Option<BorrowedFd<'_>>) -> io::Result<RawFacts> {
    let Some(ns) = ns else {
        return std::thread::scope(|s| {
            // A thread of its own even here: /proc/thread-self is then
            // this namespace's whatever the caller entered.
            s.spawn(facts_here)
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the namespace reader panicked")))
        })
        .map(|f| RawFacts { trusted: true, ..f });
    };
    let trusted = owned_by_our_user_namespace(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            // setns(2) changes the network namespace of this thread alone.
            move_into_link_name_space(ns, Some(LinkNameSpaceType::Network))?;
            facts_here()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace reader panicked")))
    })
    .map(|f| RawFacts { trusted, ..f })
}

/// Whether namespace `ns` is owned by portwatch's own user namespace
/// (`ioctl(NS_GET_USERNS)`); false when that cannot be told.
fn owned_by_our_user_namespace(ns: BorrowedFd<'_>) -> bool {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd of the
    // owning user namespace, which `NewFd::output_from_ptr` owns.
    let Ok(owner) = (unsafe { rustix::ioctl::ioctl(ns, GetUserns {}) }) else {
        return false;
    };
    let ours = std::fs::metadata("/proc/self/ns/user").map(|m| m.ino());
    matches!((rustix::fs::fstat(&owner), ours), (Ok(o), Ok(ours)) if o.st_ino == ours)
}
