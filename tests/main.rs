//! The integration tests: the real binary, the real eBPF programs, real
//! sockets, processes and namespaces (root; `cargo xtask test`). One test
//! binary, so CI links once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod support;

mod alerts_cli;
mod backends;
mod containers;
mod daemon;
mod delivery;
mod doctor;
mod exposure;
mod faults;
mod files;
mod hostile;
mod journal;
mod kubernetes;
mod library;
mod list;
mod listen_paths;
mod manuals;
mod metrics;
mod namespaces;
mod notify;
mod ocsf;
mod otlp;
mod ownership;
mod package;
mod policy;
mod process_tree;
mod remote_library;
mod resync;
mod schema;
mod service;
mod socket;
mod startup_errors;
mod tui;
mod tui_truth;
mod udp;
mod watch;
mod why;
mod wire;
