//! verdict turns live OpenTelemetry telemetry into release decisions.
//!
//! # Layout
//!
//! The modules follow the data:
//!
//! ```text
//! receivers ──> aggregator ──> contracts ──> runs ──────> storage ──> exporters / api
//! (OTLP gRPC,    (shards own    (select,      (state       (runs,       (outbox workers:
//!  HTTP, probe)   UTC windows,   evaluate)     machine,     transitions, log, webhook;
//!                 sketches,                    pure engine, outbox,      prometheus,
//!                 checkpoints)                 its task)    checkpoints) HTTP API)
//! ```
//!
//! - [`receivers`]: OTLP over gRPC and HTTP, and synthetic probes → samples
//!   (spans, probe requests) and point samples (metric histograms and
//!   counters), enqueued all or nothing;
//! - [`aggregator`]: sharded tumbling windows with mergeable quantile sketches,
//!   and the per-shard table that turns cumulative metric streams into deltas;
//! - [`contracts`]: which resources a contract selects, and window judgement;
//! - [`runs`]: the run state machine, its pure engine and its driver;
//! - [`storage`]: the storage seam (SQLite by default, memory for tests):
//!   runs, transitions with their outbox, window history, checkpoints;
//! - [`exporters`] and [`api`]: where verdicts are delivered (outbox workers
//!   for `log` and `webhook`) and read (`prometheus`, HTTP API);
//! - [`proto`]: the `verdict.v1` messages that define the JSON of events
//!   and runs;
//! - [`config`] and [`topology`]: the pipeline file and its wiring;
//! - [`model`], [`clock`], [`telemetry`]: shared types, injected time, logs
//!   and self-metric names.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod aggregator;
pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contracts;
pub mod exporters;
pub mod model;
pub mod probe;
pub mod proto;
pub mod receivers;
pub mod retry;
pub mod runs;
pub mod sketch;
pub mod storage;
pub mod telemetry;
#[cfg(test)]
mod test_util;
pub mod topology;
