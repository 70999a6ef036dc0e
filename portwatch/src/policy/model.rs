//! The policy file's format (`docs/policy.md`, `schema/policy.v1.json`):
//! plain serde types, checked by [`super::Policy::compile`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::Proto;

/// The version this portwatch writes and reads.
pub const VERSION: u32 = 1;

/// The listeners a host is expected to have.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "portwatch expected listeners")]
pub struct PolicyFile {
    /// The format's version: 1.
    pub version: u32,
    /// Copied into every drift this policy reports (e.g. the control it
    /// serves, `PCI-DSS-10.2.7`), before an entry's own tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A listener matching any entry is expected; one matching none is
    /// `unexpected`; an entry no open listener matches is `missing`
    /// (unless it is `optional`).
    pub expected: Vec<Entry>,
}

/// One expected listener (or set of them): every field given must match,
/// fields left out match anything. At least one of `exe`, `unit`,
/// `container` and `port` is required.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// A label for people and for drift lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The owner's executable path, a glob (`/usr/sbin/*`; `*` stays
    /// within one directory, `**` crosses them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The owner's systemd unit, a glob (`nginx.service`, `app-*.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The owner's container, by name or id, a glob (`web-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The owner's user, by name or uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    /// A port (`22`) or an inclusive range (`"32768-60999"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSpec>,
    /// Which addresses it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Who can reach it, as portwatch judges it (`docs/exposure.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<ExposureKind>,
    /// No `missing` drift when nothing matches it (learned port ranges
    /// are optional: a program's ephemeral ports come and go).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// Copied into the drifts this entry produces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A port, or an inclusive range written `"LOW-HIGH"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortSpec {
    One(u16),
    Range(String),
}

impl PortSpec {
    /// The inclusive range, or why the text is none.
    pub fn bounds(&self) -> Result<(u16, u16), String> {
        match self {
            PortSpec::One(p) => Ok((*p, *p)),
            PortSpec::Range(text) => {
                let bad = || {
                    format!("`{text}` is no port range (write it `LOW-HIGH`, e.g. `32768-60999`)")
                };
                let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
                let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
                let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
                if lo > hi {
                    return Err(format!("the port range `{text}` ends before it starts"));
                }
                Ok((lo, hi))
            }
        }
    }

    /// The spec of a range: one port written as a number.
    pub fn of(lo: u16, hi: u16) -> PortSpec {
        if lo == hi {
            PortSpec::One(lo)
        } else {
            PortSpec::Range(format!("{lo}-{hi}"))
        }
    }
}

/// Which addresses a listener is bound to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// 127.0.0.0/8 or ::1.
    Loopback,
    /// 0.0.0.0 or ::, every address.
    Wildcard,
    /// One other address.
    Specific,
}

impl Scope {
    pub fn of(address: std::net::IpAddr) -> Scope {
        if address.is_loopback() {
            Scope::Loopback
        } else if address.is_unspecified() {
            Scope::Wildcard
        } else {
            Scope::Specific
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Loopback => "loopback",
            Scope::Wildcard => "wildcard",
            Scope::Specific => "specific",
        }
    }
}

/// An exposure verdict, without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExposureKind {
    Loopback,
    Filtered,
    Reachable,
    Unknown,
}

impl ExposureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExposureKind::Loopback => "loopback",
            ExposureKind::Filtered => "filtered",
            ExposureKind::Reachable => "reachable",
            ExposureKind::Unknown => "unknown",
        }
    }
}
