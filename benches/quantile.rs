//! Benchmarks of the window sketch (`verdict::sketch::Sketch`):
//! the per-value cost shards pay on ingest, the cost of merging shard and
//! window sketches, and the cost of answering quantile questions.
//!
//! Run with `cargo bench --bench quantile`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use verdict::sketch::Sketch;

/// Tiny deterministic PRNG (xorshift64*), so the data is the same on every
/// run without a `rand` dependency.
struct XorShift(u64);

impl XorShift {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by Box-Muller (one of the pair is enough here).
    fn next_normal(&mut self) -> f64 {
        let (u1, u2) = (self.next_unit(), self.next_unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Latency-like data: lognormal with a median of 20 (ms) and sigma 1, so
/// about 14 octaves (~900 buckets at scale 6) are in use.
fn lognormal(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = XorShift(seed);
    (0..n)
        .map(|_| (20f64.ln() + rng.next_normal()).exp())
        .collect()
}

/// A sketch at `scale` with one non-empty bucket for each of `buckets`
/// consecutive indices centred on 1.0 (values at bucket midpoints, random
/// counts), i.e. filled to the width a full window sketch has.
fn filled(scale: i32, buckets: i64, seed: u64) -> Sketch {
    let mut rng = XorShift(seed);
    let mut s = Sketch::with_params(scale, 2048);
    let per_octave = (scale as f64).exp2();
    for i in 0..buckets {
        let v = ((i - buckets / 2) as f64 + 0.5) / per_octave;
        let _ = s.insert_n(v.exp2(), 1 + rng.next_u64() % 1000);
    }
    s
}

/// Name of the criterion group every case below reports under.
const GROUP: &str = "verdict::aggregator::Sketch";

/// Ingest cost: one million lognormal latencies into a fresh default sketch
/// (scale 6, 2048 buckets), growth of the buffer included; the per-element
/// time is what each shard pays per span.
fn insert_1m_lognormal(c: &mut Criterion) {
    let data = lognormal(1_000_000, 0x5EED_0001);
    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(data.len() as u64));
    group.bench_function("insert/1M_lognormal", |b| {
        b.iter(|| {
            let mut s = Sketch::new();
            for &v in &data {
                let _ = s.insert(v);
            }
            black_box(s)
        })
    });
    group.finish();
}

/// Merging two full window sketches of the same scale (~2040 buckets each):
/// the bucket-wise addition a run does per shard and per window.
fn merge_same_scale(c: &mut Criterion) {
    let a = filled(6, 2040, 1);
    let b = filled(6, 2040, 2);
    assert!(a.bucket_count() > 2000 && b.bucket_count() > 2000);
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("merge/same_scale_2048", |bench| {
        bench.iter_batched(
            || a.clone(),
            |mut x| {
                x.merge(black_box(&b));
                x
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Merging a full scale-8 sketch into a full scale-6 one (~2040 buckets
/// each): the finer side is downscaled on the fly (4 buckets into 1), as when
/// a shard or an OTLP point kept more resolution than the window.
fn merge_different_scales(c: &mut Criterion) {
    let a = filled(6, 2040, 3);
    let b = filled(8, 2040, 4);
    assert!(a.bucket_count() > 2000 && b.bucket_count() > 2000);
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("merge/different_scales_2048", |bench| {
        bench.iter_batched(
            || a.clone(),
            |mut x| {
                x.merge(black_box(&b));
                x
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A window of one million lognormal latencies, as the quantile cases query.
fn window() -> Sketch {
    let mut s = Sketch::new();
    for v in lognormal(1_000_000, 0x5EED_0002) {
        let _ = s.insert(v);
    }
    s
}

/// One quantile (p95) of a window of one million lognormal latencies: a walk
/// over the bucket counts to the rank, then one bucket midpoint.
fn quantile_p95(c: &mut Criterion) {
    let s = window();
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("quantile/p95", |b| {
        b.iter(|| black_box(&s).quantile(black_box(0.95)))
    });
    group.finish();
}

/// The usual report triple (p50, p95, p99) of the same window in one pass
/// over the buckets.
fn quantiles_p50_p95_p99(c: &mut Criterion) {
    let s = window();
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("quantiles/p50_p95_p99", |b| {
        b.iter(|| black_box(&s).quantiles(black_box(&[0.5, 0.95, 0.99])))
    });
    group.finish();
}

criterion_group!(
    benches,
    insert_1m_lognormal,
    merge_same_scale,
    merge_different_scales,
    quantile_p95,
    quantiles_p50_p95_p99
);
criterion_main!(benches);
