//! Exporters: where verdicts go. `log` writes each verdict event as a JSON
//! line; `prometheus` exposes run and window gauges plus self-metrics.

pub mod log;
pub mod prometheus;
