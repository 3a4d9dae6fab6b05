//! Exporters: where verdicts go. `log` and `webhook` deliver verdict events
//! from the outbox, each through its own [`outbox::Worker`] (a webhook's
//! request shaped by [`format`]); `unleash` applies the flag changes of
//! canary stepping, from the outbox too; `prometheus` exposes run, window
//! and rollout gauges plus self-metrics.

pub mod format;
pub mod log;
pub mod orphans;
pub mod outbox;
pub mod prometheus;
pub mod unleash;
pub mod webhook;
