//! What one window of one series accumulated: request counts and the
//! latency sketch, and how OTLP histogram points are added to it. Windows
//! (shards), runs (cumulative figures) and the probe all accumulate the same
//! way, so the type lives here, below every stage.

use crate::sketch::{Edges, Indexed, Sketch};

use super::point::{Buckets, LatencyUnit, PointKind, PointLatency};
use super::Sample;

/// What one window of one series accumulated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accum {
    /// Latency sketch, in `unit` (milliseconds for spans; a metric's own
    /// unit for histogram points, so their buckets merge exactly).
    pub latency: Sketch,
    /// Requests seen.
    pub samples: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Requests that converted.
    pub conversions: u64,
    /// Unit of the sketch's values.
    pub unit: LatencyUnit,
    /// Set once explicit-bucket histograms were spread into the sketch: the
    /// quantiles are then approximate, within the width of their bucket.
    pub spread: Option<Spread>,
    /// Relative error added by re-bucketing data of another unit (0 when
    /// every input had the sketch's unit, the normal case).
    pub extra_relative_error: f64,
}

/// What is known about explicit buckets spread into a sketch, for the bound
/// of a quantile answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// Bounds present in every spread histogram (in the sketch's unit): a
    /// bucket between two of them contains the bucket of each point.
    pub bounds: Vec<f64>,
    /// Some point had counts below its first bound and no `min`.
    pub open_below: bool,
    /// Some point had counts above its last bound and no `max`: answers up
    /// there have no bound.
    pub open_above: bool,
}

/// Keeps the bounds of `kept` that `bounds` has too. Both are strictly
/// increasing (the receiver checks a point's bounds, and a kept list only
/// loses bounds), so each is looked up by binary search: O(n log m), where
/// a scan per bound made a point of 4096 bounds cost 16 million
/// comparisons in its shard. Lists that are not increasing (never from
/// the receiver) are compared bound by bound.
fn retain_shared(kept: &mut Vec<f64>, bounds: &[f64]) {
    if kept.as_slice() == bounds {
        // Every point of a series usually has the same bounds.
        return;
    }
    if bounds.is_sorted_by(|a, b| a < b) {
        kept.retain(|b| {
            bounds
                .binary_search_by(|x| x.partial_cmp(b).unwrap_or(std::cmp::Ordering::Less))
                .is_ok()
        });
    } else {
        kept.retain(|b| bounds.contains(b));
    }
}

/// Latencies above a threshold, within what an accumulation knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exceedance {
    /// Certainly above the threshold.
    pub surely: u64,
    /// Possibly above it (`surely ≤ possibly ≤ of`).
    pub possibly: u64,
    /// Latencies counted.
    pub of: u64,
}

/// Most sketch buckets one explicit bucket is spread over; a wider bucket is
/// spread at a coarser scale (its answer is only good to its width anyway).
const MAX_PIECES: u32 = 128;

/// `v` (a finite latency) in another unit, by `factor`: a value that
/// would overflow (1e308 s in microseconds) stays the largest finite one,
/// never `inf` — stored as JSON `null`, it could not be read back.
fn in_unit(v: f64, factor: f64) -> f64 {
    let scaled = v * factor;
    if scaled.is_finite() {
        scaled
    } else if scaled.is_nan() {
        0.0
    } else {
        f64::MAX.copysign(scaled)
    }
}

/// The rounded cumulative count of an explicit bucket `(lo, lo + width]`
/// of `c` values up to `b`: `round((b - lo) / width * c)`, at most `c`.
struct Share {
    lo: f64,
    width: f64,
    c: f64,
    per_width: f64,
}

impl Share {
    fn new(lo: f64, width: f64, c: u64) -> Share {
        let c = c as f64;
        Share {
            lo,
            width,
            c,
            per_width: c / width,
        }
    }

    /// A multiplication instead of a division, and integer conversions
    /// instead of `round` (a library call on baseline x86-64): the product
    /// is within a few ulps of the quotient, so it rounds the same unless
    /// it lies that close to a half, where the quotient decides.
    #[inline]
    fn upto(&self, b: f64) -> u64 {
        let y = (b - self.lo) * self.per_width;
        if (0.0..4_503_599_627_370_496.0).contains(&y) {
            // y < 2^52: `as i64` truncates exactly and the fraction is exact.
            let whole = y as i64;
            let frac = y - whole as f64;
            if (frac - 0.5).abs() > 1e-12 * (y + 1.0) {
                let rounded = whole + i64::from(frac > 0.5);
                return if rounded as f64 <= self.c {
                    rounded as u64
                } else {
                    self.c as u64
                };
            }
        }
        ((b - self.lo) / self.width * self.c).round().min(self.c) as u64
    }

    /// The first piece from `k` (at most `last`) whose share up to its
    /// upper end `min(edges.lower(j + 1), hi)` is more than `given`: the
    /// piece holding the value where the share passes `given + 1/2`, by
    /// the sketch's own index mapping, then moved to the exact first one
    /// by [`Share::upto`] itself (usually no step).
    fn next_growth(&self, k: i64, last: i64, given: u64, hi: f64, edges: &Edges) -> i64 {
        let up = |j: i64| self.upto(edges.lower(j + 1).min(hi));
        let t = self.lo + (given as f64 + 0.5) / self.per_width;
        let mut j = if t.is_finite() && t > 0.0 {
            edges.index_of(t).clamp(k, last)
        } else {
            last
        };
        while j > k && up(j - 1) > given {
            j -= 1;
        }
        while j < last && up(j) <= given {
            j += 1;
        }
        j
    }
}

/// `x.floor()` and `x.ceil()` as integers, without the library call they
/// are on baseline x86-64 (the same values for every `x` that fits).
#[inline]
fn floor_i(x: f64) -> i64 {
    if x.abs() < 4_503_599_627_370_496.0 {
        let t = x as i64;
        t - i64::from((t as f64) > x)
    } else {
        x.floor() as i64
    }
}

#[inline]
fn ceil_i(x: f64) -> i64 {
    if x.abs() < 4_503_599_627_370_496.0 {
        let t = x as i64;
        t + i64::from((t as f64) < x)
    } else {
        x.ceil() as i64
    }
}

/// `2^scale` for a sketch scale, exactly (what `f64::from(scale).exp2()`
/// gives, without the call).
#[inline]
fn per_octave(scale: i32) -> f64 {
    f64::from_bits(((i64::from(scale) + 1023) as u64) << 52)
}

thread_local! {
    /// The pieces of the bucket being spread, reused from one to the next.
    static PIECES: std::cell::RefCell<Vec<Indexed>> =
        std::cell::RefCell::new(Vec::with_capacity(MAX_PIECES as usize + 1));
}

impl Accum {
    /// Adds one sample. A latency the sketch refuses still counts as a
    /// request (its error and conversion flags are real); the caller checked
    /// finiteness already, so this only guards against misuse. NaN means "no
    /// latency" (see [`Sample::latency_ms`]) and is not offered to the sketch.
    #[inline]
    pub fn record(&mut self, s: &Sample) {
        if !s.latency_ms.is_nan() {
            let _ = self.latency.insert(s.latency_ms);
        }
        self.samples = self.samples.saturating_add(1);
        self.errors = self.errors.saturating_add(u64::from(s.error));
        self.conversions = self.conversions.saturating_add(u64::from(s.converted));
    }

    /// Adds a (delta) metric point: a latency histogram or conversions.
    pub fn record_point(&mut self, kind: &PointKind) {
        match kind {
            // Conversions are whole events; a double-valued counter's
            // fractions are rounding noise.
            PointKind::Conversions(v) => {
                self.conversions = self.conversions.saturating_add(v.round().max(0.0) as u64)
            }
            PointKind::Latency(p) => self.record_latency(p, Accum::spread_bucket),
        }
    }

    /// A latency point, with `spread` spreading each explicit bucket.
    pub(super) fn record_latency(
        &mut self,
        p: &PointLatency,
        spread: fn(&mut Accum, f64, f64, u64),
    ) {
        self.count_latency(p);
        match &p.buckets {
            Buckets::Exponential {
                scale,
                offset,
                counts,
                zero_count,
                zero_threshold,
            } => {
                let factor = self.adopt_unit(p.unit);
                if factor == 1.0 {
                    self.latency.merge_exponential(
                        *scale,
                        *zero_count,
                        *zero_threshold,
                        *offset,
                        counts,
                        p.sum,
                        p.min,
                        p.max,
                    );
                } else {
                    self.rebucket(*scale, *offset, counts, *zero_count, factor);
                }
            }
            Buckets::Explicit { bounds, counts } => {
                self.spread_explicit_in(p.unit, bounds, counts, p.min, p.max, spread)
            }
        }
    }

    /// Counts the requests (and errors) of a latency point, without its
    /// buckets.
    #[inline]
    pub(super) fn count_latency(&mut self, p: &PointLatency) {
        self.samples = self.samples.saturating_add(p.count);
        if p.error {
            self.errors = self.errors.saturating_add(p.count);
        }
    }

    /// Spreads explicit buckets whose bounds and clamps are in `unit` (see
    /// [`Accum::spread_explicit`]), with `spread` spreading each bucket.
    pub(super) fn spread_explicit_in(
        &mut self,
        unit: LatencyUnit,
        bounds: &[f64],
        counts: &[u64],
        min: Option<f64>,
        max: Option<f64>,
        spread: fn(&mut Accum, f64, f64, u64),
    ) {
        let factor = self.adopt_unit(unit);
        let scaled = |v: Option<f64>| v.map(|v| in_unit(v, factor));
        if factor == 1.0 && bounds.iter().all(|b| b.is_finite()) {
            // In the sketch's unit, as sent (no copy) in the usual case.
            self.spread_explicit_with(bounds, counts, scaled(min), scaled(max), spread);
        } else {
            let bounds: Vec<f64> = bounds.iter().map(|b| in_unit(*b, factor)).collect();
            self.spread_explicit_with(&bounds, counts, scaled(min), scaled(max), spread);
        }
    }

    /// True when nothing has gone into the sketch yet (its unit is free).
    pub(super) fn latency_empty(&self) -> bool {
        self.latency.is_empty() && self.latency.rejected() == 0 && self.spread.is_none()
    }

    /// What spreading a first explicit point of `unit` and `bounds` into an
    /// empty accumulation leaves besides its counts: the unit taken, and
    /// the bounds shared so far (the open sides are added when its counts
    /// are spread). See [`super::open_accum`].
    pub(super) fn adopt_first_explicit(&mut self, unit: LatencyUnit, bounds: &[f64]) {
        self.unit = unit;
        self.spread = Some(Spread {
            bounds: bounds.to_vec(),
            open_below: false,
            open_above: false,
        });
    }

    /// Takes `unit` as the sketch's unit when the sketch is still empty;
    /// returns the factor from `unit` to the sketch's unit.
    fn adopt_unit(&mut self, unit: LatencyUnit) -> f64 {
        if unit == self.unit {
            return 1.0;
        }
        if self.latency_empty() {
            self.unit = unit;
            return 1.0;
        }
        unit.to_ms() / self.unit.to_ms()
    }

    /// Adds exponential buckets of another unit: each bucket's count goes to
    /// its midpoint times `factor`, which adds that scale's bound to the
    /// answer's error (only when a series mixes units).
    fn rebucket(&mut self, scale: i32, offset: i32, counts: &[u64], zero_count: u64, factor: f64) {
        let _ = self.latency.insert_n(0.0, zero_count);
        let rel = crate::sketch::relative_error_at(scale);
        for (j, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let idx = f64::from(offset) + j as f64;
            let lower = (idx * (-f64::from(scale)).exp2()).exp2();
            let _ = self
                .latency
                .insert_n(in_unit(lower * (1.0 + rel), factor), c);
        }
        self.extra_relative_error = self.extra_relative_error.max(rel);
    }

    /// Spreads explicit-bucket counts uniformly inside each bucket over the
    /// sketch buckets it covers (design §3). `min` and `max`, when given,
    /// clamp the outer buckets (and any bucket they fall in); without a
    /// `max`, the counts above the last bound sit at that bound and the
    /// answer there has no bound.
    pub fn spread_explicit(
        &mut self,
        bounds: &[f64],
        counts: &[u64],
        min: Option<f64>,
        max: Option<f64>,
    ) {
        self.spread_explicit_with(bounds, counts, min, max, Accum::spread_bucket);
    }

    /// [`Accum::spread_explicit`] with `spread(self, lo, hi, c)` spreading
    /// one bucket's counts (the tests give the reference spreading).
    fn spread_explicit_with(
        &mut self,
        bounds: &[f64],
        counts: &[u64],
        min: Option<f64>,
        max: Option<f64>,
        spread: fn(&mut Accum, f64, f64, u64),
    ) {
        let n = bounds.len();
        let mut open_below = false;
        let mut open_above = false;
        for (i, &c) in counts.iter().enumerate().take(n + 1) {
            if c == 0 {
                continue;
            }
            let mut lo = if i == 0 {
                f64::NEG_INFINITY
            } else {
                bounds[i - 1]
            };
            let mut hi = if i == n { f64::INFINITY } else { bounds[i] };
            if let Some(m) = min.filter(|m| m.is_finite()) {
                lo = lo.max(m);
            } else if i == 0 {
                open_below = true;
            }
            if let Some(m) = max.filter(|m| m.is_finite()) {
                hi = hi.min(m);
            }
            // Latencies are never negative.
            lo = lo.max(0.0);
            if hi.is_infinite() {
                open_above = true;
                // Above the last bound: every one of these is slower than
                // that bound, so they go one and a half sketch buckets above
                // it, where the bucket holding them starts above the bound
                // and `slower_than` counts them as surely slower than it.
                let base = f64::from(-self.latency.scale()).exp2().exp2();
                let _ = self.latency.insert_n(lo * base * base.sqrt(), c);
            } else if hi <= 0.0 {
                let _ = self.latency.insert_n(0.0, c);
            } else if lo >= hi {
                let _ = self.latency.insert_n(hi, c);
            } else {
                spread(self, lo, hi, c);
            }
        }
        match &mut self.spread {
            Some(s) => {
                retain_shared(&mut s.bounds, bounds);
                s.open_below |= open_below;
                s.open_above |= open_above;
            }
            None => {
                self.spread = Some(Spread {
                    bounds: bounds.to_vec(),
                    open_below,
                    open_above,
                })
            }
        }
    }

    /// Spreads `c` values uniformly over `(lo, hi]`, `0 <= lo < hi`, over
    /// the sketch buckets it covers, rounding so the counts add up to `c`.
    /// Each piece's share and bucket come from the scale's table of bucket
    /// bounds, and all of them go into the sketch in one pass: a fixed
    /// number of steps per piece (at most [`MAX_PIECES`]), whatever `c`.
    pub(super) fn spread_bucket(&mut self, lo: f64, hi: f64, c: u64) {
        // Below hi / 2^10 lies under 0.1 % of a uniform bucket: it goes to
        // the first piece instead of spanning endless tiny buckets near 0.
        let from = lo.max(hi / 1024.0);
        // Near the bottom of the f64 range (subnormal bounds) logarithms
        // lose all precision, and `from` can even be 0: such a bucket is
        // below any real latency, so its counts simply sit at `hi`.
        if !(from.is_normal() && hi.is_normal()) {
            let _ = self.latency.insert_n(hi, c);
            return;
        }
        let (log_from, log_hi) = (from.log2(), hi.log2());
        let sketch_scale = self.latency.scale();
        let mut scale = sketch_scale;
        let pieces = |scale: i32| {
            let per = per_octave(scale);
            (ceil_i(log_hi * per) - floor_i(log_from * per)).max(1)
        };
        while scale > crate::sketch::MIN_SCALE && pieces(scale) > i64::from(MAX_PIECES) {
            scale -= 1;
        }
        let per = per_octave(scale);
        let first = floor_i(log_from * per);
        // Never more than MAX_PIECES pieces, whatever the bounds: the work
        // per bucket is bounded by construction, not by the inputs.
        let last = ceil_i(log_hi * per).min(first + i64::from(MAX_PIECES));
        // Pieces lie on sketch bucket edges, but the first and the last can
        // be cut by the explicit bounds, and the sketch bucket holding such
        // a piece also holds values of the neighbouring explicit bucket:
        // once mixed, no count can say on which side of the bound it was,
        // and a bound at a contract's limit (the advice for histograms)
        // would be evidence of nothing. Their counts go to the nearest
        // sketch bucket that lies wholly inside `(lo, hi]` (a shift of at
        // most one sketch bucket, within the spreading's own error); only
        // a bucket too narrow to hold a whole sketch bucket is mixed.
        let inner = {
            let a = ceil_i(log_from * per);
            let b = floor_i(log_hi * per);
            (a < b).then_some((a, b - 1))
        };
        // `edges.lower(k)` is `2^(k / per)`, the piece bounds, by table.
        let edges = Edges::at(scale);
        let share = Share::new(lo, hi - lo, c);
        // One piece: its share of the counts and, if that is more than
        // the pieces before it had, its item.
        let piece = |k: i64, given: &mut u64, items: &mut Vec<Indexed>| {
            let (a, b) = (edges.lower(k).max(from), edges.lower(k + 1).min(hi));
            if b <= a {
                return;
            }
            // Cumulative share up to b, rounded: the counts sum to c exactly.
            let upto = if k + 1 >= last { c } else { share.upto(b) };
            let n = upto.saturating_sub(*given);
            *given = (*given).max(upto);
            if n > 0 {
                let (a, b) = match inner {
                    Some((first_inner, last_inner)) => {
                        let j = k.clamp(first_inner, last_inner);
                        (edges.lower(j), edges.lower(j + 1))
                    }
                    None => (a, b),
                };
                // Geometric middle of the piece (as a product of roots: no overflow).
                let value = a.sqrt() * b.sqrt();
                // Its index is the sketch's, looked up with the others.
                items.push(Indexed { value, index: 0, n });
            }
        };
        PIECES.with_borrow_mut(|items| {
            items.clear();
            let mut given = 0u64;
            let mut k = first;
            // Fewer counts than pieces: most pieces get none, and a piece
            // that gets none changes nothing, so the walk jumps from one
            // piece whose rounded share grows to the next.
            let sparse = c < (last - first) as u64;
            while k < last {
                if sparse && k + 1 < last {
                    if given >= c {
                        break;
                    }
                    k = share.next_growth(k, last - 1, given, hi, &edges);
                }
                piece(k, &mut given, items);
                k += 1;
            }
            if given < c {
                items.push(Indexed {
                    value: hi,
                    index: 0,
                    n: c - given,
                });
            }
            for it in items.iter_mut() {
                it.index = self.latency.index_of(it.value);
            }
            self.latency.insert_indexed(sketch_scale, items);
        });
    }

    /// How many latencies are slower than `threshold_ms`, as far as this
    /// accumulation can tell: the sketch's buckets (widened by any
    /// re-bucketing), and for spread explicit buckets the explicit bucket a
    /// value came from (it lies between two bounds every spread histogram
    /// shares; above the last shared bound its value is unknown). A
    /// decision that something is slow uses [`Exceedance::surely`], one that
    /// it is fast uses [`Exceedance::possibly`], so neither rests on where
    /// spreading or a coarse bucket happened to put a value.
    pub fn slower_than(&self, threshold_ms: f64) -> Exceedance {
        let t = threshold_ms / self.unit.to_ms();
        let widen = 1.0 + self.extra_relative_error;
        let mut out = Exceedance {
            of: self.latency.count(),
            ..Exceedance::default()
        };
        self.latency.for_each_bucket(|lo, hi, c| {
            let (mut lo, mut hi) = (lo / widen, hi * widen);
            if let Some(s) = &self.spread {
                // The bounds are increasing: the last one at or below `lo`
                // and the first at or above `hi`, by binary search (a
                // histogram of 4096 bounds under a sketch of thousands of
                // buckets made a scan per bucket cost millions of steps
                // per check and look).
                let below = s.bounds.partition_point(|b| *b <= lo);
                lo = below
                    .checked_sub(1)
                    .and_then(|i| s.bounds.get(i))
                    .copied()
                    .unwrap_or(0.0);
                let above = s.bounds.partition_point(|b| *b < hi);
                hi = s.bounds.get(above).copied().unwrap_or(f64::INFINITY);
                if s.open_above && s.bounds.last().is_none_or(|last| hi >= *last) {
                    hi = f64::INFINITY;
                }
            }
            if lo >= t {
                out.surely = out.surely.saturating_add(c);
            }
            if hi > t {
                out.possibly = out.possibly.saturating_add(c);
            }
        });
        out
    }

    /// True when quantiles are approximate beyond the sketch's own bound
    /// (explicit buckets were spread, or a unit was re-bucketed).
    pub fn approximate(&self) -> bool {
        self.spread.is_some() || self.extra_relative_error > 0.0
    }

    /// Relative error of the sketch's answers as sketch answers: its scale's
    /// bound plus any re-bucketing.
    pub fn relative_error(&self) -> f64 {
        (self.latency.relative_error() + self.extra_relative_error).min(1.0)
    }

    /// The absolute bound (in the sketch's unit) of a quantile answer `v`:
    /// the sketch's relative bound, plus, for spread explicit buckets, the
    /// width of the bucket the answer falls in (`+inf` in an open bucket).
    pub fn error_bound(&self, v: f64) -> f64 {
        let rel = self.relative_error();
        // |v − x| ≤ rel·x with x ≥ v / (1 + rel)… and ≤ v / (1 − rel).
        let sketch = if rel < 1.0 {
            rel * v / (1.0 - rel)
        } else {
            f64::INFINITY
        };
        let Some(s) = &self.spread else {
            return sketch;
        };
        let width = |x: f64| {
            let i = s.bounds.partition_point(|b| *b < x);
            let lo = if i == 0 {
                if s.open_below {
                    0.0
                } else {
                    self.latency.min().unwrap_or(0.0)
                }
            } else {
                s.bounds[i - 1]
            };
            let hi = if i == s.bounds.len() {
                if s.open_above {
                    f64::INFINITY
                } else {
                    self.latency.max().unwrap_or(lo)
                }
            } else {
                s.bounds[i]
            };
            (hi - lo).max(0.0)
        };
        // The sketch may have put the answer just across a bound.
        let w = width(v - sketch).max(width(v + sketch));
        w + sketch
    }

    /// Adds everything `other` accumulated.
    pub fn merge(&mut self, other: &Accum) {
        if other.latency_empty() {
            // Nothing to merge (an empty window of another unit included).
        } else if other.unit == self.unit || self.latency_empty() {
            self.unit = other.unit;
            self.latency.merge(&other.latency);
        } else {
            let factor = other.unit.to_ms() / self.unit.to_ms();
            let (scale, offset, counts) = other.latency.positive_buckets();
            self.rebucket(scale, offset, &counts, other.latency.zero_count(), factor);
        }
        self.samples = self.samples.saturating_add(other.samples);
        self.errors = self.errors.saturating_add(other.errors);
        self.conversions = self.conversions.saturating_add(other.conversions);
        self.extra_relative_error = self.extra_relative_error.max(other.extra_relative_error);
        if let Some(o) = &other.spread {
            let factor = other.unit.to_ms() / self.unit.to_ms();
            let bounds: Vec<f64> = o.bounds.iter().map(|b| in_unit(*b, factor)).collect();
            match &mut self.spread {
                Some(s) => {
                    retain_shared(&mut s.bounds, &bounds);
                    s.open_below |= o.open_below;
                    s.open_above |= o.open_above;
                }
                None => {
                    self.spread = Some(Spread {
                        bounds,
                        open_below: o.open_below,
                        open_above: o.open_above,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "accum_spread_tests.rs"]
pub(crate) mod spread_tests;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::SeriesKey;

    /// An exponential point of `counts` from bucket `offset` at `scale`.
    pub(crate) fn exp_point(
        unit: LatencyUnit,
        scale: i32,
        offset: i32,
        counts: &[u64],
    ) -> PointKind {
        PointKind::Latency(PointLatency {
            unit,
            count: counts.iter().sum(),
            error: false,
            sum: None,
            min: None,
            max: None,
            buckets: Buckets::Exponential {
                scale,
                offset,
                counts: counts.to_vec(),
                zero_count: 0,
                zero_threshold: 0.0,
            },
        })
    }

    fn explicit_point(
        bounds: &[f64],
        counts: &[u64],
        min: Option<f64>,
        max: Option<f64>,
    ) -> PointKind {
        PointKind::Latency(PointLatency {
            unit: LatencyUnit::Seconds,
            count: counts.iter().sum(),
            error: true,
            sum: None,
            min,
            max,
            buckets: Buckets::Explicit {
                bounds: std::sync::Arc::from(bounds),
                counts: counts.to_vec(),
            },
        })
    }

    #[test]
    fn exponential_points_merge_exactly_in_their_unit() {
        // Values in seconds at scale 3, as an SDK with 160 buckets sends them.
        let values: Vec<f64> = (1..=200).map(|i| 0.005 * f64::from(i)).collect();
        let mut direct = Sketch::with_params(3, 2048);
        for &v in &values {
            direct.insert(v).expect("valid");
        }
        let (scale, offset, counts) = direct.positive_buckets();
        let mut acc = Accum::default();
        acc.record_point(&exp_point(LatencyUnit::Seconds, scale, offset, &counts));
        assert_eq!(acc.unit, LatencyUnit::Seconds);
        assert_eq!(acc.latency.positive_buckets(), (scale, offset, counts));
        assert_eq!(acc.samples, 200);
        assert!(!acc.approximate());
        // The reported bound is the coarse scale's, not the default's.
        let f = crate::model::Figures::of(&acc);
        assert!(
            f.latency_relative_error > 0.04,
            "{}",
            f.latency_relative_error
        );
        let exact = values[189] * 1000.0; // nearest rank 190 of 200
        let p95 = f.p95_latency_ms.unwrap_or(0.0);
        let bound = f.p95_latency_error_ms.unwrap_or(0.0);
        assert!(
            (p95 - exact).abs() <= bound,
            "p95 {p95} exact {exact} bound {bound}"
        );
        assert!((p95 - exact).abs() <= f.latency_relative_error * exact * 1.000_001);
        // A second point of another unit is re-bucketed, and says so.
        acc.record_point(&exp_point(LatencyUnit::Millis, 3, offset + 80, &[5]));
        assert_eq!(acc.unit, LatencyUnit::Seconds);
        assert!(acc.approximate());
        assert_eq!(acc.latency.count(), 205);
    }

    #[test]
    fn a_bound_at_the_limit_tells_which_side_each_request_is_on() {
        // Bounds in seconds around a 300 ms limit, narrow or wide buckets
        // below it: requests in the bucket that ends at the limit are
        // surely not slower, those in the next are surely slower.
        for bounds in [
            &[0.29, 0.3, 1.0][..],
            &[0.25, 0.3, 0.5],
            &[0.005, 0.3, 0.5],
            &[0.1, 0.2, 0.3, 0.4],
        ] {
            let below = bounds.iter().position(|b| *b == 0.3).unwrap_or(0);
            let mut counts = vec![0u64; bounds.len() + 1];
            counts[below] = 60;
            let mut acc = Accum::default();
            acc.record_point(&explicit_point(bounds, &counts, None, None));
            acc.record_point(&explicit_point(bounds, &counts, None, None));
            let e = acc.slower_than(300.0);
            assert_eq!((e.surely, e.possibly, e.of), (0, 0, 120), "{bounds:?}");
            counts[below] = 0;
            counts[below + 1] = 7;
            acc.record_point(&explicit_point(bounds, &counts, None, None));
            let e = acc.slower_than(300.0);
            assert_eq!((e.surely, e.possibly, e.of), (7, 7, 127), "{bounds:?}");
        }
        // Milliseconds and microseconds alike.
        for (unit, bounds) in [
            (LatencyUnit::Millis, vec![290.0, 300.0, 1000.0]),
            (LatencyUnit::Micros, vec![290_000.0, 300_000.0, 1e6]),
        ] {
            let mut acc = Accum::default();
            let mut point = explicit_point(&bounds, &[0, 60, 0, 0], None, None);
            if let PointKind::Latency(l) = &mut point {
                l.unit = unit;
            }
            acc.record_point(&point);
            let e = acc.slower_than(300.0);
            assert_eq!((e.surely, e.possibly), (0, 0), "{unit:?}");
        }
    }

    #[test]
    fn explicit_buckets_spread_with_a_bucket_width_bound() {
        let bounds = [0.01, 0.05, 0.1, 0.5];
        // 10 in (0, 10ms], 60 in (10, 50], 25 in (50, 100], 5 in (100, 500].
        let mut acc = Accum::default();
        acc.record_point(&explicit_point(
            &bounds,
            &[10, 60, 25, 5, 0],
            Some(0.002),
            Some(0.3),
        ));
        assert_eq!(
            (acc.samples, acc.errors, acc.latency.count()),
            (100, 100, 100)
        );
        assert!(acc.approximate());
        let f = crate::model::Figures::of(&acc);
        // p95 (rank 95) is in the (50, 100] ms bucket: reported within it,
        // with that width (plus the sketch's bound) as its bound.
        let p95 = f.p95_latency_ms.unwrap_or(0.0);
        assert!(
            (50.0..=100.0 * (1.0 + f.latency_relative_error)).contains(&p95),
            "{p95}"
        );
        let bound = f.p95_latency_error_ms.unwrap_or(0.0);
        assert!((50.0..60.0).contains(&bound), "{bound}");
        // Spreading is uniform: the median of (10, 50] ms lies near 30 ms
        // (rank 40 of 100 is the middle of the 60 values in that bucket).
        let mid = acc.latency.quantile(0.40).map_or(0.0, |q| q.value);
        assert!((0.027..0.033).contains(&mid), "{mid}");
        // max clamps the last bucket: nothing above 300 ms.
        assert!(acc.latency.max().unwrap_or(1.0) <= 0.3);
        // min clamps the first one: nothing below 2 ms.
        assert!(acc.latency.min().unwrap_or(0.0) >= 0.002);
    }

    #[test]
    fn explicit_open_top_bucket_has_no_bound() {
        let mut acc = Accum::default();
        acc.record_point(&explicit_point(&[0.1], &[1, 99], None, None));
        let f = crate::model::Figures::of(&acc);
        assert_eq!(f.p95_latency_error_ms, Some(f64::INFINITY));
        let json = f.bound().json_fields();
        assert_eq!(json[2].1, serde_json::Value::Null);
        assert_eq!(json[1].1, serde_json::Value::Bool(true));
    }

    #[test]
    fn open_top_bucket_counts_are_surely_slower_than_the_last_bound() {
        let mut acc = Accum::default();
        acc.record_point(&explicit_point(&[0.1], &[1, 99], None, None));
        // The one value below the bound sits in a sketch bucket that may
        // reach past the bound, so it may count as possibly slower.
        for (t_ms, surely) in [(50.0, 99), (100.0, 99), (200.0, 0)] {
            let e = acc.slower_than(t_ms);
            assert_eq!(e.surely, surely, "{t_ms} ms");
            assert!((99..=100).contains(&e.possibly), "{t_ms} ms: {e:?}");
        }
    }

    #[test]
    fn a_bound_that_overflows_in_another_unit_stays_finite() {
        // Found by the metrics_convert fuzz target: a series in µs, then a
        // point in seconds whose bound 1e308 is inf in µs (stored as JSON
        // null, the window could not be read back).
        let mut acc = Accum::default();
        let mut micros = explicit_point(&[0.0, 10.0], &[0, 3, 0], None, None);
        if let PointKind::Latency(l) = &mut micros {
            l.unit = LatencyUnit::Micros;
        }
        acc.record_point(&micros);
        acc.record_point(&explicit_point(
            &[0.0, 1e308],
            &[0, 4, 0],
            None,
            Some(1e308),
        ));
        let mut other = Accum::default();
        other.record_point(&explicit_point(&[0.0, 1e308], &[0, 2, 0], None, None));
        acc.merge(&other);
        let spread = acc.spread.as_ref().expect("spread");
        assert!(
            spread.bounds.iter().all(|b| b.is_finite()),
            "{:?}",
            spread.bounds
        );
        assert_eq!(acc.latency.count(), 9);
        assert!(acc.latency.max().is_none_or(f64::is_finite));
        assert!(acc.latency.sum().is_finite());
    }

    #[test]
    fn totals_saturate_instead_of_wrapping() {
        let mut acc = Accum::default();
        let mut huge = exp_point(LatencyUnit::Seconds, 3, 0, &[u64::MAX]);
        if let PointKind::Latency(p) = &mut huge {
            p.error = true;
            p.sum = Some(1e308);
        }
        acc.record_point(&huge);
        acc.record_point(&huge);
        acc.record_point(&exp_point(LatencyUnit::Seconds, 3, 0, &[3]));
        acc.record_point(&PointKind::Conversions(1e300));
        acc.record_point(&PointKind::Conversions(1e300));
        let mut other = acc.clone();
        other.merge(&acc);
        for a in [&acc, &other] {
            assert_eq!(
                (a.samples, a.errors, a.conversions),
                (u64::MAX, u64::MAX, u64::MAX)
            );
            assert_eq!(a.latency.count(), u64::MAX);
            assert!(a.latency.sum().is_finite(), "{}", a.latency.sum());
        }
    }

    #[test]
    fn subnormal_bounds_are_spread_in_bounded_time() {
        for (bounds, counts, max) in [
            (vec![1e-322], vec![1u64, 0], None),
            (vec![0.1, 1.0], vec![5, 0, 0], Some(5e-324)),
            (vec![f64::MIN_POSITIVE, 1e-300, 1.0], vec![3, 4, 5, 6], None),
        ] {
            let mut acc = Accum::default();
            let total: u64 = counts.iter().sum();
            acc.record_point(&explicit_point(&bounds, &counts, None, max));
            assert_eq!(acc.latency.count(), total, "{bounds:?}");
        }
    }

    #[test]
    fn spreading_preserves_counts_for_any_input() {
        for (counts, min, max) in [
            (vec![1u64, 0, 7, 3, 2], None, None),
            (vec![0, 1000, 1, 0, 999], Some(0.0), Some(7.0)),
            (vec![3, 3, 3, 3, 3], Some(0.2), Some(0.2)),
            (vec![u64::from(u32::MAX), 1, 1, 1, 1], Some(1e-9), Some(1e9)),
        ] {
            let mut acc = Accum::default();
            let total: u64 = counts.iter().sum();
            acc.record_point(&explicit_point(&[0.001, 0.01, 0.5, 5.0], &counts, min, max));
            assert_eq!(acc.latency.count(), total, "{counts:?}");
            assert_eq!(acc.latency.rejected(), 0);
        }
    }

    #[test]
    fn conversions_and_merge_across_units() {
        let mut a = Accum::default();
        a.record_point(&PointKind::Conversions(3.0));
        a.record_point(&exp_point(LatencyUnit::Seconds, 3, 0, &[4]));
        let mut run = Accum::default();
        // An empty millisecond window merges without changing anything.
        run.merge(&Accum::default());
        run.merge(&a);
        run.merge(&Accum::default());
        assert_eq!(
            (run.unit, run.conversions, run.samples),
            (LatencyUnit::Seconds, 3, 4)
        );
        assert!(!run.approximate());
        let mut spans = Accum::default();
        spans.record(&Sample {
            series: SeriesKey {
                contract: 0,
                subject: crate::model::Subject::named("a"),
            },
            ts: 1,
            latency_ms: 1500.0,
            error: false,
            converted: false,
        });
        run.merge(&spans);
        assert!(run.approximate());
        assert_eq!(run.latency.count(), 5);
        let top = run.latency.quantile(1.0).map_or(0.0, |q| q.value);
        assert!((top - 1.5).abs() < 0.1, "{top}");
    }

    /// The bounds shared by spread histograms are found by binary search:
    /// the same as comparing every pair, on lists of 4096 bounds as on
    /// small and unordered ones.
    #[test]
    fn shared_bounds_are_kept_as_a_scan_would() {
        let naive = |kept: &[f64], bounds: &[f64]| -> Vec<f64> {
            kept.iter()
                .copied()
                .filter(|b| bounds.contains(b))
                .collect()
        };
        let evens: Vec<f64> = (0..4096).map(|i| f64::from(2 * i)).collect();
        let thirds: Vec<f64> = (0..4096).map(|i| f64::from(3 * i)).collect();
        for (kept, bounds) in [
            (evens.clone(), thirds.clone()),
            (thirds.clone(), evens.clone()),
            (vec![0.0, 0.5, 1.0], vec![-0.0, 1.0]),
            (vec![1.0, 2.0, 3.0], vec![3.0, 1.0]),
            (vec![1.0, 2.0], Vec::new()),
        ] {
            let mut got = kept.clone();
            retain_shared(&mut got, &bounds);
            assert_eq!(
                got,
                naive(&kept, &bounds),
                "{:?}",
                &bounds[..bounds.len().min(4)]
            );
        }
        // A window of 4096-bound points answers the same counts as before.
        let bounds: Vec<f64> = (1..4096).map(|b| f64::from(b) / 1000.0).collect();
        let mut counts = vec![0u64; 4096];
        counts[5] = 7;
        counts[4000] = 3;
        let mut acc = Accum::default();
        for _ in 0..3 {
            acc.record_point(&explicit_point(&bounds, &counts, None, None));
        }
        assert_eq!(
            acc.slower_than(100.0),
            Exceedance {
                surely: 9,
                possibly: 9,
                of: 30
            }
        );
        assert_eq!(
            acc.slower_than(5.5),
            Exceedance {
                surely: 9,
                possibly: 30,
                of: 30
            }
        );
    }
}
