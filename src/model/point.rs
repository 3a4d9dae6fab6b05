//! A point sample: one OTLP metric data point (a latency histogram or a
//! conversions counter) for one series, as the receiver checked it.
//!
//! Metric points are pre-aggregated: one point stands for many requests, so
//! it is not turned into per-request [`Sample`](super::Sample)s (that would
//! cost a sketch insert per request and lose the bucket layout). It travels
//! to the series' shard as is (in a [`PointBatch`](super::PointBatch), which
//! carries the bucket counts of its points in one buffer), still cumulative
//! when the SDK sent it so: the shard that owns the series also owns its
//! streams' previous points and turns cumulative values into deltas (see
//! `aggregator::streams`).

use std::sync::Arc;

use super::{SeriesKey, UnixNanos};

/// Identity of a metric stream (resource + scope + metric name + point
/// attributes, and the contract reading it), hashed to 128 bits by the
/// receiver so that shards keep a fixed-size key per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64, pub u64);

/// How the point's values relate to earlier points of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// The point holds only what happened since the previous point.
    Delta,
    /// The point holds everything since its start time.
    Cumulative,
}

/// The unit of a latency histogram; bucket bounds stay in this unit so that
/// exponential buckets merge without re-bucketing (1000 is not a power of 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatencyUnit {
    /// Milliseconds (`ms`), the unit of span latencies.
    #[default]
    Millis,
    /// Seconds (`s`), the semantic-convention unit.
    Seconds,
    /// Microseconds (`us`).
    Micros,
}

impl LatencyUnit {
    /// Parses an OTLP (UCUM) unit string; `None` for anything but `s`, `ms`,
    /// `us` (and `μs`).
    pub fn parse(unit: &str) -> Option<LatencyUnit> {
        match unit {
            "s" => Some(LatencyUnit::Seconds),
            "ms" => Some(LatencyUnit::Millis),
            "us" | "μs" | "µs" => Some(LatencyUnit::Micros),
            _ => None,
        }
    }

    /// Milliseconds per unit.
    pub fn to_ms(self) -> f64 {
        match self {
            LatencyUnit::Millis => 1.0,
            LatencyUnit::Seconds => 1000.0,
            LatencyUnit::Micros => 0.001,
        }
    }
}

/// The most buckets one histogram point may have. SDKs default to 160
/// exponential buckets and a dozen or two explicit ones; 4096 is far above
/// any real layout, and bounds what one point costs downstream — a queued
/// point, a stream's remembered counts (`aggregator::streams`), the
/// spreading of explicit buckets — to 64 KiB of counts and bounds. The
/// receiver rejects a point with more (`too_many_buckets`).
pub const MAX_POINT_BUCKETS: usize = 4096;

/// The buckets of a latency histogram point (positive side only: latencies
/// have no negative buckets, the receiver rejects points that do).
#[derive(Debug, Clone, PartialEq)]
pub enum Buckets {
    /// OTLP `ExponentialHistogram`: bucket `offset + j` at `scale` holds
    /// `counts[j]`, plus a zero bucket.
    Exponential {
        /// Scale of the buckets.
        scale: i32,
        /// Index of `counts[0]`.
        offset: i32,
        /// Positive bucket counts.
        counts: Vec<u64>,
        /// Values at or below `zero_threshold`.
        zero_count: u64,
        /// Width of the zero bucket.
        zero_threshold: f64,
    },
    /// OTLP `Histogram`: `counts[i]` values in `(bounds[i-1], bounds[i]]`,
    /// with `-inf` before the first bound and `+inf` after the last.
    Explicit {
        /// Strictly increasing finite bounds (shared between points).
        bounds: Arc<[f64]>,
        /// `bounds.len() + 1` counts.
        counts: Vec<u64>,
    },
}

/// One latency histogram point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointLatency {
    /// Unit of the bounds, sum, min and max.
    pub unit: LatencyUnit,
    /// Requests the point describes (its `count`).
    pub count: u64,
    /// The point's attributes say the requests failed
    /// (`http.response.status_code` ≥ 500 or `error.type`).
    pub error: bool,
    /// Sum of the values, when given.
    pub sum: Option<f64>,
    /// Smallest value, when given.
    pub min: Option<f64>,
    /// Largest value, when given.
    pub max: Option<f64>,
    /// The buckets.
    pub buckets: Buckets,
}

/// What a point carries.
#[derive(Debug, Clone, PartialEq)]
pub enum PointKind {
    /// The latency histogram.
    Latency(PointLatency),
    /// The conversions counter's value (monotonic sum).
    Conversions(f64),
}

/// One metric data point of one series, ready for its shard.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSample {
    /// The series (contract + subject) it counts for.
    pub series: SeriesKey,
    /// The point's time (receive time when the point had 0); decides its window.
    pub ts: UnixNanos,
    /// The point's start time (0 when unknown).
    pub start: UnixNanos,
    /// Its stream, for cumulative → delta.
    pub stream: StreamId,
    /// Delta or cumulative.
    pub temporality: Temporality,
    /// The start time falls in a window that was still open when the point
    /// arrived: the first point of a cumulative stream counts in full
    /// (design §3); otherwise it is only the baseline for later deltas.
    pub fresh: bool,
    /// The values.
    pub kind: PointKind,
}

impl PointKind {
    /// The bucket counts of a latency point (none for conversions).
    pub fn counts(&self) -> &[u64] {
        match self {
            PointKind::Latency(l) => match &l.buckets {
                Buckets::Exponential { counts, .. } | Buckets::Explicit { counts, .. } => counts,
            },
            PointKind::Conversions(_) => &[],
        }
    }

    /// The vector of a latency point's bucket counts.
    pub fn counts_mut(&mut self) -> Option<&mut Vec<u64>> {
        match self {
            PointKind::Latency(l) => match &mut l.buckets {
                Buckets::Exponential { counts, .. } | Buckets::Explicit { counts, .. } => {
                    Some(counts)
                }
            },
            PointKind::Conversions(_) => None,
        }
    }

    /// A copy without the bucket counts (an empty vector, which does not
    /// allocate; explicit bounds are shared).
    pub fn without_counts(&self) -> PointKind {
        match self {
            PointKind::Latency(l) => PointKind::Latency(PointLatency {
                buckets: match &l.buckets {
                    Buckets::Exponential {
                        scale,
                        offset,
                        zero_count,
                        zero_threshold,
                        ..
                    } => Buckets::Exponential {
                        scale: *scale,
                        offset: *offset,
                        counts: Vec::new(),
                        zero_count: *zero_count,
                        zero_threshold: *zero_threshold,
                    },
                    Buckets::Explicit { bounds, .. } => Buckets::Explicit {
                        bounds: bounds.clone(),
                        counts: Vec::new(),
                    },
                },
                ..*l
            }),
            PointKind::Conversions(v) => PointKind::Conversions(*v),
        }
    }
}
