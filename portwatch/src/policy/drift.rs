//! What differs between the listeners open and a policy, followed as they
//! open and close: `unexpected` (a listener no entry matches), `missing`
//! (an entry no open listener matches), and `expected` (either ended).
//! Pure: the monitor feeds it listeners already told and judged.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{Entry, Policy};
use crate::event::{Listener, ListenerKey};

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    /// A listener opened that no entry expects.
    Unexpected,
    /// An entry's last listener closed (or it had none at start).
    Missing,
    /// Back to expected: an unexpected listener closed, or a missing entry
    /// is matched again (or the policy no longer asks for it).
    Expected,
}

impl DriftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Unexpected => "unexpected",
            DriftKind::Missing => "missing",
            DriftKind::Expected => "expected",
        }
    }
}

/// One difference between the host and its policy, or its end.
#[derive(Clone, Debug, PartialEq)]
pub struct Drift {
    pub kind: DriftKind,
    /// The listener that drifted: the unexpected one, the last of an
    /// entry's that closed, the one that came back. None for an entry
    /// missing since the start, or resolved by a new policy.
    pub listener: Option<Listener>,
    /// The entry missing, or back (None for an unexpected listener).
    pub entry: Option<Entry>,
    /// The policy's tags, then the entry's.
    pub tags: Vec<String>,
    pub ts: DateTime<Utc>,
}

/// An open listener (one owner's sockets on one key), and its entry.
#[derive(Clone, Debug)]
struct Held {
    pid: u32,
    sockets: usize,
    entry: Option<usize>,
    listener: Listener,
}

/// The drift state of a host against a policy.
#[derive(Clone, Debug)]
pub struct Drifts {
    policy: Policy,
    open: HashMap<ListenerKey, Vec<Held>>,
    /// Open sockets matching each entry.
    matched: Vec<usize>,
    /// Entries reported missing.
    missing: Vec<bool>,
    /// Drifts are reported once the baseline is in ([`Self::ready`]).
    live: bool,
}

impl Drifts {
    pub fn new(policy: Policy) -> Self {
        let n = policy.entries().len();
        Self {
            policy,
            open: HashMap::new(),
            matched: vec![0; n],
            missing: vec![false; n],
            live: false,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn drift(
        &self,
        kind: DriftKind,
        listener: Option<&Listener>,
        entry: Option<usize>,
        ts: DateTime<Utc>,
    ) -> Drift {
        Drift {
            kind,
            listener: listener.cloned(),
            entry: entry.and_then(|i| self.policy.entries().get(i).cloned()),
            tags: self.policy.tags(entry),
            ts,
        }
    }

    /// A listener opened (told and judged already).
    pub fn opened(&mut self, l: &Listener, ts: DateTime<Utc>) -> Vec<Drift> {
        let held = self.open.entry(l.key()).or_default();
        if let Some(h) = held.iter_mut().find(|h| h.pid == l.pid) {
            h.sockets += 1;
            if let Some(i) = h.entry {
                self.matched[i] += 1;
            }
            return Vec::new();
        }
        let entry = self.policy.matching(l);
        held.push(Held {
            pid: l.pid,
            sockets: 1,
            entry,
            listener: l.clone(),
        });
        if !self.live {
            if let Some(i) = entry {
                self.matched[i] += 1;
            }
            return Vec::new();
        }
        match entry {
            None => vec![self.drift(DriftKind::Unexpected, Some(l), None, ts)],
            Some(i) => {
                self.matched[i] += 1;
                if std::mem::take(&mut self.missing[i]) {
                    vec![self.drift(DriftKind::Expected, Some(l), Some(i), ts)]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// A listener closed.
    pub fn closed(&mut self, l: &Listener, ts: DateTime<Utc>) -> Vec<Drift> {
        let key = l.key();
        let Some(held) = self.open.get_mut(&key) else {
            return Vec::new();
        };
        // Its owner, or (a close the kernel named the closer of) another
        // holder of the same user: never another user's.
        let Some(at) = held
            .iter()
            .position(|h| h.pid == l.pid)
            .or_else(|| held.iter().position(|h| h.listener.uid == l.uid))
        else {
            return Vec::new();
        };
        let h = &mut held[at];
        h.sockets -= 1;
        let entry = h.entry;
        if let Some(i) = entry {
            self.matched[i] -= 1;
        }
        if h.sockets > 0 {
            return Vec::new();
        }
        let gone = held.swap_remove(at);
        if held.is_empty() {
            self.open.remove(&key);
        }
        if !self.live {
            return Vec::new();
        }
        match entry {
            None => vec![self.drift(DriftKind::Expected, Some(&gone.listener), None, ts)],
            Some(i) if self.matched[i] == 0 && !self.policy.entries()[i].optional => {
                self.missing[i] = true;
                vec![self.drift(DriftKind::Missing, Some(&gone.listener), Some(i), ts)]
            }
            Some(_) => Vec::new(),
        }
    }

    /// A listener's exposure (or context) changed: matched again, as if it
    /// closed and opened.
    pub fn changed(&mut self, l: &Listener, ts: DateTime<Utc>) -> Vec<Drift> {
        let Some(h) = self
            .open
            .get(&l.key())
            .and_then(|held| held.iter().find(|h| h.pid == l.pid))
        else {
            return Vec::new();
        };
        if self.policy.matching(l) == h.entry {
            return Vec::new();
        }
        let sockets = h.sockets;
        let mut out = Vec::new();
        for _ in 0..sockets {
            out.extend(self.closed(l, ts));
        }
        for _ in 0..sockets {
            out.extend(self.opened(l, ts));
        }
        out
    }

    /// The baseline is in: every difference now, and each change from here
    /// on, is reported.
    pub fn ready(&mut self, ts: DateTime<Utc>) -> Vec<Drift> {
        self.live = true;
        let mut out: Vec<Drift> = self
            .unexpected()
            .map(|l| self.drift(DriftKind::Unexpected, Some(l), None, ts))
            .collect();
        for i in 0..self.matched.len() {
            if self.matched[i] == 0 && !self.policy.entries()[i].optional {
                self.missing[i] = true;
                out.push(self.drift(DriftKind::Missing, None, Some(i), ts));
            }
        }
        out
    }

    /// A new policy: listeners matched again; what drifts now and did not
    /// before is reported, and what drifted and no longer does.
    pub fn replace(&mut self, policy: Policy, ts: DateTime<Utc>) -> Vec<Drift> {
        let was_unexpected: HashSet<(ListenerKey, u32)> = self
            .open
            .iter()
            .flat_map(|(k, held)| {
                held.iter()
                    .filter(|h| h.entry.is_none())
                    .map(|h| (*k, h.pid))
            })
            .collect();
        let was_missing: Vec<Entry> = self
            .missing
            .iter()
            .zip(self.policy.entries())
            .filter(|(m, _)| **m)
            .map(|(_, e)| e.clone())
            .collect();
        let n = policy.entries().len();
        self.policy = policy;
        self.matched = vec![0; n];
        self.missing = vec![false; n];
        for held in self.open.values_mut() {
            for h in held.iter_mut() {
                h.entry = self.policy.matching(&h.listener);
                if let Some(i) = h.entry {
                    self.matched[i] += h.sockets;
                }
            }
        }
        if !self.live {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (k, held) in &self.open {
            for h in held {
                let was = was_unexpected.contains(&(*k, h.pid));
                match (was, h.entry.is_none()) {
                    (false, true) => {
                        out.push(self.drift(DriftKind::Unexpected, Some(&h.listener), None, ts))
                    }
                    (true, false) => {
                        out.push(self.drift(DriftKind::Expected, Some(&h.listener), h.entry, ts))
                    }
                    _ => {}
                }
            }
        }
        let mut still_missing = Vec::new();
        for i in 0..n {
            let entry = &self.policy.entries()[i];
            if self.matched[i] == 0 && !entry.optional {
                self.missing[i] = true;
                still_missing.push(entry.clone());
                if !was_missing.contains(entry) {
                    out.push(self.drift(DriftKind::Missing, None, Some(i), ts));
                }
            }
        }
        for e in was_missing.iter().filter(|e| !still_missing.contains(e)) {
            out.push(Drift {
                kind: DriftKind::Expected,
                listener: None,
                entry: Some(e.clone()),
                tags: super::merged_tags(&self.policy.file().tags, Some(e)),
                ts,
            });
        }
        out
    }

    /// Open listeners no entry expects.
    pub fn unexpected(&self) -> impl Iterator<Item = &Listener> {
        self.open
            .values()
            .flatten()
            .filter(|h| h.entry.is_none())
            .map(|h| &h.listener)
    }

    /// Whether this open listener is one no entry expects.
    pub fn is_unexpected(&self, l: &Listener) -> bool {
        self.open
            .get(&l.key())
            .and_then(|held| held.iter().find(|h| h.pid == l.pid))
            .is_some_and(|h| h.entry.is_none())
    }

    /// Entries missing now.
    pub fn missing(&self) -> impl Iterator<Item = &Entry> {
        self.missing
            .iter()
            .zip(self.policy.entries())
            .filter(|(m, _)| **m)
            .map(|(_, e)| e)
    }

    /// (unexpected listeners, missing entries) now.
    pub fn counts(&self) -> (usize, usize) {
        (self.unexpected().count(), self.missing().count())
    }
}

/// Every drift of `listeners` against `policy` at once (`policy check`).
pub fn check<'a>(
    policy: &Policy,
    listeners: impl IntoIterator<Item = &'a Listener>,
    ts: DateTime<Utc>,
) -> Vec<Drift> {
    let mut d = Drifts::new(policy.clone());
    for l in listeners {
        d.opened(l, ts);
    }
    d.ready(ts)
}
