//! Exporters: where verdicts go. `log` and `webhook` deliver verdict events
//! from the outbox, each through its own [`outbox::Worker`]; `prometheus`
//! exposes run and window gauges plus self-metrics.

pub mod log;
pub mod outbox;
pub mod prometheus;
pub mod webhook;
