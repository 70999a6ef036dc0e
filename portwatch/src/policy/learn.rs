//! A policy from the listeners seen (`portwatch policy learn`): one entry
//! per owner (its unit, else its container, else its executable) and
//! port; the ports of one owner in the ephemeral range are folded into
//! one optional entry for the range, since they change from run to run.
//! Pure.

use std::collections::BTreeMap;

use super::{Entry, PolicyFile, PortSpec, Scope, model::VERSION};
use crate::{container::Runtime, event::Listener, owner::OriginKind};

/// Who an entry is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Unit(String),
    Container(String),
    Exe(String),
    /// No owner could be named (another namespace's socket, a process
    /// gone): the entry expects the port alone.
    Unknown,
}

fn owner_of(l: &Listener) -> Owner {
    if let Some(c) = &l.container {
        if c.runtime == Runtime::Service {
            return Owner::Unit(c.id.clone());
        }
        return Owner::Container(c.name.clone().unwrap_or_else(|| c.id.clone()));
    }
    let context = l.context.as_deref();
    if let Some(c) = context.filter(|c| c.source.kind == OriginKind::Systemd) {
        return Owner::Unit(c.source.name.clone());
    }
    match context.and_then(|c| c.exe.clone()) {
        Some(exe) => Owner::Exe(exe),
        None => Owner::Unknown,
    }
}

/// The policy that expects `listeners`. `ephemeral` is the host's
/// ephemeral port range (`net.ipv4.ip_local_port_range`); `user` names a
/// uid.
pub fn learn<'a>(
    listeners: impl IntoIterator<Item = &'a Listener>,
    ephemeral: (u16, u16),
    user: &mut dyn FnMut(u32) -> String,
    tags: Vec<String>,
) -> PolicyFile {
    // (owner, user, proto, scope) -> fixed ports, and whether any port was
    // ephemeral.
    type Group = (Vec<u16>, bool);
    let mut groups: BTreeMap<(Owner, Option<String>, crate::event::Proto, Scope), Group> =
        BTreeMap::new();
    for l in listeners {
        let owner = owner_of(l);
        // The socket's user is always known: an entry never expects a port
        // whoever holds it.
        let who = Some(user(l.uid));
        let g = groups
            .entry((owner, who, l.proto, Scope::of(l.address)))
            .or_default();
        if (ephemeral.0..=ephemeral.1).contains(&l.port) {
            g.1 = true;
        } else if !g.0.contains(&l.port) {
            g.0.push(l.port);
        }
    }
    let mut expected = Vec::new();
    for ((owner, who, proto, scope), (mut ports, ephemeral_seen)) in groups {
        ports.sort_unstable();
        let base = |port: PortSpec, optional: bool| {
            let mut e = Entry {
                user: who.clone(),
                proto: Some(proto),
                port: Some(port),
                scope: Some(scope),
                optional,
                ..Entry::default()
            };
            match &owner {
                Owner::Unit(u) => {
                    e.name = Some(u.clone());
                    e.unit = Some(glob_literal(u));
                }
                Owner::Container(c) => {
                    e.name = Some(c.clone());
                    e.container = Some(glob_literal(c));
                }
                Owner::Exe(x) => {
                    e.name = x.rsplit('/').next().map(str::to_string);
                    e.exe = Some(glob_literal(x));
                }
                Owner::Unknown => {}
            }
            e
        };
        for p in ports {
            expected.push(base(PortSpec::One(p), false));
        }
        if ephemeral_seen {
            expected.push(base(PortSpec::of(ephemeral.0, ephemeral.1), true));
        }
    }
    PolicyFile {
        version: VERSION,
        tags,
        expected,
    }
}

/// `text` as a glob that matches it alone (glob characters escaped).
pub fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
