//! portwatch: reports the moment any process starts or stops listening on
//! a TCP port, from eBPF events reconciled with a procfs baseline.
//!
//! - [`watcher::PortWatcher`] watches one process tree and calls back, like
//!   the Go port-watcher it replaces; [`watcher::watch`] is the same as an
//!   async stream of [`PortEvent`]s;
//! - [`engine::Engine`] runs the whole pipeline;
//! - [`table::ListenerTable`] pairs closes with opens and reconciles with
//!   procfs (pure logic); [`filter`] decides what is reported;
//! - [`output`] formats reports; [`safe_text`] neutralises hostile names;
//! - [`sys`] is the only module that touches the kernel and /proc.

pub mod btf;
pub mod engine;
pub mod error;
pub mod event;
pub mod filter;
pub mod output;
pub mod rules;
pub mod safe_text;
pub mod sys;
pub mod table;
pub mod watcher;

pub use engine::{Backend, Engine, EngineConfig, Report, ResyncSummary, Stats};
pub use error::{Error, Result};
pub use event::{Change, Listener, PortEvent, Proto, Source};
pub use filter::{Filter, Scope};
