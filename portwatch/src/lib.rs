//! portwatch: reports the moment any process starts or stops listening on
//! a port, from eBPF events reconciled with a procfs baseline.
//!
//! The layers, each using only those listed before it:
//! - [`event`], [`report`], [`safe_text`], [`error`], [`container`],
//!   [`socket`], [`process`]: plain data;
//! - [`filter`] and `table` (pairing and reconciliation): pure logic;
//!   [`exposure`]: who can reach a listener, judged from a namespace's
//!   interfaces and input chains (pure; not yet fed by `sys`);
//! - `sys`: the only code that touches the kernel and /proc, behind two
//!   traits the engine can run on fakes;
//! - [`rules`]: the alerts.json format, its validation and the evaluator;
//! - [`files`]: files written where another user might have a say;
//! - [`host`]: process details, user names, and signals to a pinned
//!   process;
//! - [`engine`]: events and scans into reports ([`Engine`]);
//! - [`monitor`]: the engine plus rules, sampling and reload, as one
//!   stream of [`MonitorEvent`]s that every consumer reads;
//! - [`wire`]: every JSON line portwatch writes or reads, and their
//!   published schemas; [`output`]: the same as aligned text;
//!   [`watcher`]: the Go port-watcher's API ([`watcher::PortWatcher`]) and
//!   an async stream.

// What is `pub` is the library's API; the rest says `pub(crate)`.
#![warn(unreachable_pub)]

#[doc(hidden)]
pub mod bench_stages;
pub mod container;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod event;
pub mod exposure;
pub mod facts;
pub mod files;
pub mod filter;
pub mod host;
pub mod journal;
mod listing;
pub mod monitor;
pub mod netns_facts;
pub mod output;
pub mod owner;
mod owner_cache;
pub mod policy;
pub mod process;
pub mod report;
pub mod rules;
pub mod safe_text;
pub mod serve;
pub mod socket;
pub(crate) mod sys;
pub(crate) mod table;
pub(crate) mod udp_tally;
pub mod watcher;
pub mod wire;

pub use engine::{Backend, Engine, EngineConfig, Hook, Report};
pub use error::{Error, Result};
pub use event::{Change, Listener, PortEvent, Proto, Source};
pub use filter::{Filter, Scope};
pub use monitor::{Monitor, MonitorConfig, MonitorEvent};
pub use report::{ResyncReason, ResyncSummary, Stats};

pub use listing::{Listing, Unbacked, list, list_listeners, list_sockets};
