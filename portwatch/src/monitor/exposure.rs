//! Exposure for the monitor: each open listener judged with the facts of
//! its network namespace, and its published ports found in the DNAT
//! rules of every namespace watched. A [`FactsSource`] reads the facts
//! and reads them again when they change (off the event path); a changed
//! judgement is an event.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    task::{Context, Poll},
};

use crate::{
    event::{Listener, ListenerKey},
    exposure::{self, Exposure, NetnsFacts, Published},
    sys::exposure_watch::{FactsResult, FactsSource},
};

/// A listener's exposure and its published ports.
pub(super) type Judgement = (Exposure, Vec<Published>);

pub(super) struct Exposures {
    source: Box<dyn FactsSource>,
    facts: HashMap<u64, FactsResult>,
    /// Namespaces being watched, with their open listeners; portwatch's
    /// own is always watched, for the DNAT rules of the host.
    watched: HashMap<u64, HashSet<ListenerKey>>,
    own: Option<u64>,
    judged: HashMap<ListenerKey, Judgement>,
    /// Userland proxies (Docker's) open now, by their listener.
    proxies: HashMap<ListenerKey, exposure::Proxied>,
}

impl Exposures {
    pub(super) fn new(source: Box<dyn FactsSource>) -> Self {
        Self {
            own: source.own_netns(),
            source,
            facts: HashMap::new(),
            watched: HashMap::new(),
            judged: HashMap::new(),
            proxies: HashMap::new(),
        }
    }

    /// Reads the facts of the baseline's namespaces (and portwatch's
    /// own) now, so that the baseline is judged, and watches them.
    pub(super) fn read_baseline<'a>(&mut self, listeners: impl Iterator<Item = &'a Listener>) {
        let mut first: HashMap<u64, u32> = HashMap::new();
        if let Some(own) = self.own {
            first.insert(own, 0);
        }
        for l in listeners.filter(|l| l.netns != 0) {
            first.entry(l.netns).or_insert(l.pid);
        }
        for (netns, pid) in first {
            let facts = self.source.read_now(netns, pid);
            self.facts.insert(netns, facts);
            self.source.watch(netns, pid);
            self.watched.entry(netns).or_default();
        }
    }

    fn read_facts(&self) -> impl Iterator<Item = (u64, &NetnsFacts)> {
        self.facts
            .iter()
            .filter_map(|(n, f)| f.as_ref().ok().map(|f| (*n, f.as_ref())))
    }

    fn judge(&self, l: &Listener) -> Judgement {
        let unknown = |why: String| (Exposure::Unknown { why }, Vec::new());
        if l.netns == 0 {
            return unknown("its network namespace is not known".into());
        }
        match self.facts.get(&l.netns) {
            Some(Ok(facts)) => {
                let mut published = exposure::published_as(l, facts, self.read_facts());
                published.extend(exposure::proxied_to(l, facts, self.proxies.values()));
                (
                    exposure::judge(l.proto, l.address, l.port, facts),
                    published,
                )
            }
            Some(Err(why)) => unknown(format!("network namespace {}: {why}", l.netns)),
            None => unknown(format!(
                "the rules of network namespace {} are being read",
                l.netns
            )),
        }
    }

    /// Judges a listener that opened, and remembers the judgement. True
    /// when it is a userland proxy's (`args` gives its arguments): the
    /// listeners it reaches are published anew.
    pub(super) fn opened(&mut self, l: &mut Listener, args: impl FnOnce() -> Vec<String>) -> bool {
        if l.netns != 0 && !self.watched.contains_key(&l.netns) {
            self.source.watch(l.netns, l.pid);
            self.watched.insert(l.netns, HashSet::new());
        }
        let judged = self.judge(l);
        if let Some(keys) = self.watched.get_mut(&l.netns) {
            keys.insert(l.key());
        }
        (l.exposure, l.published_as) = (Some(judged.0.clone()), judged.1.clone());
        let trusted = matches!(self.facts.get(&l.netns), Some(Ok(f)) if f.trusted);
        let proxy = (trusted && exposure::is_trusted_proxy(l))
            .then(|| exposure::docker_proxy_target(&args()))
            .flatten();
        if let Some((proto, to)) = proxy {
            let published = exposure::Published {
                netns: l.netns,
                address: l.address,
                port: l.port,
                proto: l.proto,
                exposure: judged.0.clone(),
            };
            self.proxies.insert(
                l.key(),
                exposure::Proxied {
                    proto,
                    to,
                    published,
                },
            );
        }
        self.judged.insert(l.key(), judged);
        proxy.is_some()
    }

    /// A listener that closed carries its last judgement; a namespace
    /// left with no listener is no longer watched (but portwatch's own).
    /// True when it was a userland proxy's.
    pub(super) fn closed(&mut self, l: &mut Listener) -> bool {
        let judged = self
            .judged
            .remove(&l.key())
            .unwrap_or_else(|| self.judge(l));
        (l.exposure, l.published_as) = (Some(judged.0), judged.1);
        if let Some(keys) = self.watched.get_mut(&l.netns) {
            keys.remove(&l.key());
            if keys.is_empty() && Some(l.netns) != self.own {
                self.watched.remove(&l.netns);
                self.facts.remove(&l.netns);
                self.source.forget(l.netns);
            }
        }
        self.proxies.remove(&l.key()).is_some()
    }

    pub(super) fn poll_changed(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(u64, FactsResult)>> {
        self.source.poll_changed(cx)
    }

    /// New facts for `netns`: the open listeners whose judgement changed
    /// (a DNAT rule there may publish a listener anywhere), each with its
    /// judgement now, and the one before.
    pub(super) fn new_facts<'a>(
        &mut self,
        netns: u64,
        facts: FactsResult,
        open: impl Iterator<Item = &'a Listener>,
    ) -> Vec<(Listener, Judgement)> {
        if !self.watched.contains_key(&netns) {
            return Vec::new();
        }
        // Facts that cannot be read twice running (no privileges, say)
        // are no change: the first reason stays.
        let unchanged = match (self.facts.get(&netns), &facts) {
            (Some(Ok(a)), Ok(b)) => Arc::ptr_eq(a, b) || a == b,
            (Some(Err(_)), Err(_)) => true,
            _ => false,
        };
        if unchanged {
            return Vec::new();
        }
        // Only a trusted namespace's DNAT rules publish listeners of other
        // namespaces (see `exposure::published_as`): a change in any other
        // costs the judgement of that namespace's own listeners alone,
        // whoever makes it.
        let trusted = |f: Option<&FactsResult>| matches!(f, Some(Ok(f)) if f.trusted);
        let everyone = trusted(self.facts.get(&netns)) || trusted(Some(&facts));
        self.facts.insert(netns, facts);
        self.rejudge(open.filter(|l| everyone || l.netns == netns))
    }

    /// Judges `open` listeners again: those whose judgement changed, with
    /// the one before. Proxies first: their own exposure is what they
    /// publish.
    pub(super) fn rejudge<'a>(
        &mut self,
        open: impl Iterator<Item = &'a Listener>,
    ) -> Vec<(Listener, Judgement)> {
        let mut changed = Vec::new();
        // Only listeners already reported (one held back to settle is
        // judged when it is reported).
        let mut reported: Vec<&Listener> = open
            .filter(|l| self.judged.contains_key(&l.key()))
            .collect();
        reported.sort_by_key(|l| !self.proxies.contains_key(&l.key()));
        for l in reported {
            let now = self.judge(l);
            let before = self.judged.insert(l.key(), now.clone());
            if let Some(p) = self.proxies.get_mut(&l.key()) {
                p.published.exposure = now.0.clone();
            }
            if let Some(before) = before.filter(|b| *b != now) {
                let mut l = l.clone();
                (l.exposure, l.published_as) = (Some(now.0), now.1);
                changed.push((l, before));
            }
        }
        changed
    }

    /// The judgement of an open listener.
    pub(super) fn of(&self, key: &ListenerKey) -> Option<&Exposure> {
        self.judged.get(key).map(|j| &j.0)
    }
}
