//! The window sketch that shards fill and runs merge.
//!
//! Every aggregation window keeps one [`Sketch`] per latency series: receiver
//! shards insert raw latencies into their own sketch, and a run merges the
//! shard sketches (and later OTLP `ExponentialHistogram` points, and sketches
//! of earlier windows) to answer quantile questions such as "p95 of the
//! canary". The layout is the OpenTelemetry `ExponentialHistogram` one
//! (<https://opentelemetry.io/docs/specs/otel/metrics/data-model/#exponentialhistogram>),
//! so that OTLP points merge in without any conversion and any two sketches,
//! whatever their scales, merge *exactly*:
//!
//! * at scale `s` the base is `2^(2^-s)` and bucket `i` covers
//!   `(base^i, base^(i+1)]` (upper bound inclusive, as OTel has it);
//! * the index of a value at scale `s - d` is its index at scale `s` shifted
//!   right by `d`, so a finer sketch is brought to a coarser scale by adding
//!   neighbouring buckets together, which loses nothing that the coarser
//!   scale could have kept;
//! * the number of buckets is bounded: when a value or a merge would make the
//!   span of indices exceed the bound, the sketch lowers its scale by the
//!   minimum needed instead of allocating more.
//!
//! Every quantile answer carries the relative error bound
//! `(base - 1) / (base + 1)` of the scale it was answered at (about 0.54 % at
//! the default scale 6), which is what release decisions compare against.
//!
//! Index mapping: for scale ≤ 0 the exponent bits of the value decide the
//! bucket (OTel's "exponent method"); for scale > 0 the exponent bits give the
//! octave and the mantissa is placed among the `2^s` octave boundaries
//! `2^(j/2^s)`, with a small per-scale lookup table (scales 1..=12) or a
//! `log2` guess corrected against the same boundaries (scales 13..=20). Both
//! paths use the very same boundary values, computed once from exact dyadic
//! exponents, so the mapping is consistent across scales (the right-shift
//! property holds for every `f64`, not just almost all of them) and exact
//! powers of two always land in the bucket whose upper bound they are.

#![forbid(unsafe_code)]

mod buckets;
mod index;

use std::borrow::Cow;
use std::fmt;
use std::ops::RangeInclusive;

use buckets::{Buckets, Src};
pub use index::relative_error_at;
use index::*;

/// Scale a new sketch starts at: relative error ≈ 0.54 %, enough to tell a
/// 1 % latency regression apart while 2048 buckets still span 32 octaves.
pub const DEFAULT_SCALE: i32 = 6;
/// Coarsest scale (OTel's minimum): every positive `f64` fits in 3 buckets.
pub const MIN_SCALE: i32 = -10;
/// Finest scale (OTel SDKs' maximum): indices of every `f64` still fit in `i32`.
pub const MAX_SCALE: i32 = 20;
/// Bucket bound of [`Sketch::new`]: 8 KiB of counts per series and window
/// (16 KiB once a window holds more than `u32::MAX` values).
pub const DEFAULT_MAX_BUCKETS: usize = 2048;
/// Smallest accepted bucket bound: at [`MIN_SCALE`] all positive `f64` values
/// span 3 buckets, so a bound of 4 always leaves room after downscaling.
pub const MIN_MAX_BUCKETS: usize = 4;
/// Largest accepted bucket bound (up to 128 MiB of counts), so that index arithmetic
/// with the bound can never overflow.
pub const MAX_MAX_BUCKETS: usize = 1 << 24;

/// Bits of `+inf`: every bit pattern at or above it is NaN, infinite or has
/// the sign bit set, which lets `insert` reject all of them with one compare.
const INF_BITS: u64 = 0x7ff0_0000_0000_0000;
/// First allocation of the counts buffer, so small sketches don't regrow often.
const MIN_ALLOC: usize = 32;

/// Why [`Sketch::insert`] refused a value.
///
/// Latencies are finite and non-negative; anything else is a bug upstream
/// (or a hostile sender) and is counted rather than silently distorting the
/// quantiles. The reason lets the caller label its own rejection metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The value was NaN.
    Nan,
    /// The value was `+inf` or `-inf`.
    Infinite,
    /// The value was negative (`-0.0` is accepted as zero).
    Negative,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::Nan => "value is NaN",
            RejectReason::Infinite => "value is infinite",
            RejectReason::Negative => "value is negative",
        })
    }
}

impl std::error::Error for RejectReason {}

/// One quantile answer together with the bound it is guaranteed to satisfy.
///
/// Carrying the bound with the value lets a decision rule ask "is the canary
/// worse than the baseline by more than the sketches' error?" instead of
/// trusting the value blindly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantile {
    /// The estimate: `|value - exact| <= relative_error * exact` (up to a few
    /// ulps of floating-point rounding), where `exact` is the nearest-rank
    /// quantile of the inserted values.
    pub value: f64,
    /// The relative error bound `(base - 1) / (base + 1)` of the sketch's
    /// scale at the time of the answer.
    pub relative_error: f64,
}

/// A sketch's full state as plain data, for serialisation.
///
/// [`Sketch::to_parts`] and [`Sketch::from_parts`] are inverse of each other,
/// so a window can be persisted or shipped between processes without this
/// module choosing a wire format.
#[derive(Clone, Debug, PartialEq)]
pub struct SketchParts<'a> {
    /// Scale of the positive buckets.
    pub scale: i32,
    /// Bucket bound the sketch enforces.
    pub max_buckets: usize,
    /// Values at or below this went to the zero bucket.
    pub zero_threshold: f64,
    /// Number of values in the zero bucket.
    pub zero_count: u64,
    /// Index (at `scale`) of `bucket_counts[0]`.
    pub offset: i32,
    /// Counts of the positive buckets, lowest index first.
    pub bucket_counts: Cow<'a, [u64]>,
    /// Sum of the accepted values.
    pub sum: f64,
    /// Smallest accepted value, `None` when empty.
    pub min: Option<f64>,
    /// Largest accepted value, `None` when empty.
    pub max: Option<f64>,
    /// Number of rejected values.
    pub rejected: u64,
}

/// A mergeable log-bucket quantile sketch in the OTel `ExponentialHistogram`
/// layout (positive buckets plus a zero bucket).
///
/// See the module documentation for why it is built this way. Equality
/// compares the logical state (scale, bound, zero bucket, bucket contents,
/// count, sum, min, max, rejections), not the spare capacity of the buffer.
#[derive(Clone)]
pub struct Sketch {
    scale: i32,
    max_buckets: usize,
    /// Lookup table of the current scale, when it has one.
    table: Option<&'static ScaleTable>,
    /// Bucket counts; entry `p` is the bucket of index `offset + p`. Entries
    /// outside `lo..=hi` are zero. Never longer than `max_buckets`. Narrow
    /// (`u32`) only while `count` fits in a `u32`, see [`buckets`].
    counts: Buckets,
    offset: i64,
    /// Lowest and highest non-empty bucket indices; `lo > hi` when there are
    /// no positive buckets. `counts` of both ends are non-zero otherwise.
    lo: i64,
    hi: i64,
    zero_count: u64,
    zero_threshold: f64,
    count: u64,
    sum: f64,
    /// `+inf` / `-inf` while empty.
    min: f64,
    max: f64,
    rejected: u64,
}

impl Default for Sketch {
    /// Same as [`Sketch::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Sketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, offset, buckets) = self.positive_buckets();
        f.debug_struct("Sketch")
            .field("scale", &self.scale)
            .field("max_buckets", &self.max_buckets)
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("zero_threshold", &self.zero_threshold)
            .field("zero_count", &self.zero_count)
            .field("rejected", &self.rejected)
            .field("offset", &offset)
            .field("buckets", &buckets)
            .finish()
    }
}

impl PartialEq for Sketch {
    fn eq(&self, other: &Self) -> bool {
        self.scale == other.scale
            && self.max_buckets == other.max_buckets
            && self.zero_threshold == other.zero_threshold
            && self.zero_count == other.zero_count
            && self.count == other.count
            && self.sum == other.sum
            && self.min() == other.min()
            && self.max() == other.max()
            && self.rejected == other.rejected
            && self.bucket_span() == other.bucket_span()
            && self.span_counts().same_values(&other.span_counts())
    }
}

/// A value with its bucket index, for [`Sketch::insert_indexed`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Indexed {
    /// The value (what `sum`, `min` and `max` see).
    pub value: f64,
    /// Its bucket index at the scale the caller gives.
    pub index: i64,
    /// How many copies.
    pub n: u64,
}

/// The bucket bounds of one scale: [`Edges::lower`] is the exclusive lower
/// bound `2^(i / 2^scale)` of bucket `i`, read from the scale's table (one
/// `exp2` per octave boundary, computed once) instead of an `exp2` per call.
#[derive(Clone, Copy)]
pub struct Edges {
    scale: i32,
    table: Option<&'static ScaleTable>,
}

impl Edges {
    /// The bounds at `scale`.
    pub fn at(scale: i32) -> Edges {
        Edges {
            scale,
            table: table_for(scale),
        }
    }

    /// Exclusive lower bound of bucket `idx` (inclusive upper bound of
    /// bucket `idx - 1`).
    #[inline]
    pub fn lower(&self, idx: i64) -> f64 {
        lower_bound_with(idx, self.scale, self.table)
    }

    /// Index of the bucket holding a positive finite `v`: the `i` with
    /// `lower(i) < v <= lower(i + 1)`.
    #[inline]
    pub fn index_of(&self, v: f64) -> i64 {
        map_index(v.to_bits(), self.scale, self.table)
    }
}

/// An incoming set of buckets (another sketch or an OTLP point), normalised.
struct Incoming<'a> {
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    offset: i64,
    counts: Src<'a>,
    /// Sum of `counts` when the sender already knows it exactly (a sketch
    /// does: its count minus its zero count), which spares the merge a pass.
    bucket_total: Option<u64>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

impl Sketch {
    /// A sketch at [`DEFAULT_SCALE`] bounded to [`DEFAULT_MAX_BUCKETS`]: the
    /// setting every window uses unless configured otherwise.
    pub fn new() -> Self {
        Self::with_params(DEFAULT_SCALE, DEFAULT_MAX_BUCKETS)
    }

    /// A sketch starting at `scale` (clamped to `[MIN_SCALE, MAX_SCALE]`)
    /// that never holds more than `max_buckets` buckets (clamped to
    /// `[MIN_MAX_BUCKETS, MAX_MAX_BUCKETS]`).
    ///
    /// The scale is a ceiling on precision: the sketch only ever lowers it
    /// (to fit the bucket bound, or to merge a coarser sketch). Clamping
    /// instead of failing keeps configuration mistakes from taking a window
    /// down; the clamped values are visible through [`Sketch::scale`] and
    /// [`Sketch::max_buckets`].
    pub fn with_params(scale: i32, max_buckets: usize) -> Self {
        let scale = scale.clamp(MIN_SCALE, MAX_SCALE);
        Sketch {
            scale,
            max_buckets: max_buckets.clamp(MIN_MAX_BUCKETS, MAX_MAX_BUCKETS),
            table: table_for(scale),
            counts: Buckets::default(),
            offset: 0,
            lo: 1,
            hi: 0,
            zero_count: 0,
            zero_threshold: 0.0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            rejected: 0,
        }
    }

    /// Sets the zero threshold: values `<= threshold` are counted in the zero
    /// bucket and answered as 0 (clamped to the minimum).
    ///
    /// The default 0.0 counts exact zeros only, which keeps the relative
    /// error guarantee for every value; a positive threshold trades that for
    /// fewer buckets when sub-threshold values don't matter. A threshold that
    /// is negative, NaN or infinite is ignored. Buckets already lying wholly
    /// at or below the new threshold move into the zero bucket.
    #[must_use]
    pub fn with_zero_threshold(mut self, threshold: f64) -> Self {
        if threshold.is_finite() && threshold > self.zero_threshold {
            self.zero_threshold = threshold;
            self.collapse_below_threshold();
        }
        self
    }

    /// Adds one value.
    ///
    /// NaN, infinities and negative values are refused (and counted, see
    /// [`Sketch::rejected`]) because a latency can be none of these; the
    /// sketch is otherwise unchanged by them.
    ///
    /// # Errors
    ///
    /// [`RejectReason`] says which of the three it was.
    #[inline]
    pub fn insert(&mut self, v: f64) -> Result<(), RejectReason> {
        self.insert_n(v, 1)
    }

    /// Adds `n` copies of one value, e.g. a pre-aggregated count.
    ///
    /// Refuses the same values as [`Sketch::insert`]; a refusal counts `n`
    /// rejections. `n == 0` changes nothing. Counts saturate at `u64::MAX`
    /// rather than wrap.
    ///
    /// # Errors
    ///
    /// As for [`Sketch::insert`].
    #[inline]
    pub fn insert_n(&mut self, v: f64, n: u64) -> Result<(), RejectReason> {
        let bits = v.to_bits();
        if bits >= INF_BITS {
            return self.insert_special(v, n);
        }
        if n == 0 {
            return Ok(());
        }
        if v <= self.zero_threshold {
            // Keeps "narrow only while `count` fits a u32" true (cheap: zero
            // latencies are rare).
            self.counts.reserve(self.count, n);
            self.zero_count = self.zero_count.saturating_add(n);
        } else {
            let idx = map_index(bits, self.scale, self.table);
            let inside = idx >= self.lo && idx <= self.hi;
            if !(inside
                && self
                    .counts
                    .try_add((idx - self.offset) as usize, n, self.count))
            {
                self.insert_index_slow(idx, n);
            }
        }
        self.count = self.count.saturating_add(n);
        self.sum = saturating_sum(self.sum, v * n as f64);
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        Ok(())
    }

    /// Index, at the current scale, of the bucket [`Sketch::insert`] puts a
    /// positive finite `v` in when `v` is above the zero threshold.
    #[inline]
    pub fn index_of(&self, v: f64) -> i64 {
        map_index(v.to_bits(), self.scale, self.table)
    }

    /// Adds `n` copies of each item's value whose bucket index at `scale`
    /// the caller already knows ([`Sketch::index_of`]): the same sketch as
    /// inserting them one by one in order with [`Sketch::insert_n`], but
    /// the span grows (and the scale drops) once for all of them and no
    /// value is mapped again. Items must be in ascending order of value,
    /// each with `n > 0`; when `scale` is no longer the sketch's scale, or
    /// a value is not above the zero threshold or not finite, they are
    /// inserted one by one.
    pub fn insert_indexed(&mut self, scale: i32, items: &[Indexed]) {
        let (Some(first), Some(last)) = (items.first(), items.last()) else {
            return;
        };
        if scale != self.scale
            || first.value.partial_cmp(&self.zero_threshold) != Some(std::cmp::Ordering::Greater)
            || last.value.to_bits() >= INF_BITS
        {
            for it in items {
                let _ = self.insert_n(it.value, it.n);
            }
            return;
        }
        debug_assert!(items
            .windows(2)
            .all(|w| w[0].value <= w[1].value && w[0].index <= w[1].index));
        debug_assert!(items
            .iter()
            .all(|it| it.n > 0 && it.index == self.index_of(it.value)));
        let total = items.iter().fold(0u64, |t, it| t.saturating_add(it.n));
        self.counts.reserve(self.count, total);
        let (lo, hi) = if self.has_buckets() {
            (self.lo.min(first.index), self.hi.max(last.index))
        } else {
            (first.index, last.index)
        };
        // Inserting one by one lowers the scale by the least that fits the
        // span so far; the least that fits the whole span is the same.
        let d = needed_downscale(self.scale, self.max_buckets, lo, hi);
        self.downscale(d);
        let (lo, hi) = (lo >> d, hi >> d);
        self.ensure_covers(lo, hi);
        self.lo = lo;
        self.hi = hi;
        for it in items {
            self.counts
                .add(((it.index >> d) - self.offset) as usize, it.n);
            self.count = self.count.saturating_add(it.n);
            // In the order of the items, as one insert after the other.
            self.sum = saturating_sum(self.sum, it.value * it.n as f64);
        }
        self.min = self.min.min(first.value);
        self.max = self.max.max(last.value);
    }

    /// Merges `other` into `self`, exactly.
    ///
    /// The result's scale is the smaller of the two scales (each group of
    /// `2^d` neighbouring buckets of the finer side is added into one, which
    /// is exact), lowered further only if the union of both spans would
    /// exceed `self`'s bucket bound. Because both rules depend only on the
    /// inputs, merging many sketches (with the same bound) gives the same
    /// buckets in any order, equal to inserting every value directly at the
    /// resulting scale. Zero buckets add; the larger zero threshold
    /// wins, and buckets lying wholly at or below it (upper bound ≤
    /// threshold) move into the zero count. Count, sum, min, max and
    /// rejections combine.
    pub fn merge(&mut self, other: &Sketch) {
        let counts = other.span_counts();
        let offset = other.bucket_span().map_or(0, |(lo, _)| lo);
        debug_assert!(
            other.count == u64::MAX
                || Some(other.count)
                    == counts
                        .exact_total()
                        .and_then(|t| t.checked_add(other.zero_count)),
            "a sketch's count is its zero count plus its buckets unless saturated"
        );
        self.merge_incoming(Incoming {
            scale: other.scale,
            zero_count: other.zero_count,
            zero_threshold: other.zero_threshold,
            offset,
            counts,
            bucket_total: other.known_bucket_total(),
            sum: Some(other.sum),
            min: other.min(),
            max: other.max(),
        });
        self.rejected = self.rejected.saturating_add(other.rejected);
    }

    /// Merges the positive half of an OTLP `ExponentialHistogram` data point
    /// without converting it to values: `bucket_counts[j]` is the count of
    /// bucket `offset + j` at `scale`.
    ///
    /// This is how histograms that SDKs already aggregated join the window.
    /// The same rules as [`Sketch::merge`] apply. Negative buckets of the
    /// point are the caller's business (latencies have none). Inputs the OTel
    /// model allows but this sketch cannot hold are mapped, never refused:
    /// a scale above [`MAX_SCALE`] is shifted down exactly; a scale below
    /// [`MIN_SCALE`] lands in the top `MIN_SCALE` sub-bucket of each bucket
    /// (exact for every normal `f64`); indices beyond the `f64` range are
    /// clamped to the outermost buckets; a NaN, negative or infinite zero
    /// threshold counts as 0. When `sum` is absent (or NaN) it is estimated
    /// from the bucket midpoints; when `min` / `max` are absent (or not
    /// finite and non-negative) they are estimated as the midpoints of the
    /// outermost non-empty buckets, which keeps every quantile answer (and
    /// `min()` / `max()` themselves) within the relative error bound.
    #[allow(clippy::too_many_arguments)] // mirrors the OTLP data point fields one to one
    pub fn merge_exponential(
        &mut self,
        scale: i32,
        zero_count: u64,
        zero_threshold: f64,
        offset: i32,
        bucket_counts: &[u64],
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
    ) {
        self.merge_incoming(Incoming {
            scale,
            zero_count,
            zero_threshold,
            offset: i64::from(offset),
            counts: Src::Wide(bucket_counts),
            bucket_total: None,
            sum,
            min,
            max,
        });
    }

    /// The positive buckets as `(scale, offset, counts)`, where `counts[j]` is
    /// the count of bucket `offset + j`: exactly the OTLP
    /// `ExponentialHistogram` representation, for export and serialisation.
    ///
    /// The slice runs from the lowest to the highest non-empty bucket; it is
    /// empty (with offset 0) when no positive value was seen.
    pub fn positive_buckets(&self) -> (i32, i32, Cow<'_, [u64]>) {
        let Some(span) = self.span_positions() else {
            return (self.scale, 0, Cow::Borrowed(&[]));
        };
        // `lo` is a real bucket index, and those fit in i32 at every scale.
        let offset =
            i32::try_from(self.lo).unwrap_or(if self.lo < 0 { i32::MIN } else { i32::MAX });
        (self.scale, offset, self.counts.slice(span).to_wide())
    }

    /// Visits every non-empty bucket as `(lo, hi, count)`: its values lie in
    /// `(lo, hi]` (the zero bucket is `[0, zero_threshold]`, visited as
    /// `(0, zero_threshold]`). This is what a value is known to be from the
    /// sketch alone. The bounds are the buckets' own, never narrowed by
    /// `max`: after a merge of exponential histograms `max` may be the
    /// sender's claim or an estimate, and a decision must not rest on it.
    pub fn for_each_bucket(&self, mut f: impl FnMut(f64, f64, u64)) {
        if self.zero_count > 0 {
            f(0.0, self.zero_threshold.max(0.0), self.zero_count);
        }
        let counts = self.span_counts();
        for j in 0..counts.len() {
            let c = counts.get(j);
            if c == 0 {
                continue;
            }
            let idx = self.lo + j as i64;
            let lo = lower_bound(idx, self.scale);
            let hi = upper_bound(idx, self.scale);
            f(lo.min(hi), hi, c);
        }
    }

    /// The whole state as plain data; [`Sketch::from_parts`] rebuilds it.
    pub fn to_parts(&self) -> SketchParts<'_> {
        let (scale, offset, bucket_counts) = self.positive_buckets();
        SketchParts {
            scale,
            max_buckets: self.max_buckets,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            offset,
            bucket_counts,
            sum: self.sum,
            min: self.min(),
            max: self.max(),
            rejected: self.rejected,
        }
    }

    /// Rebuilds a sketch from [`Sketch::to_parts`] output (or from stored
    /// data in that shape): `from_parts(s.to_parts()) == s`.
    ///
    /// Data that doesn't come from `to_parts` is handled as by
    /// [`Sketch::merge_exponential`] into an empty sketch: out-of-range values
    /// are clamped, and buckets spanning more than `max_buckets` are
    /// downscaled. The count is the zero count plus the bucket counts.
    pub fn from_parts(parts: SketchParts<'_>) -> Sketch {
        let mut s = Sketch::with_params(parts.scale, parts.max_buckets);
        s.merge_incoming(Incoming {
            scale: parts.scale,
            zero_count: parts.zero_count,
            zero_threshold: parts.zero_threshold,
            offset: i64::from(parts.offset),
            counts: Src::Wide(&parts.bucket_counts),
            bucket_total: None,
            sum: Some(parts.sum),
            min: parts.min,
            max: parts.max,
        });
        s.rejected = parts.rejected;
        s
    }

    /// Number of accepted values (zero bucket included).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the accepted values, for means and OTLP export.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest accepted value; `None` when empty. Quantile answers are
    /// clamped to it, and rank 1 (q = 0) answers it exactly.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest accepted value; `None` when empty. Quantile answers are
    /// clamped to it, and the last rank (q = 1) answers it exactly.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Current scale; lower than the starting scale once the sketch had to
    /// downscale, which [`Sketch::relative_error`] reflects.
    pub fn scale(&self) -> i32 {
        self.scale
    }

    /// The bucket bound this sketch enforces.
    pub fn max_buckets(&self) -> usize {
        self.max_buckets
    }

    /// Number of values refused by `insert` (NaN, infinite, negative), so
    /// bad input is visible instead of silently dropped.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// True when no value was accepted (rejections don't count).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of buckets spanned from the lowest to the highest non-empty
    /// one (empty buckets in between included): what the bound limits.
    pub fn bucket_count(&self) -> usize {
        if self.has_buckets() {
            (self.hi - self.lo + 1) as usize
        } else {
            0
        }
    }

    /// Number of values in the zero bucket.
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// Values at or below this are counted in the zero bucket.
    pub fn zero_threshold(&self) -> f64 {
        self.zero_threshold
    }

    /// `(base - 1) / (base + 1)` at the current scale: the relative error
    /// bound every quantile answer of this sketch satisfies (the answer is
    /// the point of its bucket whose worst-case relative error is smallest).
    pub fn relative_error(&self) -> f64 {
        relative_error_at(self.scale)
    }

    /// The nearest-rank quantile `q` in `[0, 1]`: an estimate of
    /// `sorted[k - 1]` with `k = max(1, ceil(q * count))`.
    ///
    /// The answer is the point of the bucket holding rank `k` that minimises
    /// the worst relative error, `2·l·u / (l + u)` for bucket `(l, u]`,
    /// clamped into `[min, max]`; a rank in the zero bucket answers 0 (also
    /// clamped, so it is exact when the threshold is 0). Rank 1 answers
    /// `min` and rank `count` answers `max`, exactly. `None` when the
    /// sketch is empty or `q` is outside `[0, 1]` (or NaN).
    ///
    /// Guarantee: `|value - exact| <= relative_error * exact` (up to a few
    /// ulps), except for ranks in a zero bucket with a positive threshold,
    /// where the error is at most the threshold.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        let k = self.rank(q)?;
        let relative_error = self.relative_error();
        if let Some(value) = self.extreme_rank(k) {
            return Some(Quantile {
                value,
                relative_error,
            });
        }
        let cum = self.zero_count;
        if k <= cum {
            return Some(Quantile {
                value: self.clamp(0.0),
                relative_error,
            });
        }
        let mut found = [None];
        self.locate(&[k - cum], &mut found);
        Some(Quantile {
            value: self.located_answer(found[0]),
            relative_error,
        })
    }

    /// Several quantiles in one pass over the buckets; the result is in the
    /// order of `qs` (which need not be sorted), with `None` where
    /// [`Sketch::quantile`] would give `None`.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<Quantile>> {
        let mut out = vec![None; qs.len()];
        let relative_error = self.relative_error();
        let mut order = Vec::with_capacity(qs.len());
        for (i, &q) in qs.iter().enumerate() {
            let Some(k) = self.rank(q) else { continue };
            match self.extreme_rank(k) {
                Some(value) => {
                    out[i] = Some(Quantile {
                        value,
                        relative_error,
                    })
                }
                None => order.push((k, i)),
            }
        }
        if order.is_empty() {
            return out;
        }
        order.sort_unstable();
        // Ranks up to the zero bucket's count are answered by it.
        let cum = self.zero_count;
        let in_zero = order.partition_point(|&(k, _)| k <= cum);
        let zero = self.clamp(0.0);
        for &(_, i) in &order[..in_zero] {
            out[i] = Some(Quantile {
                value: zero,
                relative_error,
            });
        }
        let rest = &order[in_zero..];
        let ranks: Vec<u64> = rest.iter().map(|&(k, _)| k - cum).collect();
        let mut found = vec![None; rest.len()];
        self.locate(&ranks, &mut found);
        for (&(_, i), pos) in rest.iter().zip(found) {
            out[i] = Some(Quantile {
                value: self.located_answer(pos),
                relative_error,
            });
        }
        out
    }

    // ---- internals -------------------------------------------------------

    fn has_buckets(&self) -> bool {
        self.lo <= self.hi
    }

    /// Lowest and highest non-empty bucket indices, `None` without any.
    fn bucket_span(&self) -> Option<(i64, i64)> {
        self.has_buckets().then_some((self.lo, self.hi))
    }

    /// Positions in `counts` of the buckets `lo..=hi`, `None` without any.
    fn span_positions(&self) -> Option<RangeInclusive<usize>> {
        self.has_buckets()
            .then(|| (self.lo - self.offset) as usize..=(self.hi - self.offset) as usize)
    }

    /// The counts of `lo..=hi` (empty without buckets), as they are stored.
    fn span_counts(&self) -> Src<'_> {
        self.span_positions()
            .map_or(Src::Wide(&[]), |span| self.counts.slice(span))
    }

    /// Sum of the positive buckets without reading them: every path that
    /// adds to a bucket adds the same amount to `count` (and moving buckets
    /// into the zero bucket keeps the sum), so `count - zero_count` is exact
    /// until `count` saturates.
    fn known_bucket_total(&self) -> Option<u64> {
        (self.count < u64::MAX)
            .then(|| self.count.checked_sub(self.zero_count))
            .flatten()
    }

    /// Positions (0 is bucket `lo`) of the buckets holding the ascending
    /// `ranks`, counted after the zero bucket (rank 1 is the first value in
    /// bucket `lo`).
    fn locate(&self, ranks: &[u64], out: &mut [Option<usize>]) {
        self.span_counts().locate(ranks, out);
    }

    /// The answer for a bucket position found by [`Sketch::locate`]; `None`
    /// only when saturated counts disagree with `count`: the maximum.
    fn located_answer(&self, pos: Option<usize>) -> f64 {
        pos.map_or(self.max, |pos| self.bucket_answer(self.lo + pos as i64))
    }

    /// 1-based nearest rank for `q`, `None` if the sketch is empty or `q` is
    /// not in `[0, 1]`.
    fn rank(&self, q: f64) -> Option<u64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let k = (q * self.count as f64).ceil() as u64;
        Some(k.clamp(1, self.count))
    }

    /// Rank 1 is the minimum and rank `count` the maximum: both are tracked
    /// exactly (or, for OTLP points without them, estimated within the
    /// bound), so those ranks need no bucket.
    fn extreme_rank(&self, k: u64) -> Option<f64> {
        if k >= self.count {
            Some(self.max)
        } else if k <= 1 {
            Some(self.min)
        } else {
            None
        }
    }

    fn clamp(&self, v: f64) -> f64 {
        // Not `f64::clamp`: that panics if min > max, which malformed OTLP
        // input could cause.
        v.max(self.min).min(self.max)
    }

    fn bucket_answer(&self, idx: i64) -> f64 {
        self.clamp(bucket_midpoint(idx, self.scale))
    }

    fn set_scale(&mut self, scale: i32) {
        self.scale = scale;
        self.table = table_for(scale);
    }

    /// Rejections and `-0.0`: kept out of the hot path.
    #[cold]
    #[inline(never)]
    fn insert_special(&mut self, v: f64, n: u64) -> Result<(), RejectReason> {
        let reason = if v.is_nan() {
            RejectReason::Nan
        } else if v.is_infinite() {
            RejectReason::Infinite
        } else if v == 0.0 {
            // -0.0 is a zero latency, not a negative one.
            return self.insert_n(0.0, n);
        } else {
            RejectReason::Negative
        };
        self.rejected = self.rejected.saturating_add(n);
        Err(reason)
    }

    /// Insert into a bucket outside the current non-empty span: may
    /// downscale and (re)allocate.
    #[cold]
    #[inline(never)]
    fn insert_index_slow(&mut self, idx: i64, n: u64) {
        self.counts.reserve(self.count, n);
        let (lo, hi) = if self.has_buckets() {
            (self.lo.min(idx), self.hi.max(idx))
        } else {
            (idx, idx)
        };
        let d = needed_downscale(self.scale, self.max_buckets, lo, hi);
        self.downscale(d);
        let (idx, lo, hi) = (idx >> d, lo >> d, hi >> d);
        self.ensure_covers(lo, hi);
        self.lo = lo;
        self.hi = hi;
        self.counts.add((idx - self.offset) as usize, n);
    }

    /// Lowers the scale by `d`, adding each group of `2^d` neighbouring
    /// buckets together, in place (no allocation).
    fn downscale(&mut self, d: u32) {
        if d == 0 {
            return;
        }
        let new_offset = self.offset >> d;
        if self.has_buckets() {
            // Destinations never lie after their sources, so one ascending
            // pass moves everything without clobbering unread counts.
            // Sums of buckets never exceed `count`, so narrow adds are safe.
            for i in self.lo..=self.hi {
                let c = self.counts.take((i - self.offset) as usize);
                if c != 0 {
                    self.counts.add(((i >> d) - new_offset) as usize, c);
                }
            }
            self.lo >>= d;
            self.hi >>= d;
        }
        self.offset = new_offset;
        self.set_scale(self.scale - d as i32);
    }

    /// Makes the buffer cover indices `lo..=hi` (a span the caller already
    /// fitted into the bound), keeping the existing counts. Grows
    /// geometrically, leaving spare room on the side the span grew towards.
    fn ensure_covers(&mut self, lo: i64, hi: i64) {
        let len = self.counts.len();
        if len > 0 && lo >= self.offset && hi < self.offset + len as i64 {
            return;
        }
        let needed = (hi - lo + 1) as usize;
        // A quarter of headroom rather than doubling: a window sketch per
        // active series is most of a shard's memory, and latency spans stop
        // growing after the first few hundred values.
        let new_len = (needed + needed / 4)
            .max(len + len / 4)
            .max(MIN_ALLOC)
            .min(self.max_buckets)
            .max(needed);
        let headroom = (new_len - needed) as i64;
        let span = self.span_positions();
        let had = span.is_some();
        let new_offset = match (had && lo < self.lo, had && hi > self.hi) {
            (true, false) => lo - headroom,
            (false, true) => lo,
            _ => lo - headroom / 2,
        };
        let Some(src) = span else {
            if new_len != len {
                self.counts.reset(new_len);
            }
            self.offset = new_offset;
            return;
        };
        let dst = (self.lo - new_offset) as usize;
        self.counts.relocate(new_len, src, dst);
        self.offset = new_offset;
    }

    /// Moves buckets lying wholly at or below the zero threshold into the
    /// zero count (after the threshold rose, or a merge brought such buckets).
    fn collapse_below_threshold(&mut self) {
        if self.zero_threshold <= 0.0 {
            return;
        }
        while self.has_buckets() && upper_bound(self.lo, self.scale) <= self.zero_threshold {
            let c = self.counts.take((self.lo - self.offset) as usize);
            self.zero_count = self.zero_count.saturating_add(c);
            self.lo += 1;
            while self.lo <= self.hi && self.counts.get((self.lo - self.offset) as usize) == 0 {
                self.lo += 1;
            }
        }
        if !self.has_buckets() {
            self.lo = 1;
            self.hi = 0;
        }
    }

    /// The one merge path behind `merge`, `merge_exponential`, `from_parts`.
    fn merge_incoming(&mut self, inc: Incoming<'_>) {
        if inc.zero_threshold.is_finite() && inc.zero_threshold > self.zero_threshold {
            self.zero_threshold = inc.zero_threshold;
        }
        let span = inc.counts.non_zero_span();
        let exact = match span {
            Some((first, last)) => inc
                .bucket_total
                .or_else(|| inc.counts.slice(first..=last).exact_total()),
            None => Some(0),
        };
        let bucket_total = exact.unwrap_or(u64::MAX);
        let total = inc.zero_count.saturating_add(bucket_total);
        // Widen narrow counts before anything is added, if they must.
        self.counts.reserve(self.count, total);
        let src_scale = inc.scale;
        let target0 = self.scale.min(src_scale.clamp(MIN_SCALE, MAX_SCALE));
        // A sum of finite values may legitimately overflow to inf, so only
        // NaN counts as "not given".
        let sum_given = matches!(inc.sum, Some(s) if !s.is_nan());
        let mut estimated_sum = 0.0;
        let mut in_range = None;
        if let Some((first, last)) = span {
            let to_target0 = IndexConverter::new(src_scale, target0);
            let ilo = to_target0.convert(inc.offset + first as i64);
            let ihi = to_target0.convert(inc.offset + last as i64);
            let (lo, hi) = if self.has_buckets() {
                let d = (self.scale - target0) as u32;
                ((self.lo >> d).min(ilo), (self.hi >> d).max(ihi))
            } else {
                (ilo, ihi)
            };
            let extra = needed_downscale(target0, self.max_buckets, lo, hi);
            let target = target0 - extra as i32;
            self.downscale((self.scale - target) as u32);
            let (lo, hi) = (lo >> extra, hi >> extra);
            self.ensure_covers(lo, hi);
            self.lo = lo;
            self.hi = hi;
            let src = inc.counts.slice(first..=last);
            let base = inc.offset + first as i64;
            let end = base + src.len() as i64 - 1;
            let to_target = IndexConverter::new(src_scale, target);
            // Plain right shift when it needs no clamping at either end (and
            // so nowhere in between): every sketch-to-sketch merge.
            let shift = (src_scale >= target)
                .then(|| src_scale.saturating_sub(target).min(63) as u32)
                .filter(|&d| {
                    to_target.convert(base) == base >> d && to_target.convert(end) == end >> d
                });
            // A bucket never exceeds its sketch's count, and an incoming
            // bucket (or group of them) never exceeds the incoming total: when
            // those two add up without overflow (narrow counts were reserved
            // for it), so does every bucket, and the loops can use plain
            // adds, which vectorise.
            let cannot_overflow = exact.and_then(|t| self.count.checked_add(t)).is_some();
            match shift.filter(|_| cannot_overflow) {
                Some(0) => {
                    self.counts
                        .add_same_scale((base - self.offset) as usize, src);
                }
                Some(d) => {
                    let start = ((base >> d) - self.offset) as usize;
                    let stop = ((end >> d) - self.offset) as usize;
                    self.counts.add_downscaled(start..=stop, src, base, d);
                }
                None => {
                    for j in 0..src.len() {
                        let idx = to_target.convert(base + j as i64);
                        self.counts.add((idx - self.offset) as usize, src.get(j));
                    }
                }
            }
            if !sum_given {
                // `bucket_midpoint` with its factor and table looked up
                // once, not per bucket (the factor costs an `exp2`).
                let factor = 1.0 + relative_error_at(target);
                let table = table_for(target);
                for j in 0..src.len() {
                    let idx = to_target.convert(base + j as i64);
                    let mid = (lower_bound_with(idx, target, table) * factor)
                        .clamp(f64::from_bits(1), f64::MAX);
                    estimated_sum += src.get(j) as f64 * mid;
                }
            }
            in_range = Some((ilo >> extra, ihi >> extra));
        } else {
            self.downscale((self.scale - target0) as u32);
        }
        if total > 0 {
            self.zero_count = self.zero_count.saturating_add(inc.zero_count);
            self.count = self.count.saturating_add(total);
            self.sum = saturating_sum(
                self.sum,
                match inc.sum {
                    Some(s) if sum_given => s,
                    _ => estimated_sum,
                },
            );
            let usable = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
            // Estimates when min / max are not given: midpoints of the
            // outermost incoming buckets, which are within the relative
            // error bound of the true extremes (bucket bounds would not be).
            let (derived_min, derived_max) = match in_range {
                Some((lo, hi)) => (
                    if inc.zero_count > 0 {
                        0.0
                    } else {
                        bucket_midpoint(lo, self.scale)
                    },
                    bucket_midpoint(hi, self.scale),
                ),
                None if inc.zero_threshold.is_finite() && inc.zero_threshold > 0.0 => {
                    (0.0, inc.zero_threshold)
                }
                None => (0.0, 0.0),
            };
            self.min = self.min.min(usable(inc.min).unwrap_or(derived_min));
            self.max = self.max.max(usable(inc.max).unwrap_or(derived_max));
        }
        self.collapse_below_threshold();
    }
}

#[cfg(test)]
mod tests;

/// `a + b`, held at `f64::MAX` instead of becoming infinite: huge sums from
/// the wire (two points of 1e308) must stay finite so every stored sketch
/// can be read back, and a sum that large is meaningless anyway.
#[inline]
fn saturating_sum(a: f64, b: f64) -> f64 {
    let t = a + b;
    if t.is_finite() {
        t
    } else if t.is_nan() {
        a
    } else {
        f64::MAX.copysign(t)
    }
}
