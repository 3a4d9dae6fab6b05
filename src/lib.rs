//! verdict turns live OpenTelemetry telemetry into release decisions.
//!
//! # Layout
//!
//! The modules follow the data:
//!
//! ```text
//! receivers ──> aggregator ──> contracts ──> runs ──> exporters / api
//! (OTLP gRPC     (shards own    (select,      (state     (log, prometheus,
//!  and HTTP,      UTC windows    evaluate)     machine,    HTTP API)
//!  probe)
//!                 and sketches)                store)
//! ```
//!
//! - [`receivers`]: OTLP over gRPC and HTTP, and synthetic probes → samples,
//!   enqueued all or nothing;
//! - [`aggregator`]: sharded tumbling windows with mergeable quantile sketches;
//! - [`contracts`]: which resources a contract selects, and window judgement;
//! - [`runs`]: the run state machine, its engine and the storage seam;
//! - [`exporters`] and [`api`]: where verdicts are announced and read;
//! - [`probe`]: synthetic traffic, as `verdict probe` and as a receiver;
//! - [`config`] and [`topology`]: the pipeline file and its wiring;
//! - [`model`], [`clock`], [`telemetry`]: shared types, injected time, logs
//!   and self-metric names.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod aggregator;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contracts;
pub mod exporters;
pub mod model;
pub mod probe;
pub mod receivers;
pub mod runs;
pub mod telemetry;
pub mod topology;
