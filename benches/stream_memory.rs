//! Bytes per cumulative metric stream: what a shard holds to turn the next
//! point of each stream into a delta, measured with a counting allocator at
//! 10 k and 100 k streams (issue 16, item 4: at most 512 B per stream plus
//! the bucket counts it must remember).
//!
//! Every stream's first point is a baseline (its start lies before any open
//! window), so the shard holds streams and no windows: the figure is the
//! stream table alone. Streams are explicit histograms of the 15
//! semantic-convention buckets, as otlp-load sends, or exponential ones of
//! 160 buckets, as SDKs do by default.
//!
//! `cargo bench --bench stream_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use verdict::aggregator::state::{ShardState, WindowParams};
use verdict::model::point::{
    Buckets, LatencyUnit, PointKind, PointLatency, PointSample, StreamId, Temporality,
};
use verdict::model::{SeriesKey, Subject};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const S: u64 = 1_000_000_000;

const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A baseline point of stream `i` (a fresh `bounds` per point, as each
/// request brings its own).
fn point(i: u64, exponential: bool, series: &SeriesKey) -> PointSample {
    let buckets = if exponential {
        Buckets::Exponential {
            scale: 3,
            offset: -60,
            counts: (0..160).map(|j| i + j).collect(),
            zero_count: 0,
            zero_threshold: 0.0,
        }
    } else {
        Buckets::Explicit {
            bounds: Arc::from(&BOUNDS[..]),
            counts: (0..15).map(|j| i + j).collect(),
        }
    };
    PointSample {
        series: series.clone(),
        ts: 1_000 * S,
        start: S,
        stream: StreamId(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i),
        temporality: Temporality::Cumulative,
        fresh: false,
        kind: PointKind::Latency(PointLatency {
            unit: LatencyUnit::Seconds,
            count: 1,
            error: false,
            sum: Some(1.0),
            min: Some(0.001),
            max: Some(9.0),
            buckets,
        }),
    }
}

/// Bytes held per stream, and the part of them that is remembered bucket
/// counts.
fn measure(streams: usize, exponential: bool) -> (f64, f64) {
    let series = SeriesKey {
        contract: 0,
        subject: Subject::named("checkout"),
    };
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = ShardState::new(WindowParams {
        timing: verdict::model::WindowTiming {
            size: 60 * S,
            lateness: 10 * S,
            max_clock_skew: 0,
        },
        slots: verdict::aggregator::state::SubjectSlots::new(16),
        idle: Arc::from([3_600 * S; 1]),
        max_streams: streams,
        stream_expiry: 900 * S,
    });
    for i in 0..streams as u64 {
        state.record_point(point(i, exponential, &series));
    }
    assert_eq!(state.streams().len(), streams);
    let held = LIVE.load(Ordering::Relaxed) - before;
    let counts = if exponential { 160 } else { 15 } * std::mem::size_of::<u64>();
    (held as f64 / streams as f64, counts as f64)
}

fn main() {
    println!("kind,streams,bytes_per_stream,of_which_bucket_counts,rest");
    for exponential in [false, true] {
        for n in [10_000, 100_000] {
            let (per, counts) = measure(n, exponential);
            let kind = if exponential {
                "exponential_160"
            } else {
                "explicit_15"
            };
            println!("{kind},{n},{per:.0},{counts:.0},{:.0}", per - counts);
        }
    }
}
