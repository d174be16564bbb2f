//! flyhook's benchmark harness: a coordinated-omission-corrected load generator ([`load`]), the
//! requests it sends ([`workloads`]), a throwaway deployment per run ([`stack`]), the scenarios
//! of BENCHMARKS.md ([`scenarios`]) and the report with its plots ([`report`]).

pub mod load;
pub mod report;
pub mod scenarios;
pub mod stack;
pub mod workloads;
