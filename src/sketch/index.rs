//! Index mapping of the exponential layout: which bucket a value falls in
//! at a scale, the bucket bounds, and index conversion between scales.
//!
//! For scale ≤ 0 the exponent bits of the value decide the bucket (OTel's
//! "exponent method"); for scale > 0 the exponent bits give the octave and
//! the mantissa is placed among the `2^s` octave boundaries `2^(j/2^s)`, with
//! a small per-scale lookup table (scales 1..=12) or a `log2` guess
//! corrected against the same boundaries (scales 13..=20).

use std::sync::OnceLock;

use super::MIN_SCALE;

pub(super) const FRAC_BITS: u32 = 52;
pub(super) const FRAC_MASK: u64 = (1 << FRAC_BITS) - 1;
pub(super) const HIDDEN_BIT: u64 = 1 << FRAC_BITS;
/// Scales up to this one use a lookup table (at most 64 KiB, built lazily).
pub(super) const TABLE_MAX_SCALE: i32 = 12;

/// Per-scale lookup for the mantissa: `bounds[j]` is the octave boundary
/// `2^(j/2^s)` as a 53-bit integer mantissa (`bounds[2^s]` is 2.0), and
/// `lookup[c]` counts the boundaries below the start of linear cell `c` (the
/// cells split `[1, 2)` into `2^(s+1)` equal parts, narrower than any gap
/// between boundaries, so a cell holds at most one boundary and one compare
/// finishes the job).
pub(super) struct ScaleTable {
    pub(super) shift: u32,
    pub(super) bounds: Box<[u64]>,
    pub(super) lookup: Box<[u32]>,
    /// `edges[j]` is [`octave_boundary`]`(j)` for `j < 2^s`, as `f64`: the
    /// bucket bounds of one octave without an `exp2` per bound.
    pub(super) edges: Box<[f64]>,
}

impl ScaleTable {
    pub(super) fn build(scale: u32) -> ScaleTable {
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
        let edges = (0..per as u64).map(|j| octave_boundary(j, scale)).collect();
        ScaleTable {
            shift,
            bounds,
            lookup,
            edges,
        }
    }

    /// Index within the octave (`-1` for an exact power of two, which belongs
    /// to the previous octave's last bucket) of the mantissa `frac`.
    #[inline(always)]
    pub(super) fn sub_index(&self, frac: u64) -> i64 {
        let k = self.lookup[(frac >> self.shift) as usize] as usize;
        let k = k + usize::from((frac | HIDDEN_BIT) > self.bounds[k]);
        k as i64 - 1
    }
}

pub(super) fn table_for(scale: i32) -> Option<&'static ScaleTable> {
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
pub(super) fn octave_boundary(j: u64, scale: u32) -> f64 {
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
pub(super) fn decompose(bits: u64) -> (i64, u64) {
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
pub(super) fn map_index(bits: u64, scale: i32, table: Option<&ScaleTable>) -> i64 {
    let exp_field = (bits >> FRAC_BITS) as i64;
    match table {
        Some(t) if exp_field != 0 => ((exp_field - 1023) << scale) + t.sub_index(bits & FRAC_MASK),
        _ => map_index_general(bits, scale, table),
    }
}

/// [`map_index`] for subnormals and for scales without a table.
#[inline(never)]
pub(super) fn map_index_general(bits: u64, scale: i32, table: Option<&ScaleTable>) -> i64 {
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
pub(super) fn sub_index_exact(frac: u64, scale: u32) -> i64 {
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
pub(super) fn index_of(v: f64, scale: i32) -> i64 {
    map_index(v.to_bits(), scale, table_for(scale))
}

/// Indices of the smallest and largest positive `f64` at `scale`.
pub(super) fn index_range(scale: i32) -> (i64, i64) {
    (
        index_of(f64::from_bits(1), scale),
        index_of(f64::MAX, scale),
    )
}

/// Maps indices at scale `from` to scale `to`, clamped into the indices of
/// real `f64` values (so malformed input can't stretch the span).
/// Coarser-to-finer (only for `from < MIN_SCALE`) picks the top sub-bucket.
pub(super) struct IndexConverter {
    from: i32,
    to: i32,
    lo: i64,
    hi: i64,
}

impl IndexConverter {
    pub(super) fn new(from: i32, to: i32) -> Self {
        let (lo, hi) = index_range(to);
        IndexConverter { from, to, lo, hi }
    }

    pub(super) fn convert(&self, i: i64) -> i64 {
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
pub(super) fn needed_downscale(scale: i32, max_buckets: usize, lo: i64, hi: i64) -> u32 {
    let max_d = (scale - MIN_SCALE).max(0) as u32;
    let mut d = 0;
    while d < max_d && (hi >> d) - (lo >> d) + 1 > max_buckets as i64 {
        d += 1;
    }
    d
}

/// `2^e` for any integer `e`, 0 / `inf` outside the `f64` range.
pub(super) fn pow2(e: i64) -> f64 {
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
pub(super) fn ldexp(x: f64, e: i64) -> f64 {
    if e < -1022 {
        x * pow2(-1022) * pow2(e + 1022)
    } else if e > 1023 {
        x * pow2(1023) * pow2(e - 1023)
    } else {
        x * pow2(e)
    }
}

/// Exclusive lower bound of bucket `idx` at `scale`.
pub(super) fn lower_bound(idx: i64, scale: i32) -> f64 {
    lower_bound_with(idx, scale, table_for(scale))
}

/// [`lower_bound`] with the scale's table (if it has one) already at hand:
/// a table read and an exponent instead of an `exp2`, same value.
#[inline]
pub(super) fn lower_bound_with(idx: i64, scale: i32, table: Option<&ScaleTable>) -> f64 {
    if scale <= 0 {
        pow2(idx.saturating_mul(1 << -scale))
    } else {
        let per = 1i64 << scale;
        let j = (idx & (per - 1)) as usize;
        let m = match table {
            Some(t) => t.edges[j],
            None => octave_boundary(j as u64, scale as u32),
        };
        ldexp(m, idx >> scale)
    }
}

/// Inclusive upper bound of bucket `idx` at `scale`.
pub(super) fn upper_bound(idx: i64, scale: i32) -> f64 {
    lower_bound(idx + 1, scale)
}

/// `2·l·u / (l + u)` of bucket `(l, u]`, the point with the smallest worst
/// relative error. Computed as `l · 2·base / (base + 1)`, which is
/// `l · (1 + relative_error)`: accurate even at fine scales, and right where
/// `u` (but not the midpoint) overflows. Clamped into the positive finite
/// `f64` range, which every value of the bucket lies in.
pub(super) fn bucket_midpoint(idx: i64, scale: i32) -> f64 {
    let factor = 1.0 + relative_error_at(scale);
    (lower_bound(idx, scale) * factor).clamp(f64::from_bits(1), f64::MAX)
}

/// `(base - 1) / (base + 1)` with `base = 2^(2^-scale)`, accurate at fine
/// scales and 1 where `base` overflows.
pub fn relative_error_at(scale: i32) -> f64 {
    let em1 = (std::f64::consts::LN_2 * (-f64::from(scale)).exp2()).exp_m1();
    if em1.is_finite() {
        em1 / (em1 + 2.0)
    } else {
        1.0
    }
}
