//! The boundary to the operating system: bpf, tracefs, procfs, clocks and
//! capabilities. Everything outside this module is plain logic that tests
//! can drive without root.

pub mod bpf;
pub mod cgroup;
pub mod clock;
pub mod privilege;
pub mod procfs_scan;
pub mod sampler;
pub mod sock_diag;
pub mod tracefs;
