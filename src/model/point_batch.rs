//! The metric points one request sends one shard, with the bucket counts of
//! all of them in one buffer.
//!
//! A histogram point's counts are most of what it is (16 explicit or up to
//! 160 exponential counts). Carried in a vector each, every histogram point
//! cost an allocation in the receiver and a free in the shard, on another
//! thread. A batch keeps them in one vector instead: a point travels with
//! an empty `counts` (which does not allocate), and the shard puts its
//! counts back into one reused vector just before it records the point
//! ([`PointBatch::for_each_whole`]), so the stream table and the window code
//! see whole points, as everywhere else.

use super::held::HeldBytes;
use super::point::PointSample;

/// Metric points for one shard; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointBatch {
    /// The points, in order; a histogram point's `counts` is empty here.
    points: Vec<PointSample>,
    /// `counts[ends[i - 1]..ends[i]]` are the bucket counts of `points[i]`.
    ends: Vec<usize>,
    /// The bucket counts of every point, one point after the other.
    counts: Vec<u64>,
    /// Heap bytes of the explicit bounds the points hold (an `Arc` each,
    /// charged per point as [`PointSample::held_bytes`] does).
    bounds: usize,
}

const WORD: usize = std::mem::size_of::<u64>();

/// The most counts a batch makes room for ahead of its points (1 MiB): a
/// large point at the start of a request must not have room for a
/// thousand like it taken, and charged, before they come.
const RESERVED_COUNTS: usize = 128 * 1024;

impl PointBatch {
    /// Points in the batch.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// No point in the batch.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Makes room for `n` more points.
    pub fn reserve(&mut self, n: usize) {
        self.points.reserve(n);
        self.ends.reserve(n);
    }

    /// The points without their bucket counts (series, stream, time: what
    /// can be read before recording them).
    pub fn points(&self) -> &[PointSample] {
        &self.points
    }

    /// Adds `point`, whose own counts vector is left out, with `counts` as
    /// its bucket counts (empty for a conversions point).
    pub fn push_with(&mut self, mut point: PointSample, counts: &[u64]) {
        if let Some(own) = point.kind.counts_mut() {
            // Only `counts` travel; a vector the caller left in the point
            // is not carried (nor charged).
            *own = Vec::new();
        }
        // What the point holds beyond its struct, its counts now empty:
        // its explicit bounds.
        self.bounds += point.held_bytes() - std::mem::size_of::<PointSample>();
        if self.counts.capacity() - self.counts.len() < counts.len() {
            // Room for the points reserved but not pushed yet, as long as
            // this one (points of a metric are alike): growing by doubling
            // copied the buffer again and again.
            let ahead = self.points.capacity().saturating_sub(self.points.len());
            let room = ahead
                .min(RESERVED_COUNTS / counts.len().max(1))
                .max(1)
                .saturating_mul(counts.len());
            // Exactly that: the batch is charged what it holds, and a
            // doubled buffer could refuse a request that fits.
            self.counts.reserve_exact(room);
        }
        self.counts.extend_from_slice(counts);
        self.ends.push(self.counts.len());
        self.points.push(point);
    }

    /// Adds `point`, moving its bucket counts into the batch's buffer.
    pub fn push(&mut self, mut point: PointSample) {
        let counts = point.kind.counts_mut().map(std::mem::take);
        self.push_with(point, counts.as_deref().unwrap_or(&[]));
    }

    /// Calls `f` on each point in order, its bucket counts back in it: in
    /// `scratch`, which is reused from point to point (no allocation once
    /// it is as long as the longest point). Whatever counts vector `f`
    /// leaves in the point becomes the scratch for the next one; the
    /// points are left without counts.
    pub fn for_each_whole(&mut self, scratch: &mut Vec<u64>, mut f: impl FnMut(&mut PointSample)) {
        let mut at = 0;
        for (point, &end) in self.points.iter_mut().zip(&self.ends) {
            let counts = self.counts.get(at..end).unwrap_or_default();
            at = end;
            let Some(own) = point.kind.counts_mut() else {
                f(point);
                continue;
            };
            scratch.clear();
            scratch.extend_from_slice(counts);
            std::mem::swap(own, scratch);
            f(point);
            if let Some(own) = point.kind.counts_mut() {
                std::mem::swap(own, scratch);
            }
        }
    }

    /// The whole points, each with its own counts vector (tests, and paths
    /// that keep points).
    pub fn into_points(self) -> Vec<PointSample> {
        let mut at = 0;
        let counts = self.counts;
        self.points
            .into_iter()
            .zip(self.ends)
            .map(|(mut point, end)| {
                let mine = counts.get(at..end).unwrap_or_default();
                at = end;
                if let Some(own) = point.kind.counts_mut() {
                    *own = mine.to_vec();
                }
                point
            })
            .collect()
    }
}

impl From<Vec<PointSample>> for PointBatch {
    fn from(points: Vec<PointSample>) -> Self {
        let mut batch = PointBatch::default();
        batch.reserve(points.len());
        for p in points {
            batch.push(p);
        }
        batch
    }
}

impl HeldBytes for PointBatch {
    /// Its vectors' capacity, and the explicit bounds of its points.
    fn held_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<PointSample>()
            + self.ends.capacity() * std::mem::size_of::<usize>()
            + self.counts.capacity() * WORD
            + self.bounds
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::point::{
        Buckets, LatencyUnit, PointKind, PointLatency, StreamId, Temporality,
    };
    use crate::model::{SeriesKey, Subject};

    fn point(stream: u64, buckets: Option<Buckets>) -> PointSample {
        PointSample {
            series: SeriesKey {
                contract: 0,
                subject: Subject::named("s"),
            },
            ts: stream,
            start: 0,
            stream: StreamId(stream, 0),
            temporality: Temporality::Cumulative,
            fresh: true,
            kind: match buckets {
                Some(buckets) => PointKind::Latency(PointLatency {
                    unit: LatencyUnit::Seconds,
                    count: 3,
                    error: false,
                    sum: Some(1.0),
                    min: None,
                    max: None,
                    buckets,
                }),
                None => PointKind::Conversions(stream as f64),
            },
        }
    }

    fn explicit(counts: &[u64]) -> Option<Buckets> {
        Some(Buckets::Explicit {
            bounds: Arc::from(vec![1.0; counts.len().saturating_sub(1)]),
            counts: counts.to_vec(),
        })
    }

    fn exponential(counts: &[u64]) -> Option<Buckets> {
        Some(Buckets::Exponential {
            scale: 3,
            offset: -2,
            counts: counts.to_vec(),
            zero_count: 1,
            zero_threshold: 0.0,
        })
    }

    fn mixed() -> Vec<PointSample> {
        vec![
            point(1, explicit(&[1, 2, 0])),
            point(2, None),
            point(3, exponential(&[5; 160])),
            point(4, explicit(&[])),
            point(5, exponential(&[7, 0, 9])),
        ]
    }

    /// Points go in whole and come out whole, in order, each with its own
    /// counts, whether they went in with them or beside them.
    #[test]
    fn points_come_out_as_they_went_in() {
        let batch = PointBatch::from(mixed());
        assert!(batch.points().iter().all(|p| p.kind.counts().is_empty()));
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.clone().into_points(), mixed());

        let mut beside = PointBatch::default();
        for p in mixed() {
            let counts = p.kind.counts().to_vec();
            beside.push_with(p, &counts);
        }
        assert_eq!(beside, batch);

        let mut seen = Vec::new();
        let mut scratch = Vec::new();
        beside.for_each_whole(&mut scratch, |p| seen.push(p.clone()));
        assert_eq!(seen, mixed());
    }

    /// What the callback leaves in a point (a delta written over its
    /// counts, or a vector of its own) is not carried into the next point.
    #[test]
    fn each_point_sees_only_its_own_counts() {
        let mut batch = PointBatch::from(mixed());
        let mut scratch = vec![99; 8];
        let mut seen = Vec::new();
        batch.for_each_whole(&mut scratch, |p| {
            seen.push(p.kind.counts().to_vec());
            if let Some(c) = p.kind.counts_mut() {
                if c.len() == 160 {
                    *c = vec![42; 1000];
                } else {
                    c.iter_mut().for_each(|x| *x += 100);
                }
            }
        });
        let want: Vec<Vec<u64>> = mixed().iter().map(|p| p.kind.counts().to_vec()).collect();
        assert_eq!(seen, want);
    }

    /// The first point makes room for the points reserved after it, as
    /// long as it is (one allocation for a request's counts, not one per
    /// doubling), but never more than [`RESERVED_COUNTS`] ahead.
    #[test]
    fn room_is_made_ahead_within_a_bound() {
        let mut alike = PointBatch::default();
        alike.reserve(500);
        alike.push(point(1, exponential(&[1; 160])));
        let room = alike.counts.capacity();
        assert!(room >= 500 * 160, "{room}");
        for i in 2..=500 {
            alike.push(point(i, exponential(&[1; 160])));
        }
        assert_eq!(alike.counts.capacity(), room, "no growth for alike points");

        // Beyond the bound, the buffer grows to what the points reserved
        // need, not to twice its size: the batch is charged its capacity,
        // and a request that fits the budget must not be refused.
        let mut many = PointBatch::default();
        many.reserve(1025);
        for i in 1..=1025 {
            many.push(point(i, exponential(&[1; 160])));
        }
        let room = many.counts.capacity();
        assert!(room < 1025 * 160 + 160, "{room}");

        let mut large_first = PointBatch::default();
        large_first.reserve(2048);
        large_first.push(point(1, explicit(&[1; 4096])));
        let room = large_first.counts.capacity();
        assert!(room <= 2 * RESERVED_COUNTS, "{room}");
        assert!(
            large_first.held_bytes() < 4 << 20,
            "{}",
            large_first.held_bytes()
        );
    }

    /// The batch is charged its buffers and its points' explicit bounds
    /// (4096 explicit buckets are 64 KiB).
    #[test]
    fn a_batch_holds_its_counts() {
        let mut batch = PointBatch::default();
        let empty = batch.held_bytes();
        assert_eq!(empty, 0);
        batch.push(point(1, explicit(&[0; 4096])));
        assert!(batch.held_bytes() >= 64 * 1024, "{}", batch.held_bytes());
        let mut sums = PointBatch::default();
        sums.push(point(1, None));
        assert!(sums.held_bytes() < 1024, "{}", sums.held_bytes());
    }
}
