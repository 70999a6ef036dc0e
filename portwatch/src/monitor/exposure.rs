//! Exposure for the monitor: each open listener judged with the facts of
//! its network namespace, which a [`FactsSource`] reads and re-reads
//! when they change (off the event path); a changed judgement is an
//! event.

use std::{
    collections::{HashMap, HashSet},
    task::{Context, Poll},
};

use crate::{
    event::{Listener, ListenerKey},
    exposure::{self, Exposure},
    sys::exposure_watch::{FactsResult, FactsSource},
};

pub(super) struct Exposures {
    source: Box<dyn FactsSource>,
    facts: HashMap<u64, FactsResult>,
    /// Namespaces being watched, with their open listeners.
    watched: HashMap<u64, HashSet<ListenerKey>>,
    judged: HashMap<ListenerKey, Exposure>,
}

impl Exposures {
    pub(super) fn new(source: Box<dyn FactsSource>) -> Self {
        Self {
            source,
            facts: HashMap::new(),
            watched: HashMap::new(),
            judged: HashMap::new(),
        }
    }

    /// Reads the facts of the baseline's namespaces now, so that the
    /// baseline is judged, and watches them.
    pub(super) fn read_baseline<'a>(&mut self, listeners: impl Iterator<Item = &'a Listener>) {
        let mut first: HashMap<u64, u32> = HashMap::new();
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

    fn judge(&self, l: &Listener) -> Exposure {
        if l.netns == 0 {
            return Exposure::Unknown {
                why: "its network namespace is not known".into(),
            };
        }
        match self.facts.get(&l.netns) {
            Some(Ok(facts)) => exposure::judge(l.proto, l.address, l.port, facts),
            Some(Err(why)) => Exposure::Unknown {
                why: format!("network namespace {}: {why}", l.netns),
            },
            None => Exposure::Unknown {
                why: format!("the rules of network namespace {} are being read", l.netns),
            },
        }
    }

    /// Judges a listener that opened, and remembers the judgement.
    pub(super) fn opened(&mut self, l: &mut Listener) {
        if l.netns != 0 && !self.watched.contains_key(&l.netns) {
            self.source.watch(l.netns, l.pid);
            self.watched.insert(l.netns, HashSet::new());
        }
        let e = self.judge(l);
        if let Some(keys) = self.watched.get_mut(&l.netns) {
            keys.insert(l.key());
        }
        self.judged.insert(l.key(), e.clone());
        l.exposure = Some(e);
    }

    /// A listener that closed carries its last judgement; a namespace
    /// left with no listener is no longer watched.
    pub(super) fn closed(&mut self, l: &mut Listener) {
        l.exposure = self.judged.remove(&l.key()).or_else(|| Some(self.judge(l)));
        if let Some(keys) = self.watched.get_mut(&l.netns) {
            keys.remove(&l.key());
            if keys.is_empty() {
                self.watched.remove(&l.netns);
                self.facts.remove(&l.netns);
                self.source.forget(l.netns);
            }
        }
    }

    pub(super) fn poll_changed(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(u64, FactsResult)>> {
        self.source.poll_changed(cx)
    }

    /// New facts for `netns`: the open listeners whose judgement changed,
    /// each with its exposure now, and the one before.
    pub(super) fn new_facts<'a>(
        &mut self,
        netns: u64,
        facts: FactsResult,
        open: impl Iterator<Item = &'a Listener>,
    ) -> Vec<(Listener, Exposure)> {
        if !self.watched.contains_key(&netns) {
            return Vec::new();
        }
        self.facts.insert(netns, facts);
        let mut changed = Vec::new();
        for l in open.filter(|l| l.netns == netns) {
            let now = self.judge(l);
            let before = self.judged.insert(l.key(), now.clone());
            if let Some(before) = before.filter(|b| *b != now) {
                let mut l = l.clone();
                l.exposure = Some(now);
                changed.push((l, before));
            }
        }
        changed
    }

    /// The judgement of an open listener.
    pub(super) fn of(&self, key: &ListenerKey) -> Option<&Exposure> {
        self.judged.get(key)
    }
}
