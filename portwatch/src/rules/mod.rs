//! Alert rules: the `alerts.json` format (`model`), its checks
//! (`validate`), its regexes (`pattern`), where it lives and how it is saved (`store`), and the
//! evaluation of rules against what the watcher sees (`eval`).

pub mod eval;
#[cfg(test)]
mod fuzz;
pub mod model;
pub mod pattern;
pub mod private;
pub mod store;
pub mod validate;
