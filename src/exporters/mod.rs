//! Exporters: where verdicts go. `log` and `webhook` deliver verdict events
//! from the outbox, each through its own [`outbox::Worker`] (a webhook's
//! request shaped by [`format`]); `prometheus` exposes run and window gauges
//! plus self-metrics.

pub mod format;
pub mod log;
pub mod outbox;
pub mod prometheus;
pub mod webhook;
