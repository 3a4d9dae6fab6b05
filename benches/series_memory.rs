//! Bytes per active series: the memory an aggregator shard holds for each
//! series with an open window, measured with a counting allocator at 10 k and
//! 100 k series (issue goal: ≤ 8 KiB per series).
//!
//! Each series gets 200 requests with lognormal latencies (median 40 ms,
//! spanning about two decades), the typical spread of one release's window.
//!
//! `cargo bench --bench series_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use verdict::aggregator::state::{ShardState, WindowParams};
use verdict::model::{Sample, SeriesKey, Subject};

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

/// Deterministic lognormal latencies (xorshift + Box-Muller).
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let z = (-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos();
        median * (sigma * z).exp()
    }
}

fn measure(series: usize) -> f64 {
    let mut rng = Rng(0x5EED);
    // Subjects are counted too: the shard keeps them alive.
    let before = LIVE.load(Ordering::Relaxed);
    let keys: Vec<SeriesKey> = (0..series)
        .map(|i| SeriesKey {
            contract: 0,
            subject: Subject::new(vec![
                ("service.name".into(), format!("svc-{}", i / 10)),
                ("service.version".into(), format!("1.{}.0", i % 10)),
            ]),
        })
        .collect();
    let mut state = ShardState::new(WindowParams {
        timing: verdict::model::WindowTiming {
            size: 60_000_000_000,
            lateness: 10_000_000_000,
            max_clock_skew: 0,
        },
        slots: verdict::aggregator::state::SubjectSlots::new(series + 1),
        idle: std::sync::Arc::from([3_600_000_000_000u64; 1]),
        max_streams: 1,
        stream_expiry: 900_000_000_000,
    });
    for key in &keys {
        for _ in 0..200 {
            let sample = Sample {
                series: key.clone(),
                ts: 1_000_000_000_000,
                latency_ms: rng.lognormal(40.0, 0.8),
                error: false,
                converted: false,
            };
            state.record(&sample);
        }
    }
    drop(keys);
    let held = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(state.series_count(), series);
    held as f64 / series as f64
}

fn main() {
    println!("series,bytes_per_series");
    for n in [10_000, 100_000] {
        println!("{n},{:.0}", measure(n));
    }
}
