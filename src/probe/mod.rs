//! Synthetic traffic (design §6): before real users reach a new release, a
//! probe sends it N requests at concurrency C and judges what came back with
//! a contract's thresholds. The same engine serves `verdict probe` (one shot,
//! result JSON, exit code) and the `probe` receiver, which feeds its
//! requests to a pipeline's contracts as if they were spans.
//!
//! ```text
//! plan ──> engine (C workers, one keep-alive pool) ──> tally ──> report (JSON, pass/fail) ──> hooks
//!              └── observer: progress bar, or the probe receiver's samples
//! ```
//!
//! - [`client`]: the pooled HTTP client and one request's outcome;
//! - [`engine`]: the workers, rate limit and duration;
//! - [`tally`]: outcomes added up in the aggregator's own sketch and counters;
//! - [`report`]: the verdict and its JSON;
//! - [`hooks`]: `--on-pass` / `--on-fail` delivery with retries;
//! - [`progress`]: the terminal progress bar;
//! - [`command`]: `verdict probe` itself.

pub(crate) mod client;
pub mod command;
pub mod engine;
pub(crate) mod hooks;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod tally;

pub use engine::{Observer, RunResult};
pub use report::ProbeReport;
pub use tally::{Failure, Observation, Tally, TlsFailure};
