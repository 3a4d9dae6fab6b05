//! The bucket counts of a [`Sketch`](super::Sketch) and the loops over them.
//!
//! Counts are `u32` while the sketch's total count fits in a `u32` and `u64`
//! after that. No bucket can exceed its sketch's total, so the narrow form
//! cannot overflow as long as the sketch widens *before* its total would pass
//! `u32::MAX` ([`Buckets::reserve`]). Narrow counts halve the memory of every
//! window sketch and the traffic of every merge: a 2048-bucket merge then
//! reads and writes 16 KiB instead of 32, which keeps it inside L1.
//!
//! The merge loops are compiled twice (baseline and AVX2, picked at run time
//! by `multiversion`) because they are plain element-wise adds that the
//! wider registers do twice as fast.

use std::borrow::Cow;
use std::ops::RangeInclusive;

use multiversion::multiversion;

/// Largest total a sketch may hold while its buckets are narrow.
const NARROW_MAX: u64 = u32::MAX as u64;

/// A bucket count type: `u32` or `u64`.
pub(super) trait Count: Copy + Default + Eq + Into<u64> + Send + Sync + 'static {
    /// `v` truncated to this type; callers only pass values that fit.
    fn from_u64(v: u64) -> Self;
    fn wrapping_add(self, other: Self) -> Self;
}

impl Count for u32 {
    #[inline(always)]
    fn from_u64(v: u64) -> Self {
        v as u32
    }
    #[inline(always)]
    fn wrapping_add(self, other: Self) -> Self {
        u32::wrapping_add(self, other)
    }
}

impl Count for u64 {
    #[inline(always)]
    fn from_u64(v: u64) -> Self {
        v
    }
    #[inline(always)]
    fn wrapping_add(self, other: Self) -> Self {
        u64::wrapping_add(self, other)
    }
}

/// Owned bucket counts, narrow or wide; entry `p` is the count of bucket
/// `offset + p` of the owning sketch.
#[derive(Clone)]
pub(super) enum Buckets {
    Narrow(Box<[u32]>),
    Wide(Box<[u64]>),
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets::Narrow(Box::default())
    }
}

/// Borrowed bucket counts: part of another sketch, or an OTLP point's
/// `bucket_counts` (always wide).
#[derive(Clone, Copy)]
pub(super) enum Src<'a> {
    Narrow(&'a [u32]),
    Wide(&'a [u64]),
}

impl Buckets {
    pub(super) fn len(&self) -> usize {
        match self {
            Buckets::Narrow(c) => c.len(),
            Buckets::Wide(c) => c.len(),
        }
    }

    /// Widens the counts if a sketch holding `count` values is about to
    /// take `more`, so that narrow counts never overflow.
    pub(super) fn reserve(&mut self, count: u64, more: u64) {
        if let Buckets::Narrow(c) = self {
            if count.checked_add(more).is_none_or(|t| t > NARROW_MAX) {
                *self = Buckets::Wide(c.iter().map(|&v| u64::from(v)).collect());
            }
        }
    }

    /// The hot path of an insert: adds `n` to entry `p` unless the counts
    /// must widen first (a sketch holding `count` values), in which case it
    /// returns `false` and changes nothing.
    #[inline(always)]
    pub(super) fn try_add(&mut self, p: usize, n: u64, count: u64) -> bool {
        match self {
            Buckets::Narrow(c) => {
                let fits = count.checked_add(n).is_some_and(|t| t <= NARROW_MAX);
                if fits {
                    c[p] = c[p].wrapping_add(n as u32);
                }
                fits
            }
            Buckets::Wide(c) => {
                c[p] = c[p].saturating_add(n);
                true
            }
        }
    }

    /// Adds `n` to entry `p`; narrow counts must have been
    /// [reserved](Buckets::reserve) for it, wide ones saturate.
    pub(super) fn add(&mut self, p: usize, n: u64) {
        match self {
            Buckets::Narrow(c) => c[p] = c[p].wrapping_add(n as u32),
            Buckets::Wide(c) => c[p] = c[p].saturating_add(n),
        }
    }

    pub(super) fn get(&self, p: usize) -> u64 {
        match self {
            Buckets::Narrow(c) => u64::from(c[p]),
            Buckets::Wide(c) => c[p],
        }
    }

    /// Entry `p`, leaving zero behind.
    pub(super) fn take(&mut self, p: usize) -> u64 {
        match self {
            Buckets::Narrow(c) => u64::from(std::mem::take(&mut c[p])),
            Buckets::Wide(c) => std::mem::take(&mut c[p]),
        }
    }

    pub(super) fn slice(&self, range: RangeInclusive<usize>) -> Src<'_> {
        match self {
            Buckets::Narrow(c) => Src::Narrow(&c[range]),
            Buckets::Wide(c) => Src::Wide(&c[range]),
        }
    }

    /// Entries `range` as `u64`, borrowed when they already are.
    pub(super) fn to_wide(&self, range: RangeInclusive<usize>) -> Cow<'_, [u64]> {
        match self {
            Buckets::Narrow(c) => Cow::Owned(c[range].iter().map(|&v| u64::from(v)).collect()),
            Buckets::Wide(c) => Cow::Borrowed(&c[range]),
        }
    }

    /// For each of the ascending `ranks`, the position (within `range`) of
    /// the entry where the running total, starting at `cum`, reaches it;
    /// `None` past the end (only when saturated counts disagree with the
    /// sketch's count). One dispatch for the whole walk.
    pub(super) fn locate(
        &self,
        range: RangeInclusive<usize>,
        cum: u64,
        ranks: &[u64],
        out: &mut [Option<usize>],
    ) {
        #[inline(always)]
        fn walk<C: Count>(
            counts: &[C],
            mut cum: u64,
            ranks: &[u64],
            out: &mut [Option<usize>],
            saturate: bool,
        ) {
            let mut r = 0;
            let Some(&first) = ranks.first() else { return };
            // The next rank to reach, in a local: the loop body stays one
            // add, one compare, as a walk to a single rank needs.
            let mut target = first;
            for (p, &c) in counts.iter().enumerate() {
                cum = if saturate {
                    cum.saturating_add(c.into())
                } else {
                    cum.wrapping_add(c.into())
                };
                if target <= cum {
                    while let Some(slot) = out.get_mut(r).filter(|_| ranks[r] <= cum) {
                        *slot = Some(p);
                        r += 1;
                    }
                    match ranks.get(r) {
                        Some(&next) => target = next,
                        None => break,
                    }
                }
            }
        }
        match self {
            // Narrow: at most 2^24 counts below 2^32 on top of a zero count
            // below 2^32 cannot overflow a u64, so a plain add (one cycle on
            // the dependency chain, not two) is exact.
            Buckets::Narrow(c) => walk(&c[range], cum, ranks, out, false),
            Buckets::Wide(c) => walk(&c[range], cum, ranks, out, true),
        }
    }

    /// Replaces the buffer by one of `len` entries (same width) holding the
    /// entries `src` of the old one at position `dst`, zeros elsewhere;
    /// reuses the buffer when the length doesn't change.
    pub(super) fn relocate(&mut self, len: usize, src: RangeInclusive<usize>, dst: usize) {
        fn go<C: Count>(counts: &mut Box<[C]>, len: usize, src: RangeInclusive<usize>, dst: usize) {
            let n = src.end() - src.start() + 1;
            if counts.len() == len {
                counts.copy_within(src, dst);
                counts[..dst].fill(C::default());
                counts[dst + n..].fill(C::default());
            } else {
                let mut buf = vec![C::default(); len].into_boxed_slice();
                buf[dst..dst + n].copy_from_slice(&counts[src]);
                *counts = buf;
            }
        }
        match self {
            Buckets::Narrow(c) => go(c, len, src, dst),
            Buckets::Wide(c) => go(c, len, src, dst),
        }
    }

    /// Replaces the buffer by `len` zeros of the same width (an empty
    /// sketch's first allocation).
    pub(super) fn reset(&mut self, len: usize) {
        match self {
            Buckets::Narrow(c) => *c = vec![0; len].into_boxed_slice(),
            Buckets::Wide(c) => *c = vec![0; len].into_boxed_slice(),
        }
    }

    /// Adds `src` entry by entry from position `start`. The caller has ruled
    /// out overflow (and reserved narrow counts).
    pub(super) fn add_same_scale(&mut self, start: usize, src: Src<'_>) {
        let end = start + src.len();
        match (self, src) {
            (Buckets::Narrow(d), Src::Narrow(s)) => add_same_scale(&mut d[start..end], s),
            (Buckets::Narrow(d), Src::Wide(s)) => add_same_scale(&mut d[start..end], s),
            (Buckets::Wide(d), Src::Narrow(s)) => add_same_scale(&mut d[start..end], s),
            (Buckets::Wide(d), Src::Wide(s)) => add_same_scale(&mut d[start..end], s),
        }
    }

    /// Adds `src`, the buckets `base..` at a scale `d` (1..=63) finer, into
    /// the entries `dst`, whose first is bucket `base >> d`. The caller has
    /// ruled out overflow (and reserved narrow counts).
    pub(super) fn add_downscaled(
        &mut self,
        dst: RangeInclusive<usize>,
        src: Src<'_>,
        base: i64,
        d: u32,
    ) {
        match (self, src) {
            (Buckets::Narrow(t), Src::Narrow(s)) => add_downscaled(&mut t[dst], s, base, d),
            (Buckets::Narrow(t), Src::Wide(s)) => add_downscaled(&mut t[dst], s, base, d),
            (Buckets::Wide(t), Src::Narrow(s)) => add_downscaled(&mut t[dst], s, base, d),
            (Buckets::Wide(t), Src::Wide(s)) => add_downscaled(&mut t[dst], s, base, d),
        }
    }
}

impl<'a> Src<'a> {
    pub(super) fn len(&self) -> usize {
        match self {
            Src::Narrow(c) => c.len(),
            Src::Wide(c) => c.len(),
        }
    }

    pub(super) fn get(&self, j: usize) -> u64 {
        match self {
            Src::Narrow(c) => u64::from(c[j]),
            Src::Wide(c) => c[j],
        }
    }

    pub(super) fn slice(&self, range: RangeInclusive<usize>) -> Src<'a> {
        match *self {
            Src::Narrow(c) => Src::Narrow(&c[range]),
            Src::Wide(c) => Src::Wide(&c[range]),
        }
    }

    /// Positions of the first and last non-zero entries.
    pub(super) fn non_zero_span(&self) -> Option<(usize, usize)> {
        fn span<C: Count>(c: &[C]) -> Option<(usize, usize)> {
            let zero = C::default();
            let first = c.iter().position(|&v| v != zero)?;
            let last = c.iter().rposition(|&v| v != zero)?;
            Some((first, last))
        }
        match self {
            Src::Narrow(c) => span(c),
            Src::Wide(c) => span(c),
        }
    }

    /// Exact sum of the entries, `None` when it exceeds `u64::MAX` (only
    /// hostile OTLP points get there).
    pub(super) fn exact_total(&self) -> Option<u64> {
        match self {
            // At most 2^24 entries below 2^32 each.
            Src::Narrow(c) => u64::try_from(c.iter().map(|&v| u128::from(v)).sum::<u128>()).ok(),
            Src::Wide(c) => exact_total(c),
        }
    }
}

/// Exact sum of wide counts, `None` when it exceeds `u64::MAX`.
fn exact_total(counts: &[u64]) -> Option<u64> {
    // Halves instead of u128: two plain u64 sums the compiler vectorises,
    // neither of which can overflow within a chunk of 2^30 entries.
    let mut total: u128 = 0;
    for chunk in counts.chunks(1 << 30) {
        let (lo, hi) = chunk.iter().fold((0u64, 0u64), |(lo, hi), &c| {
            (lo + (c & 0xffff_ffff), hi + (c >> 32))
        });
        total += (u128::from(hi) << 32) + u128::from(lo);
    }
    u64::try_from(total).ok()
}

#[inline(always)]
fn widen<D: Count, S: Count>(c: S) -> D {
    D::from_u64(c.into())
}

/// `dst[i] += src[i]`, vectorised.
#[multiversion(targets("x86_64+avx2"))]
fn add_same_scale<D: Count, S: Count>(dst: &mut [D], src: &[S]) {
    for (d, &c) in dst.iter_mut().zip(src) {
        *d = d.wrapping_add(widen(c));
    }
}

/// Each group of `2^d` neighbouring source buckets (aligned on multiples of
/// `2^d` in index space, starting at index `base`) into one entry of `dst`.
#[multiversion(targets("x86_64+avx2"))]
fn add_downscaled<D: Count, S: Count>(dst: &mut [D], src: &[S], base: i64, d: u32) {
    let group = 1u64 << d;
    // Source buckets before the first group boundary: `base`'s low bits say
    // how far into its group it starts (two's complement makes that right
    // for negative indices too).
    let head = usize::try_from(group - (base as u64 & (group - 1)))
        .map_or(src.len(), |h| h.min(src.len()));
    let (head, rest) = src.split_at(head);
    let Some((first, dst)) = dst.split_first_mut() else {
        return;
    };
    *first = first.wrapping_add(sum(head));
    match d {
        1 => add_groups::<D, S, 2>(dst, rest),
        2 => add_groups::<D, S, 4>(dst, rest),
        3 => add_groups::<D, S, 8>(dst, rest),
        _ => {
            let group = usize::try_from(group).unwrap_or(usize::MAX);
            for (slot, chunk) in dst.iter_mut().zip(rest.chunks(group)) {
                *slot = slot.wrapping_add(sum(chunk));
            }
        }
    }
}

/// [`add_downscaled`] after the first group, for a group size known at
/// compile time (the common 1–3 scale steps), so the sums unroll.
#[inline(always)]
fn add_groups<D: Count, S: Count, const N: usize>(dst: &mut [D], src: &[S]) {
    let groups = src.chunks_exact(N);
    let tail = groups.remainder();
    let full = src.len() / N;
    for (slot, group) in dst.iter_mut().zip(groups) {
        *slot = slot.wrapping_add(sum(group));
    }
    if let Some(slot) = dst.get_mut(full).filter(|_| !tail.is_empty()) {
        *slot = slot.wrapping_add(sum(tail));
    }
}

#[inline(always)]
fn sum<D: Count, S: Count>(counts: &[S]) -> D {
    counts
        .iter()
        .fold(D::default(), |t, &c| t.wrapping_add(widen(c)))
}
