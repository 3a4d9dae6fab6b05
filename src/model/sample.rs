//! A sample: one request, as the receivers derive it from a span, ready to be
//! windowed. Metric points, which stand for many requests each, travel as
//! [`PointSample`](super::PointSample)s instead.

use super::{SeriesKey, UnixNanos};

/// One observed request of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series (contract + subject) it counts for.
    pub series: SeriesKey,
    /// When the request ended (UTC UNIX nanoseconds); decides its window.
    pub ts: UnixNanos,
    /// Request latency in milliseconds; finite and ≥ 0 (checked by the
    /// receiver), or NaN for a request that has none: a synthetic request
    /// whose connection failed counts as a request and an error, but not in
    /// the latency sketch.
    pub latency_ms: f64,
    /// The request failed (status ERROR or HTTP status ≥ 500).
    pub error: bool,
    /// The request converted (the contract's conversion attribute was true).
    pub converted: bool,
}
