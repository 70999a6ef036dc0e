//! portwatch: reports the moment any process starts or stops listening on
//! a TCP port, from eBPF events reconciled with a procfs baseline.
//!
//! - [`engine::Engine`] runs the whole pipeline;
//! - [`table::ListenerTable`] pairs closes with opens (pure logic);
//! - [`output`] formats reports; [`safe_text`] neutralises hostile names;
//! - [`sys`] is the only module that touches the kernel and /proc.

pub mod engine;
pub mod error;
pub mod event;
pub mod output;
pub mod safe_text;
pub mod sys;
pub mod table;

pub use engine::{Engine, EngineConfig, Stats};
pub use error::{Error, Result};
pub use event::{Change, Listener, PortEvent, Proto, Source};
