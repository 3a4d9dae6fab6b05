//! verdict turns live OpenTelemetry telemetry into release decisions.
//!
//! # Layout
//!
//! The modules follow the data:
//!
//! ```text
//! receivers ──> aggregator ──> runs ────────────> storage <── exporters / api
//! (OTLP gRPC,    (shards own    (state machine,    (runs,        (outbox workers:
//!  HTTP, probe)   UTC windows,   pure engine,       transitions,  log, webhook;
//!                 sketches)      its task; judges   outbox,       prometheus,
//!                                with contracts)    checkpoints)  HTTP API)
//! ```
//!
//! - [`receivers`]: OTLP over gRPC and HTTP, and synthetic probes → samples
//!   (spans, probe requests) and point samples (metric histograms and
//!   counters), enqueued all or nothing into the aggregator's shards;
//! - [`aggregator`]: sharded tumbling windows with mergeable quantile
//!   sketches, and the per-shard table that turns cumulative metric streams
//!   into deltas; closed windows go to the run engine as [`model::EngineInput`];
//! - `contracts`: how a window's (or a run's) figures are judged;
//! - `runs`: the run state machine, its pure engine and its driver, which
//!   commits through the storage seam before anything is announced;
//! - [`storage`]: the storage seam (SQLite by default, memory for tests):
//!   runs, transitions with their outbox, window history, checkpoints;
//! - `exporters` and `api`: where verdicts are delivered (outbox workers for
//!   `log` and `webhook`) and read (`prometheus`, HTTP API);
//! - [`probe`]: the synthetic probe library (`verdict probe` and the probe
//!   receiver);
//! - [`demo`]: `verdict demo`, OTLP spans of a healthy release and a good or
//!   bad canary, drawn by `simulate`'s traffic model, for the walkthrough;
//! - `api` also serves the status page (HTML from the same run JSON), and
//!   [`console`] shows that JSON in a terminal (`verdict runs`); both read
//!   figures the same way;
//! - [`topology`] and [`app`] wire the stages together (and swap them on a
//!   reload, keeping the listening sockets); [`cli`] turns flags into plans;
//! - below every stage: [`config`] (the pipeline file and each component's
//!   settings), [`model`] (the types that travel between stages), `proto`
//!   (the `verdict.v1` messages that define the JSON of events and runs),
//!   [`sketch`], [`clock`], `telemetry`, `retry`, `auth` and `tls` (clients' TLS).
//!
//! # Layering
//!
//! A module may import (`crate::…`) only the modules its row names; `*`
//! means any. Arrows go from a stage to what it hands data to or reads
//! from, and down to the shared types, never back: storage knows nothing
//! of runs, the aggregator nothing of the receivers or the run engine, and
//! config and model know no stage. `tests/it/layering.rs` reads this table
//! and every `crate::` path in `src/`, and fails, naming the file and the
//! rule, on an import the table does not allow (or on a table with a
//! cycle).
//!
//! | module | may import |
//! |---|---|
//! | `sketch` | |
//! | `log_text` | `console` |
//! | `telemetry` | `log_text` |
//! | `http_gzip` | |
//! | `retry` | |
//! | `tls` | `config` |
//! | `auth` | |
//! | `model` | `sketch` |
//! | `clock` | `model` |
//! | `proto` | `model` |
//! | `config` | `model`, `retry` |
//! | `contracts` | `config`, `model` |
//! | `aggregator` | `config`, `model`, `sketch`, `clock`, `telemetry` |
//! | `probe` | `config`, `model`, `contracts`, `clock`, `retry`, `telemetry`, `tls` |
//! | `receivers` | `config`, `model`, `aggregator`, `probe`, `clock`, `auth`, `telemetry` |
//! | `storage` | `config`, `model`, `proto`, `sketch`, `clock`, `tls` |
//! | `runs` | `config`, `model`, `contracts`, `storage`, `cluster`, `proto`, `clock`, `retry`, `telemetry` |
//! | `cluster` | `config`, `model`, `aggregator`, `storage`, `clock`, `retry`, `telemetry` |
//! | `exporters` | `config`, `model`, `runs`, `storage`, `proto`, `clock`, `retry`, `telemetry`, `tls`, `http_gzip` |
//! | `console` | `retry`, `tls` |
//! | `api` | `config`, `model`, `runs`, `storage`, `cluster`, `exporters`, `proto`, `clock`, `auth`, `console`, `http_gzip` |
//! | `simulate` | `config`, `model`, `runs`, `contracts`, `sketch` |
//! | `demo` | `simulate`, `retry`, `tls` |
//! | `topology` | * |
//! | `cli` | `config`, `probe`, `simulate`, `demo`, `telemetry` |
//! | `app` | * |
//! | `test_util` | * |
//! | `fuzzing` | `config`, `model`, `aggregator`, `receivers`, `storage`, `clock` |
//!
//! Unit tests may also import `test_util` (shared fixtures). `fuzzing` is
//! no stage: it only re-exports, for the fuzz targets in `fuzz/`, the
//! decoders that read untrusted bytes and the stages right behind them.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod aggregator;
pub(crate) mod api;
pub mod app;
pub(crate) mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod console;
pub(crate) mod contracts;
pub mod demo;
pub(crate) mod exporters;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http_gzip;
pub(crate) mod log_text;
pub mod model;
pub mod probe;
pub(crate) mod proto;
pub mod receivers;
pub(crate) mod retry;
pub(crate) mod runs;
pub mod simulate;
pub mod sketch;
pub mod storage;
pub(crate) mod telemetry;
#[cfg(test)]
mod test_util;
pub(crate) mod tls;
pub mod topology;
