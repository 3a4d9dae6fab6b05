//! The accumulation of a window that is still open, as its shard holds it:
//! an [`Accum`] plus the explicit-bucket points not spread yet.
//!
//! Spreading one explicit-bucket point into the sketch walks up to 128
//! pieces per bucket — about a thousand for the fifteen buckets of the
//! semantic-convention layout — and was four fifths of what a metric
//! point cost its shard. Design §3 promises explicit buckets "spread inside
//! each bucket (documented error bound: the bucket width)", not each point
//! spread on its own: so an open window adds a point's bucket counts to the
//! summed counts of its layout (bounds and unit), one addition per bucket,
//! and spreads each sum once, when the window is read — closed for the run
//! engine, or copied for a checkpoint ([`OpenAccum::to_accum`]). Requests,
//! errors and the explicit bucket of every request are exact either way;
//! a sum is rounded once where each point was rounded on its own, so the
//! quantiles stay within the bucket width the answers already carry.
//!
//! The sum of points is the histogram of all their values: its bucket
//! counts are the points' counts added, and its `min` (`max`) the smallest
//! (largest) of the points', a point without one standing for the lower
//! (upper) bound of its first (last) non-empty bucket, or leaving the sum
//! without one when that bucket is open (below the first bound, above the
//! last).
//!
//! What waits is bounded: at most [`MAX_LAYOUTS`] layouts and
//! [`MAX_PENDING`] counts and bounds in all per window (8 KiB, what a
//! sketch of 2048 buckets holds). A point that does not fit spreads what
//! waits first; a point larger than that alone is spread as it comes.

use std::sync::Arc;

use super::accum::Accum;
use super::point::{Buckets, LatencyUnit, PointKind, PointLatency};
use super::Sample;

/// Most layouts (bounds and unit) summed at once in one window.
pub const MAX_LAYOUTS: usize = 8;

/// Most bucket counts and bounds summed at once in one window, over all
/// its layouts.
pub const MAX_PENDING: usize = 1024;

/// The accumulation of an open window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenAccum {
    accum: Accum,
    /// Explicit-bucket points summed per layout, not spread yet (in the
    /// order their layouts first came).
    sums: Vec<ExplicitSum>,
}

/// One side's clamp of summed explicit points.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Clamp {
    /// No point had a count yet.
    Unset,
    /// The extreme so far.
    At(f64),
    /// Some point had counts in the open bucket on this side and no
    /// extreme: the sum has none.
    Open,
}

impl Clamp {
    /// The sum's `min` or `max` for spreading.
    fn value(self) -> Option<f64> {
        match self {
            Clamp::At(v) => Some(v),
            Clamp::Unset | Clamp::Open => None,
        }
    }

    /// Joins a point's clamp, keeping the extreme by `pick`.
    #[inline]
    fn join(&mut self, point: Clamp, pick: fn(f64, f64) -> f64) {
        *self = match (*self, point) {
            (Clamp::Open, _) | (_, Clamp::Open) => Clamp::Open,
            (Clamp::Unset, c) | (c, Clamp::Unset) => c,
            (Clamp::At(a), Clamp::At(b)) => Clamp::At(pick(a, b)),
        };
    }
}

/// Explicit-bucket points of one layout, summed.
#[derive(Debug, Clone, PartialEq)]
struct ExplicitSum {
    unit: LatencyUnit,
    bounds: Arc<[f64]>,
    /// `bounds.len() + 1` summed counts.
    counts: Vec<u64>,
    lower: Clamp,
    upper: Clamp,
}

impl ExplicitSum {
    /// Counts and bounds it holds.
    fn size(&self) -> usize {
        self.counts.len() + self.bounds.len()
    }

    /// True when a point of `unit` and `bounds` belongs to this sum.
    #[inline]
    fn is_layout(&self, unit: LatencyUnit, bounds: &Arc<[f64]>) -> bool {
        self.unit == unit && (Arc::ptr_eq(&self.bounds, bounds) || *self.bounds == **bounds)
    }

    /// Adds a point's counts and clamps.
    #[inline]
    fn add(&mut self, counts: &[u64], min: Option<f64>, max: Option<f64>) {
        for (s, c) in self.counts.iter_mut().zip(counts) {
            *s = s.saturating_add(*c);
        }
        let (lower, upper) = clamps(&self.bounds, counts, min, max);
        self.lower.join(lower, f64::min);
        self.upper.join(upper, f64::max);
    }
}

/// A point's clamps as its sum sees them: its `min` and `max` when finite
/// (spreading ignores any other); otherwise the outer bound of its first
/// (last) non-empty bucket, which clamps none of its buckets, or
/// [`Clamp::Open`] when that bucket is the open one. A point without
/// counts clamps nothing (spreading skips its buckets, extremes and all).
#[inline]
fn clamps(bounds: &[f64], counts: &[u64], min: Option<f64>, max: Option<f64>) -> (Clamp, Clamp) {
    let Some(first) = counts.iter().position(|c| *c > 0) else {
        return (Clamp::Unset, Clamp::Unset);
    };
    let lower = match (min.filter(|m| m.is_finite()), first) {
        (Some(m), _) => Clamp::At(m),
        (None, 0) => Clamp::Open,
        (None, i) => Clamp::At(bounds[i - 1]),
    };
    let upper = match max.filter(|m| m.is_finite()) {
        Some(m) => Clamp::At(m),
        None => match counts.iter().rposition(|c| *c > 0) {
            Some(j) if j < bounds.len() => Clamp::At(bounds[j]),
            _ => Clamp::Open,
        },
    };
    (lower, upper)
}

impl OpenAccum {
    /// Adds one span sample.
    #[inline]
    pub fn record(&mut self, s: &Sample) {
        self.accum.record(s);
    }

    /// Adds a (delta) metric point: an explicit-bucket histogram is summed
    /// with the others of its layout, anything else goes in as
    /// [`Accum::record_point`] puts it.
    pub fn record_point(&mut self, kind: &PointKind) {
        if let PointKind::Latency(p) = kind {
            if let Buckets::Explicit { bounds, counts } = &p.buckets {
                if counts.len() == bounds.len() + 1 && self.add_explicit(p, bounds, counts) {
                    return;
                }
            }
        }
        self.accum.record_point(kind);
    }

    /// Sums an explicit point with its layout's; false when it must be
    /// spread as it comes (bounds not finite, or a layout larger than
    /// what may wait).
    fn add_explicit(&mut self, p: &PointLatency, bounds: &Arc<[f64]>, counts: &[u64]) -> bool {
        if let Some(sum) = self.sums.iter_mut().find(|s| s.is_layout(p.unit, bounds)) {
            self.accum.count_latency(p);
            sum.add(counts, p.min, p.max);
            return true;
        }
        let size = counts.len() + bounds.len();
        if size > MAX_PENDING || !bounds.iter().all(|b| b.is_finite()) {
            return false;
        }
        let pending: usize = self.sums.iter().map(ExplicitSum::size).sum();
        if self.sums.len() >= MAX_LAYOUTS || pending + size > MAX_PENDING {
            self.fold();
        }
        if self.accum.latency_empty() {
            // The sketch takes the unit of its first latency, as when each
            // point was spread on arrival: a later point of another unit
            // is converted to this one (or re-bucketed) whatever the order
            // the sums are spread in.
            self.accum.adopt_first_explicit(p.unit, bounds);
        }
        self.accum.count_latency(p);
        let mut sum = ExplicitSum {
            unit: p.unit,
            bounds: bounds.clone(),
            counts: vec![0; counts.len()],
            lower: Clamp::Unset,
            upper: Clamp::Unset,
        };
        sum.add(counts, p.min, p.max);
        self.sums.push(sum);
        true
    }

    /// Spreads every waiting sum into the sketch, oldest layout first.
    fn fold(&mut self) {
        for sum in std::mem::take(&mut self.sums) {
            self.accum.spread_explicit_in(
                sum.unit,
                &sum.bounds,
                &sum.counts,
                sum.lower.value(),
                sum.upper.value(),
                Accum::spread_bucket,
            );
        }
    }

    /// Adds a whole accumulation (a restored window).
    pub fn merge(&mut self, other: &Accum) {
        self.accum.merge(other);
    }

    /// The window's accumulation, every sum spread (the window closes).
    pub fn into_accum(mut self) -> Accum {
        self.fold();
        self.accum
    }

    /// A copy of the window's accumulation as if it closed now (for a
    /// checkpoint); the window keeps summing.
    pub fn to_accum(&self) -> Accum {
        self.clone().into_accum()
    }
}

#[cfg(test)]
#[path = "open_accum_tests.rs"]
pub(crate) mod summed_tests;
