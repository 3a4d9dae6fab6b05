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

use std::borrow::Cow;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::OnceLock;

use buckets::{Buckets, Src};

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

const FRAC_BITS: u32 = 52;
const FRAC_MASK: u64 = (1 << FRAC_BITS) - 1;
const HIDDEN_BIT: u64 = 1 << FRAC_BITS;
/// Bits of `+inf`: every bit pattern at or above it is NaN, infinite or has
/// the sign bit set, which lets `insert` reject all of them with one compare.
const INF_BITS: u64 = 0x7ff0_0000_0000_0000;
/// Scales up to this one use a lookup table (at most 64 KiB, built lazily).
const TABLE_MAX_SCALE: i32 = 12;
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
        self.sum += v * n as f64;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        Ok(())
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
                for j in 0..src.len() {
                    let idx = to_target.convert(base + j as i64);
                    estimated_sum += src.get(j) as f64 * bucket_midpoint(idx, target);
                }
            }
            in_range = Some((ilo >> extra, ihi >> extra));
        } else {
            self.downscale((self.scale - target0) as u32);
        }
        if total > 0 {
            self.zero_count = self.zero_count.saturating_add(inc.zero_count);
            self.count = self.count.saturating_add(total);
            self.sum += match inc.sum {
                Some(s) if sum_given => s,
                _ => estimated_sum,
            };
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

// ---- index mapping --------------------------------------------------------

/// Per-scale lookup for the mantissa: `bounds[j]` is the octave boundary
/// `2^(j/2^s)` as a 53-bit integer mantissa (`bounds[2^s]` is 2.0), and
/// `lookup[c]` counts the boundaries below the start of linear cell `c` (the
/// cells split `[1, 2)` into `2^(s+1)` equal parts, narrower than any gap
/// between boundaries, so a cell holds at most one boundary and one compare
/// finishes the job).
struct ScaleTable {
    shift: u32,
    bounds: Box<[u64]>,
    lookup: Box<[u32]>,
}

impl ScaleTable {
    fn build(scale: u32) -> ScaleTable {
        let per = 1usize << scale;
        let bounds: Box<[u64]> = (0..=per)
            .map(|j| {
                if j == per {
                    2 << FRAC_BITS
                } else {
                    (octave_boundary(j as u64, scale).to_bits() & FRAC_MASK) | HIDDEN_BIT
                }
            })
            .collect();
        let shift = FRAC_BITS - (scale + 1);
        let mut k = 0usize;
        let lookup = (0..2 * per as u64)
            .map(|c| {
                let start = HIDDEN_BIT | (c << shift);
                while k < per && bounds[k] < start {
                    k += 1;
                }
                k as u32
            })
            .collect();
        ScaleTable {
            shift,
            bounds,
            lookup,
        }
    }

    /// Index within the octave (`-1` for an exact power of two, which belongs
    /// to the previous octave's last bucket) of the mantissa `frac`.
    #[inline(always)]
    fn sub_index(&self, frac: u64) -> i64 {
        let k = self.lookup[(frac >> self.shift) as usize] as usize;
        let k = k + usize::from((frac | HIDDEN_BIT) > self.bounds[k]);
        k as i64 - 1
    }
}

fn table_for(scale: i32) -> Option<&'static ScaleTable> {
    static TABLES: [OnceLock<ScaleTable>; TABLE_MAX_SCALE as usize] =
        [const { OnceLock::new() }; TABLE_MAX_SCALE as usize];
    if (1..=TABLE_MAX_SCALE).contains(&scale) {
        let s = scale as u32;
        Some(TABLES[(s - 1) as usize].get_or_init(|| ScaleTable::build(s)))
    } else {
        None
    }
}

/// `2^(j / 2^scale)` for `0 <= j <= 2^scale`: the octave boundaries every
/// positive scale uses. The exponent `j / 2^scale` is an exact dyadic, so the
/// same real boundary gets the same `f64` at every scale, which is what makes
/// `index >> d` agree with the coarser mapping for every value.
fn octave_boundary(j: u64, scale: u32) -> f64 {
    let per = 1u64 << scale;
    if j == 0 {
        1.0
    } else if j >= per {
        2.0
    } else {
        (j as f64 / per as f64).exp2()
    }
}

/// Unbiased exponent and 52-bit fraction of a positive finite non-zero
/// value, with subnormals normalised.
#[inline]
fn decompose(bits: u64) -> (i64, u64) {
    let exp_field = (bits >> FRAC_BITS) as i64;
    let frac = bits & FRAC_MASK;
    if exp_field != 0 {
        (exp_field - 1023, frac)
    } else {
        let p = 63 - i64::from(frac.leading_zeros());
        (p - 1074, (frac << (52 - p)) & FRAC_MASK)
    }
}

/// Bucket index of the positive finite non-zero value with bits `bits`.
///
/// The common case (a normal value at a table scale) is a few integer
/// operations, two table reads and one compare, inlined into `insert`;
/// everything else goes out of line so that it doesn't bloat the hot path.
#[inline(always)]
fn map_index(bits: u64, scale: i32, table: Option<&ScaleTable>) -> i64 {
    let exp_field = (bits >> FRAC_BITS) as i64;
    match table {
        Some(t) if exp_field != 0 => ((exp_field - 1023) << scale) + t.sub_index(bits & FRAC_MASK),
        _ => map_index_general(bits, scale, table),
    }
}

/// [`map_index`] for subnormals and for scales without a table.
#[inline(never)]
fn map_index_general(bits: u64, scale: i32, table: Option<&ScaleTable>) -> i64 {
    let (e, frac) = decompose(bits);
    if let Some(t) = table {
        (e << scale) + t.sub_index(frac)
    } else if scale <= 0 {
        (e - i64::from(frac == 0)) >> -scale
    } else {
        (e << scale) + sub_index_exact(frac, scale as u32)
    }
}

/// Table-free version of [`ScaleTable::sub_index`] for fine scales: a `log2`
/// guess corrected against the same boundaries, so it is just as exact.
fn sub_index_exact(frac: u64, scale: u32) -> i64 {
    if frac == 0 {
        return -1;
    }
    let m = f64::from_bits(frac | (1023 << FRAC_BITS));
    let per = 1i64 << scale;
    let mut j = ((m.log2() * per as f64).floor() as i64).clamp(0, per - 1);
    while j + 1 < per && octave_boundary((j + 1) as u64, scale) < m {
        j += 1;
    }
    while j > 0 && octave_boundary(j as u64, scale) >= m {
        j -= 1;
    }
    j
}

/// Index of `v` at `scale` (test and range helper; `v` positive finite).
fn index_of(v: f64, scale: i32) -> i64 {
    map_index(v.to_bits(), scale, table_for(scale))
}

/// Indices of the smallest and largest positive `f64` at `scale`.
fn index_range(scale: i32) -> (i64, i64) {
    (
        index_of(f64::from_bits(1), scale),
        index_of(f64::MAX, scale),
    )
}

/// Maps indices at scale `from` to scale `to`, clamped into the indices of
/// real `f64` values (so malformed input can't stretch the span).
/// Coarser-to-finer (only for `from < MIN_SCALE`) picks the top sub-bucket.
struct IndexConverter {
    from: i32,
    to: i32,
    lo: i64,
    hi: i64,
}

impl IndexConverter {
    fn new(from: i32, to: i32) -> Self {
        let (lo, hi) = index_range(to);
        IndexConverter { from, to, lo, hi }
    }

    fn convert(&self, i: i64) -> i64 {
        let j = if self.from >= self.to {
            i >> self.from.saturating_sub(self.to).min(63)
        } else {
            let k = self.to.saturating_sub(self.from).min(62) as u32;
            match (i + 1).checked_mul(1 << k).and_then(|v| v.checked_sub(1)) {
                Some(v) => v,
                None if i < 0 => self.lo,
                None => self.hi,
            }
        };
        j.clamp(self.lo, self.hi)
    }
}

/// Smallest `d` such that `lo..=hi` at `scale` fits in `max_buckets` at
/// `scale - d` (never below `MIN_SCALE`).
fn needed_downscale(scale: i32, max_buckets: usize, lo: i64, hi: i64) -> u32 {
    let max_d = (scale - MIN_SCALE).max(0) as u32;
    let mut d = 0;
    while d < max_d && (hi >> d) - (lo >> d) + 1 > max_buckets as i64 {
        d += 1;
    }
    d
}

/// `2^e` for any integer `e`, 0 / `inf` outside the `f64` range.
fn pow2(e: i64) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << FRAC_BITS)
    } else if e >= -1074 {
        f64::from_bits(1 << (e + 1074))
    } else {
        0.0
    }
}

/// `x * 2^e` with a single rounding for `x` in `[1, 2]`.
fn ldexp(x: f64, e: i64) -> f64 {
    if e < -1022 {
        x * pow2(-1022) * pow2(e + 1022)
    } else if e > 1023 {
        x * pow2(1023) * pow2(e - 1023)
    } else {
        x * pow2(e)
    }
}

/// Exclusive lower bound of bucket `idx` at `scale`.
fn lower_bound(idx: i64, scale: i32) -> f64 {
    if scale <= 0 {
        pow2(idx.saturating_mul(1 << -scale))
    } else {
        let per = 1i64 << scale;
        ldexp(
            octave_boundary((idx & (per - 1)) as u64, scale as u32),
            idx >> scale,
        )
    }
}

/// Inclusive upper bound of bucket `idx` at `scale`.
fn upper_bound(idx: i64, scale: i32) -> f64 {
    lower_bound(idx + 1, scale)
}

/// `2·l·u / (l + u)` of bucket `(l, u]`, the point with the smallest worst
/// relative error. Computed as `l · 2·base / (base + 1)`, which is
/// `l · (1 + relative_error)`: accurate even at fine scales, and right where
/// `u` (but not the midpoint) overflows. Clamped into the positive finite
/// `f64` range, which every value of the bucket lies in.
fn bucket_midpoint(idx: i64, scale: i32) -> f64 {
    let factor = 1.0 + relative_error_at(scale);
    (lower_bound(idx, scale) * factor).clamp(f64::from_bits(1), f64::MAX)
}

/// `(base - 1) / (base + 1)` with `base = 2^(2^-scale)`, accurate at fine
/// scales and 1 where `base` overflows.
fn relative_error_at(scale: i32) -> f64 {
    let em1 = (std::f64::consts::LN_2 * (-f64::from(scale)).exp2()).exp_m1();
    if em1.is_finite() {
        em1 / (em1 + 2.0)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sketch_of(values: &[f64], scale: i32, max_buckets: usize) -> Sketch {
        let mut s = Sketch::with_params(scale, max_buckets);
        for &v in values {
            s.insert(v).expect("valid value");
        }
        s
    }

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        let n = sorted.len() as u64;
        let k = ((q * n as f64).ceil() as u64).clamp(1, n);
        sorted[(k - 1) as usize]
    }

    fn assert_within(s: &Sketch, sorted: &[f64], q: f64) {
        let exact = exact_quantile(sorted, q);
        let got = s.quantile(q).expect("non-empty sketch");
        assert_eq!(got.relative_error, s.relative_error());
        let tol = got.relative_error * exact + 1e-12 * exact;
        assert!(
            (got.value - exact).abs() <= tol,
            "q={q} exact={exact} got={} bound={} scale={}",
            got.value,
            got.relative_error,
            s.scale()
        );
    }

    fn sorted(values: &[f64]) -> Vec<f64> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v
    }

    #[test]
    fn powers_of_two_are_upper_bounds() {
        for scale in [-2, 0, 3, 6, 10] {
            for k in -1074i64..=1023 {
                let v = pow2(k);
                let idx = index_of(v, scale);
                let (lo, hi) = (lower_bound(idx, scale), upper_bound(idx, scale));
                // Bounds below the normal range round to subnormals, so the
                // exclusive lower bound may round up to `v` itself there.
                let lo_ok = lo < v || (lo == v && v < f64::MIN_POSITIVE);
                assert!(lo_ok && v <= hi, "scale {scale} 2^{k}: ({lo:e}, {hi:e}]");
                if scale >= 0 {
                    assert_eq!(idx, (k << scale) - 1, "scale {scale} 2^{k}");
                    assert_eq!(hi, v, "scale {scale}: 2^{k} is an upper bound");
                } else if k.rem_euclid(1 << -scale) == 0 {
                    assert_eq!(hi, v, "scale {scale}: 2^{k} is an upper bound");
                }
                // Among subnormals, neighbouring values can be buckets apart.
                if k > -1022 && k < 1023 {
                    let above = v.next_up();
                    let below = v.next_down();
                    let up_idx = index_of(above, scale);
                    assert_eq!(index_of(below, scale), idx, "just below 2^{k}");
                    assert!(
                        lower_bound(up_idx, scale) < above && above <= upper_bound(up_idx, scale)
                    );
                    if scale >= 0 || hi == v {
                        assert_eq!(up_idx, idx + 1, "just above 2^{k} at scale {scale}");
                    } else {
                        assert_eq!(up_idx, idx, "just above 2^{k} at scale {scale}");
                    }
                }
            }
        }
    }

    #[test]
    fn known_indices() {
        assert_eq!(index_of(1.0, 0), -1);
        assert_eq!(index_of(1.5, 0), 0);
        assert_eq!(index_of(3.0, 0), 1);
        assert_eq!(index_of(4.0, 0), 1);
        assert_eq!(index_of(4.0, -1), 0);
        assert_eq!(index_of(5.0, -1), 1);
        assert_eq!(index_of(16.0, -2), 0);
        assert_eq!(index_of(17.0, -2), 1);
        // sqrt(2) is a bucket boundary at scale 1; 1.5 lies above it.
        assert_eq!(index_of(1.4, 1), 0);
        assert_eq!(index_of(1.5, 1), 1);
        // At scale 3, 1.1 is in (2^(1/8), 2^(2/8)] = (1.0905, 1.1892].
        assert_eq!(index_of(1.1, 3), 1);
        assert_eq!(index_of(0.5, 3), -9);
        // 1000 = 2^9.9658; at scale 6: floor(9.9658 * 64) = 637.
        assert_eq!(index_of(1000.0, 6), 637);
        assert_eq!(
            index_of(1000.0, 10),
            (1000f64.log2() * 1024.0).floor() as i64
        );
        // Subnormals.
        assert_eq!(index_of(f64::from_bits(1), 6), -1074 * 64 - 1);
        assert_eq!(index_of(f64::from_bits(3), 0), -1073);
        assert_eq!(index_range(-10), (-2, 0));
        assert_eq!(index_range(20).1, (1024 << 20) - 1);
    }

    #[test]
    fn boundaries_are_consistent_across_scales() {
        // Values on and around every boundary of scale 12, mapped at every
        // scale: the coarser index is always the finer one shifted.
        let mut values = Vec::new();
        for j in 0..4096u64 {
            let b = octave_boundary(j, 12);
            for e in [-3i64, 0, 5] {
                let v = ldexp(b, e);
                values.extend([v, v.next_up(), v.next_down()]);
            }
        }
        for &v in &values {
            let fine = index_of(v, 20);
            for scale in MIN_SCALE..=MAX_SCALE {
                let idx = index_of(v, scale);
                assert_eq!(fine >> (20 - scale), idx, "v={v} scale={scale}");
                assert!(lower_bound(idx, scale) < v && v <= upper_bound(idx, scale));
            }
        }
    }

    #[test]
    fn table_matches_exact_mapping() {
        for scale in 1..=TABLE_MAX_SCALE {
            let t = table_for(scale).expect("table scale");
            let cell = 1u64 << t.shift;
            for w in t.bounds.windows(2) {
                assert!(w[1] - w[0] > cell, "cells narrower than boundary gaps");
            }
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let frac = x & FRAC_MASK;
                assert_eq!(t.sub_index(frac), sub_index_exact(frac, scale as u32));
            }
            for j in 0..(1u64 << scale) {
                let b = octave_boundary(j, scale as u32).to_bits() & FRAC_MASK;
                for frac in [b, b + 1, b.saturating_sub(1)] {
                    let frac = frac & FRAC_MASK;
                    assert_eq!(t.sub_index(frac), sub_index_exact(frac, scale as u32));
                }
            }
        }
    }

    #[test]
    fn relative_error_values() {
        let s = Sketch::new();
        let base = 2f64.powf(1.0 / 64.0);
        assert!((s.relative_error() - (base - 1.0) / (base + 1.0)).abs() < 1e-15);
        assert!((s.relative_error() - 0.005_415).abs() < 1e-5);
        assert!((relative_error_at(0) - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(relative_error_at(-10), 1.0);
        assert!(relative_error_at(20) > 0.0 && relative_error_at(20) < 4e-7);
    }

    #[test]
    fn empty_sketch() {
        let s = Sketch::new();
        assert!(s.is_empty());
        assert_eq!(s.count(), 0);
        assert_eq!(s.min(), None);
        assert_eq!(s.max(), None);
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.quantiles(&[0.5, 0.9]), vec![None, None]);
        assert_eq!(s.bucket_count(), 0);
        assert_eq!(s.positive_buckets(), (6, 0, Cow::Borrowed(&[][..])));
        assert_eq!(s.scale(), DEFAULT_SCALE);
        assert_eq!(s, Sketch::default());
    }

    #[test]
    fn small_known_dataset() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = sketch_of(&values, 6, 2048);
        assert_eq!(s.count(), 100);
        assert_eq!(s.sum(), 5050.0);
        assert_eq!(s.min(), Some(1.0));
        assert_eq!(s.max(), Some(100.0));
        assert_eq!(s.quantile(0.0).map(|q| q.value), Some(1.0));
        assert_eq!(s.quantile(1.0).map(|q| q.value), Some(100.0));
        for q in [0.01, 0.1, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999] {
            assert_within(&s, &values, q);
        }
        let p50 = s.quantile(0.5).expect("non-empty").value;
        assert!((p50 - 50.0).abs() <= 50.0 * s.relative_error());
        assert_eq!(s.quantile(-0.1), None);
        assert_eq!(s.quantile(1.1), None);
        assert_eq!(s.quantile(f64::NAN), None);
        let many = s.quantiles(&[0.99, 0.5, 2.0, 0.0]);
        assert_eq!(many[0], s.quantile(0.99));
        assert_eq!(many[1], s.quantile(0.5));
        assert_eq!(many[2], None);
        assert_eq!(many[3], s.quantile(0.0));
    }

    #[test]
    fn single_value_is_exact() {
        let s = sketch_of(&[0.123], 6, 2048);
        for q in [0.0, 0.5, 1.0] {
            assert_eq!(s.quantile(q).map(|q| q.value), Some(0.123));
        }
    }

    #[test]
    fn zero_values() {
        let mut s = Sketch::new();
        for v in [0.0, -0.0, 0.0, 5.0] {
            s.insert(v).expect("zero is valid");
        }
        assert_eq!(s.zero_count(), 3);
        assert_eq!(s.count(), 4);
        assert_eq!(s.bucket_count(), 1);
        assert_eq!(s.quantile(0.5).map(|q| q.value), Some(0.0));
        assert_eq!(s.quantile(0.75).map(|q| q.value), Some(0.0));
        assert_eq!(s.quantile(1.0).map(|q| q.value), Some(5.0));
        assert_eq!(s.min(), Some(0.0));
    }

    #[test]
    fn zero_threshold() {
        let mut s = Sketch::new().with_zero_threshold(0.01);
        for v in [0.001, 0.01, 0.5, 2.0] {
            s.insert(v).expect("valid");
        }
        assert_eq!(s.zero_count(), 2);
        // Rank 2 is in the zero bucket: 0 clamped to the minimum.
        assert_eq!(s.quantile(0.5).map(|q| q.value), Some(0.001));
        // Raising the threshold moves buckets wholly under it.
        let s = s.with_zero_threshold(1.0);
        assert_eq!(s.zero_count(), 3);
        assert_eq!(s.bucket_count(), 1);
        assert_eq!(s.count(), 4);
        // Merging: the larger threshold wins, and the other side's low
        // buckets move into the zero count.
        let mut a = sketch_of(&[0.2, 0.3, 8.0], 6, 2048);
        let b = Sketch::new().with_zero_threshold(0.5);
        a.merge(&b);
        assert_eq!(a.zero_threshold(), 0.5);
        assert_eq!(a.zero_count(), 2);
        assert_eq!(a.count(), 3);
        // Invalid thresholds are ignored.
        let s = Sketch::new()
            .with_zero_threshold(f64::NAN)
            .with_zero_threshold(-1.0);
        assert_eq!(s.zero_threshold(), 0.0);
    }

    #[test]
    fn rejections_are_counted_not_inserted() {
        let mut s = Sketch::new();
        assert_eq!(s.insert(f64::NAN), Err(RejectReason::Nan));
        assert_eq!(s.insert(-f64::NAN), Err(RejectReason::Nan));
        assert_eq!(s.insert(f64::INFINITY), Err(RejectReason::Infinite));
        assert_eq!(s.insert(f64::NEG_INFINITY), Err(RejectReason::Infinite));
        assert_eq!(s.insert(-1.0), Err(RejectReason::Negative));
        assert_eq!(s.insert(-f64::MIN_POSITIVE), Err(RejectReason::Negative));
        assert_eq!(s.insert_n(-2.0, 10), Err(RejectReason::Negative));
        assert_eq!(s.rejected(), 16);
        assert!(s.is_empty());
        assert_eq!(s.sum(), 0.0);
        assert_eq!(s.bucket_count(), 0);
        assert_eq!(s.quantile(0.5), None);
        s.insert(1.0).expect("valid");
        assert_eq!(s.count(), 1);
        assert_eq!(s.rejected(), 16);
        assert_eq!(RejectReason::Nan.to_string(), "value is NaN");
    }

    #[test]
    fn insert_n_and_extremes() {
        let mut s = Sketch::new();
        s.insert_n(3.0, 5).expect("valid");
        s.insert_n(7.0, 0).expect("valid");
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum(), 15.0);
        assert_eq!(s.max(), Some(3.0));
        s.insert(f64::MAX).expect("valid");
        s.insert(f64::MIN_POSITIVE).expect("valid");
        s.insert(f64::from_bits(1)).expect("valid");
        assert!(
            s.scale() < DEFAULT_SCALE,
            "2048 buckets can't span 2^-1074..2^1024 at scale 6"
        );
        assert!(s.bucket_count() <= 2048);
        assert_eq!(s.quantile(1.0).map(|q| q.value), Some(f64::MAX));
        assert_eq!(s.quantile(0.0).map(|q| q.value), Some(f64::from_bits(1)));
        s.insert_n(3.0, u64::MAX).expect("valid");
        assert_eq!(s.count(), u64::MAX);
    }

    #[test]
    fn downscales_when_span_exceeds_bound() {
        let mut s = Sketch::with_params(6, 160);
        let err6 = s.relative_error();
        let values = [1e-3, 1e9, 0.5, 42.0, 1e6];
        for v in values {
            s.insert(v).expect("valid");
        }
        assert!(s.scale() < 6);
        assert!(s.bucket_count() <= 160);
        assert!(s.relative_error() > err6);
        // Minimal downscale: one more step of scale would not fit.
        let lo = index_of(1e-3, s.scale() + 1);
        let hi = index_of(1e9, s.scale() + 1);
        assert!(hi - lo + 1 > 160);
        let sorted = sorted(&values);
        for q in [0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0] {
            assert_within(&s, &sorted, q);
        }
        // Buffer never exceeds the bound.
        assert!(s.counts.len() <= 160);
        assert_eq!(s, sketch_of(&values, s.scale(), 160));
    }

    #[test]
    fn merge_of_different_scales_is_exact() {
        let a_vals: Vec<f64> = (1..500).map(|i| f64::from(i) * 0.37).collect();
        let b_vals: Vec<f64> = (1..300).map(|i| 1.0 / f64::from(i)).collect();
        let mut a = sketch_of(&a_vals, 8, 2048);
        let b = sketch_of(&b_vals, 3, 2048);
        a.merge(&b);
        assert_eq!(a.scale(), 3);
        let mut all = a_vals.clone();
        all.extend(&b_vals);
        let direct = sketch_of(&all, 3, 2048);
        assert_eq!(a.positive_buckets(), direct.positive_buckets());
        assert_eq!(a.count(), direct.count());
        assert_eq!(a.min(), direct.min());
        assert_eq!(a.max(), direct.max());
        assert!((a.sum() - direct.sum()).abs() <= 1e-9 * direct.sum());
        // Commutes.
        let mut b2 = sketch_of(&b_vals, 3, 2048);
        b2.merge(&sketch_of(&a_vals, 8, 2048));
        assert_eq!(b2.positive_buckets(), a.positive_buckets());
        let sorted = sorted(&all);
        for q in [0.1, 0.5, 0.9, 0.99] {
            assert_within(&a, &sorted, q);
        }
    }

    #[test]
    fn merge_downscales_to_fit() {
        let mut a = sketch_of(&[1e-3, 1.0], 6, 1024);
        let b = sketch_of(&[1e6], 6, 1024);
        a.merge(&b);
        assert!(a.bucket_count() <= 1024);
        assert_eq!(a.scale(), 5);
        assert_eq!(a, sketch_of(&[1e-3, 1.0, 1e6], 5, 1024));
    }

    #[test]
    fn merge_with_empty_and_rejections() {
        let mut a = sketch_of(&[1.0, 2.0], 6, 2048);
        let mut e = Sketch::with_params(4, 2048);
        let _ = e.insert(f64::NAN);
        a.merge(&e);
        assert_eq!(a.count(), 2);
        assert_eq!(a.rejected(), 1);
        assert_eq!(a.scale(), 4);
        let mut e2 = Sketch::new();
        e2.merge(&a);
        assert_eq!(e2.positive_buckets(), a.positive_buckets());
        assert_eq!(e2.min(), Some(1.0));
    }

    #[test]
    fn merge_exponential_matches_merge() {
        let vals: Vec<f64> = (1..1000).map(|i| f64::from(i).powf(1.7) * 1e-3).collect();
        let src = sketch_of(&vals, 9, 4096);
        let (scale, offset, counts) = src.positive_buckets();
        let mut a = Sketch::new();
        a.merge_exponential(
            scale,
            3,
            0.0,
            offset,
            &counts,
            Some(src.sum()),
            src.min(),
            src.max(),
        );
        let mut b = Sketch::new();
        b.merge(&src);
        let _ = b.insert_n(0.0, 3);
        assert_eq!(a.positive_buckets(), b.positive_buckets());
        assert_eq!(a.count(), b.count());
        assert_eq!(a.zero_count(), 3);
        // Without sum/min/max: estimated, and quantiles stay within bounds.
        let mut c = Sketch::new();
        c.merge_exponential(scale, 0, 0.0, offset, &counts, None, None, None);
        let est = c.sum();
        assert!((est - src.sum()).abs() <= c.relative_error() * src.sum() + 1e-9);
        let sorted = sorted(&vals);
        for q in [0.0, 0.5, 0.95, 1.0] {
            assert_within(&c, &sorted, q);
        }
    }

    #[test]
    fn merge_exponential_odd_inputs() {
        // Scale 20 data shifts down exactly to the sketch's scale.
        let mut a = Sketch::new();
        let i20 = i32::try_from(index_of(3.0, 20)).expect("fits");
        a.merge_exponential(20, 0, 0.0, i20, &[2], None, None, None);
        assert_eq!(
            a.positive_buckets(),
            (
                6,
                i32::try_from(index_of(3.0, 6)).expect("fits"),
                Cow::Borrowed(&[2][..])
            )
        );
        // Scale 30 (finer than supported) shifts down exactly.
        let mut a30 = Sketch::new();
        a30.merge_exponential(30, 0, 0.0, i20 << 10, &[1, 1], None, None, None);
        assert_eq!(
            a30.positive_buckets(),
            (
                6,
                i32::try_from(index_of(3.0, 6)).expect("fits"),
                Cow::Borrowed(&[2][..])
            )
        );
        // Scale -20 (coarser than supported) folds to MIN_SCALE.
        let mut b = Sketch::new();
        b.merge_exponential(-20, 0, 0.0, -1, &[1, 1], None, None, None);
        assert_eq!(b.scale(), MIN_SCALE);
        assert_eq!(
            b.positive_buckets(),
            (MIN_SCALE, -1, Cow::Borrowed(&[1, 1][..]))
        );
        // Absurd offsets are clamped, not allowed to blow the bound.
        let mut c = Sketch::with_params(6, 8);
        c.merge_exponential(6, 0, 0.0, i32::MIN, &[1], None, None, None);
        c.merge_exponential(6, 0, 0.0, i32::MAX, &[1, 0, 0], None, None, None);
        assert!(c.bucket_count() <= 8);
        assert_eq!(c.count(), 2);
        // Extreme scales don't overflow.
        let mut f = Sketch::new();
        f.merge_exponential(i32::MAX, 0, 0.0, 5, &[1], None, None, None);
        f.merge_exponential(i32::MIN, 0, 0.0, -1, &[1], None, None, None);
        assert_eq!(f.scale(), MIN_SCALE);
        assert_eq!(f.count(), 2);
        // Garbage thresholds and min > max don't panic.
        let mut d = Sketch::new();
        d.merge_exponential(
            6,
            1,
            f64::NAN,
            0,
            &[0, 4, 0],
            Some(f64::NAN),
            Some(9.0),
            Some(1.0),
        );
        assert_eq!(d.count(), 5);
        assert!(d.quantile(0.5).is_some());
        assert_eq!(d.positive_buckets().2, &[4][..]);
        // Empty points change nothing but the scale ceiling.
        let mut e = sketch_of(&[1.0], 6, 2048);
        e.merge_exponential(20, 0, 0.0, 0, &[], None, None, None);
        assert_eq!(e, sketch_of(&[1.0], 6, 2048));
    }

    fn is_wide(s: &Sketch) -> bool {
        matches!(s.counts, Buckets::Wide(_))
    }

    #[test]
    fn counts_widen_before_u32_overflow() {
        let narrow_max = u64::from(u32::MAX);
        let mut s = Sketch::new();
        s.insert_n(3.0, narrow_max - 1).expect("valid");
        s.insert(3.0).expect("valid");
        assert!(!is_wide(&s), "a total of u32::MAX still fits");
        s.insert(3.0).expect("valid");
        assert!(is_wide(&s));
        assert_eq!(s.count(), narrow_max + 1);
        assert_eq!(s.positive_buckets().2, &[narrow_max + 1][..]);

        // Same-scale merge of two narrow sketches past u32::MAX.
        let mut a = Sketch::new();
        a.insert_n(5.0, 3_000_000_000).expect("valid");
        a.insert_n(7.0, 10).expect("valid");
        a.insert_n(0.0, 4).expect("valid");
        let b = a.clone();
        assert!(!is_wide(&a));
        a.merge(&b);
        assert!(is_wide(&a));
        assert_eq!(a.count(), 6_000_000_028);
        assert_eq!(a.zero_count(), 8);
        let (_, _, counts) = a.positive_buckets();
        assert_eq!(counts.first(), Some(&6_000_000_000));
        assert_eq!(counts.last(), Some(&20));
        assert_eq!(counts.iter().sum::<u64>(), 6_000_000_020);
        let q = a.quantile(0.5).expect("non-empty");
        assert!((q.value - 5.0).abs() <= q.relative_error * 5.0);

        // Downscaling merge of narrow into narrow past u32::MAX.
        let mut fine = Sketch::with_params(8, 2048);
        fine.insert_n(5.0, 3_000_000_000).expect("valid");
        let mut coarse = Sketch::with_params(6, 2048);
        coarse.insert_n(5.0, 3_000_000_000).expect("valid");
        coarse.merge(&fine);
        assert_eq!(coarse.positive_buckets().2, &[6_000_000_000][..]);

        // A wide sketch merged into a narrow one widens it first.
        let mut n = Sketch::new();
        n.insert(5.0).expect("valid");
        n.merge(&coarse);
        assert!(is_wide(&n));
        assert_eq!(n.positive_buckets().2, &[6_000_000_001][..]);

        // Wide sketches survive the parts round trip.
        assert_eq!(Sketch::from_parts(n.to_parts()), n);
    }

    #[test]
    fn hostile_counts_saturate_instead_of_wrapping() {
        let mut s = Sketch::new();
        s.insert(bucket_midpoint(1, 6)).expect("valid");
        s.merge_exponential(6, 0, 0.0, 0, &[u64::MAX, 1, u64::MAX], None, None, None);
        assert_eq!(s.count(), u64::MAX);
        assert_eq!(s.positive_buckets().2, &[u64::MAX, 2, u64::MAX][..]);
        s.merge_exponential(6, 0, 0.0, 0, &[5, 5, 5], None, None, None);
        assert_eq!(s.positive_buckets().2, &[u64::MAX, 7, u64::MAX][..]);
        // Large but summable counts into a narrow sketch: exact.
        let mut n = Sketch::new();
        n.insert(bucket_midpoint(1, 6)).expect("valid");
        n.merge_exponential(6, 0, 0.0, 0, &[1 << 40, 1, 1 << 40], None, None, None);
        assert_eq!(n.count(), (1 << 41) + 2);
        assert_eq!(n.positive_buckets().2, &[1 << 40, 2, 1 << 40][..]);
    }

    #[test]
    fn huge_zero_counts_keep_quantiles_in_their_buckets() {
        let mut s = Sketch::new();
        s.insert_n(1.0, 5000).expect("valid");
        s.insert_n(2.0, 5).expect("valid");
        s.insert_n(0.0, u64::MAX - 3000).expect("valid");
        assert!(is_wide(&s), "a count past u32::MAX widens, zeros included");
        assert_eq!(s.count(), u64::MAX);
        // Rank u64::MAX - 2047 lies among the 1.0s, past the zero bucket.
        let q = 1.0 - f64::EPSILON / 2.0;
        let expected = s.bucket_answer(index_of(1.0, s.scale()));
        assert_eq!(s.quantile(q).map(|a| a.value), Some(expected));
        assert_eq!(s.quantiles(&[q])[0].map(|a| a.value), Some(expected));
        // The same walk over narrow counts with a zero bucket in front.
        let mut n = Sketch::new();
        n.insert_n(0.0, 1000).expect("valid");
        n.insert_n(1.0, 10).expect("valid");
        n.insert_n(2.0, 10).expect("valid");
        assert!(!is_wide(&n));
        let one = n.bucket_answer(index_of(1.0, 6));
        let two = n.bucket_answer(index_of(2.0, 6));
        let at = |k: u64| k as f64 / n.count() as f64;
        assert_eq!(n.quantile(at(1000)).map(|a| a.value), Some(0.0));
        assert_eq!(n.quantile(at(1001)).map(|a| a.value), Some(one));
        assert_eq!(n.quantile(at(1010)).map(|a| a.value), Some(one));
        assert_eq!(n.quantile(at(1011)).map(|a| a.value), Some(two));
        let many: Vec<f64> = n
            .quantiles(&[at(1011), at(1000), at(1001)])
            .into_iter()
            .map(|a| a.expect("in range").value)
            .collect();
        assert_eq!(many, [two, 0.0, one]);
    }

    #[test]
    fn far_coarser_scales_clamp_instead_of_overflowing() {
        // (-1025 + 1) * 2^53 is exactly i64::MIN: one less would overflow.
        let mut s = Sketch::new();
        s.merge_exponential(-63, 0, 0.0, -1025, &[1], None, None, None);
        assert_eq!(s.count(), 1);
        let (lo, _) = index_range(s.scale());
        assert_eq!(i64::from(s.positive_buckets().1), lo);
        let v = s.quantile(0.5).expect("non-empty").value;
        assert!(v < f64::MIN_POSITIVE, "a tiny bucket stays tiny, got {v:e}");
    }

    #[test]
    fn parts_round_trip() {
        let mut s = sketch_of(&[0.0, 1.5, 2.5, 1e3, 1e-2], 7, 512).with_zero_threshold(1e-9);
        let _ = s.insert(f64::NAN);
        let back = Sketch::from_parts(s.to_parts());
        assert_eq!(back, s);
        let e = Sketch::with_params(3, 100);
        assert_eq!(Sketch::from_parts(e.to_parts()), e);
    }

    #[test]
    fn with_params_clamps() {
        let s = Sketch::with_params(99, 0);
        assert_eq!(s.scale(), MAX_SCALE);
        assert_eq!(s.max_buckets(), MIN_MAX_BUCKETS);
        let s = Sketch::with_params(-99, usize::MAX);
        assert_eq!(s.scale(), MIN_SCALE);
        assert_eq!(s.max_buckets(), MAX_MAX_BUCKETS);
    }

    #[test]
    fn fine_scales_without_table() {
        let values: Vec<f64> = (0..2000).map(|i| 1.0 + f64::from(i) * 0.001).collect();
        let s = sketch_of(&values, 16, 1 << 18);
        assert_eq!(s.scale(), 16);
        let sorted = sorted(&values);
        for q in [0.1, 0.5, 0.99] {
            assert_within(&s, &sorted, q);
        }
        let mut coarse = Sketch::with_params(6, 2048);
        coarse.merge(&s);
        assert_eq!(
            coarse.positive_buckets(),
            sketch_of(&values, 6, 2048).positive_buckets()
        );
    }

    #[test]
    fn very_coarse_scale_answers() {
        let values = [1e-300, 1e-5, 3.0, 1e300];
        let s = sketch_of(&values, MIN_SCALE, 4);
        assert_eq!(s.relative_error(), 1.0);
        let sorted = sorted(&values);
        for q in [0.0, 0.3, 0.5, 0.7, 1.0] {
            assert_within(&s, &sorted, q);
        }
    }

    // ---- property tests --------------------------------------------------

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(cases)
        }
    }

    /// Log-uniform over nine decades, with some exact zeros.
    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            1 => Just(0.0),
            19 => (-3.0f64..6.0).prop_map(|e| 10f64.powf(e)),
        ]
    }

    proptest! {
        #![proptest_config(config(96))]

        #[test]
        fn quantiles_within_bound(
            values in prop::collection::vec(value(), 1..1500),
            q in 0.0f64..=1.0,
            scale in 0i32..=8,
        ) {
            let s = sketch_of(&values, scale, 2048);
            let sorted = sorted(&values);
            let qs = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0, q];
            let many = s.quantiles(&qs);
            for (i, &q) in qs.iter().enumerate() {
                assert_within(&s, &sorted, q);
                prop_assert_eq!(many[i], s.quantile(q));
            }
        }

        #[test]
        fn merge_in_any_order_equals_direct(
            items in prop::collection::vec((value(), 0usize..5), 0..1500),
            scales in prop::collection::vec(2i32..=8, 5),
            order_keys in prop::collection::vec(any::<u32>(), 5),
        ) {
            let mut parts: Vec<Sketch> =
                scales.iter().map(|&s| Sketch::with_params(s, 2048)).collect();
            for &(v, p) in &items {
                parts[p].insert(v).expect("valid");
            }
            let mut order: Vec<usize> = (0..5).collect();
            order.sort_by_key(|&i| order_keys[i]);
            let mut merged = parts[order[0]].clone();
            for &i in &order[1..] {
                merged.merge(&parts[i]);
            }
            let values: Vec<f64> = items.iter().map(|&(v, _)| v).collect();
            let direct = sketch_of(&values, merged.scale(), 2048);
            prop_assert_eq!(direct.scale(), merged.scale());
            prop_assert_eq!(merged.positive_buckets(), direct.positive_buckets());
            prop_assert_eq!(merged.count(), direct.count());
            prop_assert_eq!(merged.zero_count(), direct.zero_count());
            prop_assert_eq!(merged.min(), direct.min());
            prop_assert_eq!(merged.max(), direct.max());
            prop_assert!((merged.sum() - direct.sum()).abs() <= 1e-9 * direct.sum());
            if !values.is_empty() {
                let sorted = sorted(&values);
                for q in [0.5, 0.9, 0.99, 1.0] {
                    assert_within(&merged, &sorted, q);
                }
            }
        }

        #[test]
        fn large_counts_merge_exactly(
            items in prop::collection::vec((value(), 0u64..(1 << 34), 0usize..4), 0..60),
            scales in prop::collection::vec(2i32..=8, 4),
            order_keys in prop::collection::vec(any::<u32>(), 4),
        ) {
            // Multiplicities up to 2^34 push parts and merges across the
            // narrow/wide boundary at every point of the merge order.
            let mut parts: Vec<Sketch> =
                scales.iter().map(|&s| Sketch::with_params(s, 2048)).collect();
            for &(v, n, p) in &items {
                parts[p].insert_n(v, n).expect("valid");
            }
            let mut order: Vec<usize> = (0..4).collect();
            order.sort_by_key(|&i| order_keys[i]);
            let mut merged = parts[order[0]].clone();
            for &i in &order[1..] {
                merged.merge(&parts[i]);
            }
            let mut direct = Sketch::with_params(merged.scale(), 2048);
            for &(v, n, _) in &items {
                direct.insert_n(v, n).expect("valid");
            }
            prop_assert_eq!(direct.scale(), merged.scale());
            prop_assert_eq!(merged.positive_buckets(), direct.positive_buckets());
            prop_assert_eq!(merged.count(), direct.count());
            prop_assert_eq!(merged.zero_count(), direct.zero_count());
            prop_assert_eq!(is_wide(&merged), merged.count() > u64::from(u32::MAX));
        }

        #[test]
        fn small_bounds_force_downscaling(
            values in prop::collection::vec(value(), 1..600),
            extra in prop::collection::vec(value(), 0..300),
            max_buckets in 4usize..80,
            scale in 0i32..=12,
            q in 0.0f64..=1.0,
        ) {
            let mut s = sketch_of(&values, scale, max_buckets);
            s.merge(&sketch_of(&extra, MAX_SCALE, max_buckets));
            prop_assert!(s.bucket_count() <= max_buckets);
            prop_assert!(s.counts.len() <= max_buckets);
            let mut all = values.clone();
            all.extend(&extra);
            let sorted = sorted(&all);
            for q in [0.0, 0.5, 0.95, 1.0, q] {
                assert_within(&s, &sorted, q);
            }
            let direct = sketch_of(&all, s.scale(), max_buckets);
            prop_assert_eq!(s.positive_buckets(), direct.positive_buckets());
        }
    }
}
