//! Every JSON line portwatch writes or reads (`watch --json`, the
//! daemon's lines, the event socket, alert deliveries): one type, tagged by
//! `event`, written and read by serde. `schema/` holds its JSON Schema,
//! generated from these types (`cargo xtask schema`).
//!
//! A line from a newer portwatch is read as far as this version knows it:
//! an `event` it does not know is [`Line::Unknown`], which every reader
//! skips; a field it does not know is ignored. A known field with a value
//! it does not know (a new `source`, say) makes the line an error, never a
//! guess. Text in the lines was made safe by the writer.

mod convert;
#[cfg(test)]
mod golden;
pub mod list;
pub mod ocsf;
pub mod request;
pub mod schema;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    container::Container,
    event::{Proto, Source},
    exposure::{Exposure, Published},
    owner::OwnerContext,
    report::ResyncReason,
    rules::model::Severity,
};

pub use list::ListEntry;

/// The version of these lines' format, in the schema's file name: a field
/// removed or changed is a new version; a field or `event` added is not.
pub const VERSION: u32 = 1;

/// One JSON line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
#[schemars(title = "portwatch event line")]
#[non_exhaustive]
pub enum Line {
    /// A TCP listener opened, or a UDP port was bound.
    Opened(Port),
    /// A TCP listener closed, or a bound UDP port was released.
    Closed(Port),
    /// Who can reach a listener changed.
    ExposureChanged(ExposureChanged),
    /// The watcher is attached; the baseline's `opened` lines came first.
    Ready(Ready),
    /// A procfs rescan ran and found what events had missed.
    Resync(Resync),
    /// The kernel dropped events (the daemon's outputs; `resync` with
    /// reason `drops` elsewhere).
    EventsLost(EventsLost),
    /// An alert rule fired.
    Alert(Alert),
    /// The rules file changed and its new rules are in force.
    RulesReloaded(Message),
    /// The rules file changed but cannot be used: the previous rules stay.
    RulesError(Message),
    /// A feature asked for cannot run here.
    Warning(Message),
    /// The listeners differ from the expected-listeners policy (`drift`
    /// `unexpected` or `missing`), or no longer do (`expected`).
    Drift(Drift),
    /// The policy file changed and its new entries are in force.
    PolicyReloaded(Message),
    /// The policy file changed but cannot be used: the previous one stays.
    PolicyError(Message),
    /// An alert output (a command, a webhook) failed.
    DeliveryError(Message),
    /// UDP binds of one process and port class in a settle interval
    /// (`--udp-aggregate`).
    UdpSummary(UdpSummary),
    /// The counters, printed by `watch --stats --json` on exit.
    Stats(Stats),
    /// The event socket: this client fell behind and missed `events`; a
    /// fresh baseline and a `ready` line follow.
    Lost(Lost),
    /// The event socket refused the client; the connection ends.
    Error(Refusal),
    /// An `event` this version does not know (from a newer portwatch):
    /// read, never written, so not in the schema.
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

/// RFC 3339 in UTC with microseconds: `2026-12-01T10:00:00.123456Z`, as
/// every line and every text output writes times.
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// One JSON document as text, without a newline.
pub(crate) fn to_json(value: &impl Serialize) -> String {
    // Serializing these plain structs of strings and integers cannot fail.
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"event\":\"error\",\"error\":\"{e}\"}}"))
}

/// Times as every line writes them (see [`format_ts`]), for serde.
pub(crate) mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ts(ts))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| D::Error::custom(format!("`ts` is no RFC 3339 time: {e}")))
    }
}

/// A listener or bound UDP port, and when it changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Port {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    /// The owner; 0 when no process could be named.
    pub pid: u32,
    /// The owner's name (`comm`), made safe.
    pub comm: String,
    pub uid: u32,
    /// The network namespace's inode.
    pub netns: u64,
    /// The owner's cgroup v2 path, made safe.
    pub cgroup: String,
    pub container: Option<Container>,
    /// Who can reach it, judged for its network namespace: `exposure`
    /// (`loopback`, `filtered`, `reachable`, `unknown`) with
    /// `reachable_via` or `why`. Absent where nothing judged it.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    /// DNAT rules that send connections to it, each with its exposure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_as: Vec<Published>,
    /// Why its owner is there: ancestry, source, cwd, git, exe, package
    /// (see `docs/why.md`). Absent where it was not told.
    // Shared with the event it was made from: a line is encoded without
    // copying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<std::sync::Arc<OwnerContext>>,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
    pub source: Source,
}

/// An exposure and published ports, as they were.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Judged {
    #[serde(flatten)]
    pub exposure: Exposure,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_as: Vec<Published>,
}

/// A listener's exposure changed (a rule, an address or an interface
/// changed in its namespace): the listener with its exposure now, and
/// what it was `before`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExposureChanged {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    pub pid: u32,
    pub comm: String,
    pub uid: u32,
    pub netns: u64,
    pub cgroup: String,
    pub container: Option<Container>,
    /// Its exposure now (`exposure` with `reachable_via` or `why`).
    #[serde(flatten)]
    pub exposure: Exposure,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_as: Vec<Published>,
    /// What it was before.
    pub before: Judged,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ready {
    /// `ebpf` or `procfs`.
    pub backend: String,
    /// Listeners in the baseline.
    pub listeners: usize,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Resync {
    pub reason: ResyncReason,
    pub opened: usize,
    pub closed: usize,
    /// Events the kernel dropped since the start.
    pub drops: u64,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventsLost {
    /// Events the kernel dropped since the start, as it counted them.
    pub dropped: u64,
    /// What the resync that followed found the events had missed.
    pub opened: usize,
    pub closed: usize,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// From the rules file, escaped.
    pub rule_id: String,
    /// From the rules file, escaped.
    pub rule_name: String,
    pub severity: Severity,
    /// The rule's condition `type` (`PortOpened`, ...).
    pub condition: String,
    pub message: String,
    pub pid: u32,
    pub comm: String,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

/// See [`Line::Drift`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Drift {
    pub drift: crate::policy::drift::DriftKind,
    /// The listener that drifted: the unexpected one, the last of an
    /// entry's that closed, the one that came back. Absent for an entry
    /// missing since the start, or no longer in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<DriftListener>,
    /// The policy entry missing, or matched again, as the file wrote it
    /// (text made safe). Absent for an unexpected listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<crate::policy::Entry>,
    /// The policy's tags, then the entry's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

/// A listener, as a drift names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DriftListener {
    pub proto: Proto,
    pub address: IpAddr,
    pub port: u16,
    pub pid: u32,
    pub comm: String,
    pub uid: u32,
    pub netns: u64,
    pub container: Option<Container>,
    /// The owner's executable, where its context was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
}

/// A notice or a delivery error: one sentence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    pub message: String,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    pub events: u64,
    pub drops: u64,
    pub resyncs: u64,
    pub owners_full: u64,
    pub unresolved: u64,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

/// See [`Line::UdpSummary`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UdpSummary {
    pub pid: u32,
    /// The process's name when it first bound.
    pub comm: String,
    pub class: crate::report::PortClass,
    /// Explicit binds in the interval, those of sockets reported one by
    /// one included.
    pub binds: u64,
    /// Of them, sockets still open at the interval's end, each reported
    /// as an `opened` line with `source: aggregate`.
    pub reported: u64,
    /// The interval's length.
    pub interval_ms: u64,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Lost {
    /// Events this client did not get.
    pub events: u64,
    #[serde(with = "micros")]
    #[schemars(with = "DateTime<Utc>")]
    pub ts: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Refusal {
    /// Why, in one sentence.
    pub message: String,
}

impl UdpSummary {
    /// In a sentence, as the text output and the OTLP records say it:
    /// `churn (pid 42) bound 1200 UDP ports (ephemeral) in 1000 ms, 1
    /// still open`.
    pub fn sentence(&self) -> String {
        format!(
            "{} (pid {}) bound {} UDP ports ({}) in {} ms, {} still open",
            self.comm,
            self.pid,
            self.binds,
            self.class.as_str(),
            self.interval_ms,
            self.reported
        )
    }
}

impl ExposureChanged {
    /// In a sentence, as the OTLP and OCSF records say it: `tcp
    /// 0.0.0.0:80 is now reachable via eth0 (was filtered)`.
    pub fn sentence(&self) -> String {
        format!(
            "{} {}:{} is now {} (was {})",
            self.proto.as_str(),
            self.address,
            self.port,
            self.exposure.describe(),
            self.before.exposure.describe()
        )
    }
}

impl Drift {
    /// In a sentence, as the OTLP and OCSF records say it: `drift
    /// unexpected: tcp 0.0.0.0:4444`, `drift missing: entry ssh`.
    pub fn sentence(&self) -> String {
        let what = match (&self.listener, &self.entry) {
            (Some(l), _) => format!("{} {}:{}", l.proto.as_str(), l.address, l.port),
            (None, Some(e)) => match &e.name {
                Some(name) => format!("entry {name}"),
                None => "an entry".into(),
            },
            (None, None) => "the policy".into(),
        };
        format!("drift {}: {what}", self.drift.as_str())
    }
}

impl Line {
    /// The line's JSON, without the newline.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// The line's JSON, without the newline, written straight into `out`
    /// (a buffer, most often): the same bytes as [`Self::to_json`]
    /// without a string made and copied per line.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(out, self).map_err(std::io::Error::from)
    }

    /// Reads one line; Err is one sentence, quoting nothing raw.
    pub fn parse(text: &str) -> Result<Line, String> {
        // serde quotes what it did not expect, which may be the whole
        // line: both are cut short, and escaped.
        let cut = |s: &str| crate::safe_text::safe_str(&s.chars().take(200).collect::<String>());
        serde_json::from_str(text).map_err(|e| {
            format!(
                "a line portwatch cannot read ({}): {}",
                cut(&e.to_string()),
                cut(text)
            )
        })
    }
}

#[cfg(test)]
mod tests;
