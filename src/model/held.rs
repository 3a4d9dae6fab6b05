//! What a queued item holds in memory, for the in-flight byte budget: an
//! item waiting in a shard queue is charged its whole size, heap included,
//! not only its struct. A metric point's bucket vectors are most of it
//! (a point of 4096 explicit buckets holds 64 KiB in two vectors behind a
//! struct of a hundred-odd bytes).
//!
//! Subjects are not counted: one [`Subject`](super::Subject) is shared by
//! every item of a resource, and its text is bounded by the request that
//! carried it.

use super::point::{Buckets, PointKind, PointSample};
use super::{Rejected, Sample, SeriesKey};

/// Bytes an item holds while it is queued.
pub trait HeldBytes {
    /// Its struct and the heap memory it owns.
    fn held_bytes(&self) -> usize;
}

impl HeldBytes for Sample {
    fn held_bytes(&self) -> usize {
        std::mem::size_of::<Sample>()
    }
}

impl HeldBytes for PointSample {
    fn held_bytes(&self) -> usize {
        const WORD: usize = std::mem::size_of::<u64>();
        let heap = match &self.kind {
            PointKind::Conversions(_) => 0,
            PointKind::Latency(l) => match &l.buckets {
                Buckets::Exponential { counts, .. } => counts.capacity() * WORD,
                // The bounds are an `Arc` (its two counts, then the
                // values); points of one request share none today, and
                // counting a shared one twice only overcharges.
                Buckets::Explicit { bounds, counts } => {
                    counts.capacity() * WORD + (bounds.len() + 2) * WORD
                }
            },
        };
        std::mem::size_of::<PointSample>() + heap
    }
}

impl<T: HeldBytes> HeldBytes for Vec<T> {
    /// Its items' bytes (a batch of samples or rejections).
    fn held_bytes(&self) -> usize {
        self.iter().map(HeldBytes::held_bytes).sum()
    }
}

impl HeldBytes for (SeriesKey, Rejected) {
    fn held_bytes(&self) -> usize {
        let (_, r) = self;
        std::mem::size_of::<(SeriesKey, Rejected)>() + r.metric.capacity() + r.why.capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::point::{LatencyUnit, PointLatency, StreamId, Temporality};
    use crate::model::Subject;

    fn point(buckets: Buckets) -> PointSample {
        PointSample {
            series: SeriesKey {
                contract: 0,
                subject: Subject::named("s"),
            },
            ts: 1,
            start: 0,
            stream: StreamId(1, 2),
            temporality: Temporality::Delta,
            fresh: false,
            kind: PointKind::Latency(PointLatency {
                unit: LatencyUnit::Seconds,
                count: 0,
                error: false,
                sum: None,
                min: None,
                max: None,
                buckets,
            }),
        }
    }

    /// A point is charged for its buckets, not only its struct: 4096
    /// explicit buckets are 64 KiB.
    #[test]
    fn a_point_holds_its_bucket_vectors() {
        let small = point(Buckets::Exponential {
            scale: 0,
            offset: 0,
            counts: Vec::new(),
            zero_count: 0,
            zero_threshold: 0.0,
        })
        .held_bytes();
        assert_eq!(small, std::mem::size_of::<PointSample>());
        let explicit = point(Buckets::Explicit {
            bounds: Arc::from(vec![1.0; 4095]),
            counts: vec![0; 4096],
        })
        .held_bytes();
        assert!(explicit >= 64 * 1024, "{explicit}");
        let exponential = point(Buckets::Exponential {
            scale: 0,
            offset: 0,
            counts: vec![0; 4096],
            zero_count: 0,
            zero_threshold: 0.0,
        })
        .held_bytes();
        assert_eq!(exponential, small + 4096 * 8);
    }
}
