//! flyhook's benchmark harness: a coordinated-omission-corrected load generator ([`load`]), the
//! requests it sends ([`workloads`]), a throwaway deployment per run ([`stack`]), a Flyte that
//! answers without checking for the seed app ([`canned_flyte`]), the scenarios of BENCHMARKS.md
//! ([`scenarios`]) and the report with its plots ([`report`]).

pub mod canned_flyte;
pub mod cpu;
pub mod load;
pub mod report;
pub mod scenarios;
pub mod stack;
pub mod workloads;
