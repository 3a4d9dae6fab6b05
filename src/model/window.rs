//! Tumbling windows aligned to the UTC epoch: window k covers
//! `[k·size, (k+1)·size)`. Alignment is a pure function of the timestamp and
//! the window size so that every shard and every restart agrees on it.

use std::time::Duration;

use super::UnixNanos;

/// A duration in nanoseconds, saturating (configured durations are far
/// below the 584 years a `u64` holds).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A pipeline's window settings in nanoseconds: the one place where the
/// configured durations become the arithmetic of timestamps, for the
/// receivers (late and future samples), the shards and the run engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowTiming {
    /// Window length (≥ 1).
    pub size: u64,
    /// How long after its end a window still takes samples.
    pub lateness: u64,
    /// Largest accepted distance of a sample into the future.
    pub max_clock_skew: u64,
}

impl WindowTiming {
    /// Settings from durations (a zero size is taken as 1 ns).
    pub fn new(size: Duration, lateness: Duration, max_clock_skew: Duration) -> WindowTiming {
        WindowTiming {
            size: nanos(size).max(1),
            lateness: nanos(lateness),
            max_clock_skew: nanos(max_clock_skew),
        }
    }

    /// The window that contains `ts`.
    pub fn window_of(&self, ts: UnixNanos) -> Window {
        Window::containing(ts, self.size)
    }

    /// When the window that contains `ts` closes.
    pub fn deadline_of(&self, ts: UnixNanos) -> UnixNanos {
        self.window_of(ts).deadline(self.lateness)
    }
}

/// One tumbling window, `[start, end)` in UNIX nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// Inclusive start.
    pub start: UnixNanos,
    /// Exclusive end.
    pub end: UnixNanos,
}

impl Window {
    /// The window of `size_ns` that contains `ts`.
    ///
    /// `size_ns` must be non-zero (configuration guarantees it).
    pub fn containing(ts: UnixNanos, size_ns: u64) -> Window {
        let start = ts - ts % size_ns;
        Window {
            start,
            end: start.saturating_add(size_ns),
        }
    }

    /// The window that follows this one.
    pub fn next(&self) -> Window {
        let size = self.end - self.start;
        Window {
            start: self.end,
            end: self.end.saturating_add(size),
        }
    }

    /// When this window closes: its end plus the allowed lateness.
    pub fn deadline(&self, allowed_lateness_ns: u64) -> UnixNanos {
        self.end.saturating_add(allowed_lateness_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn aligned_to_epoch() {
        let s = 60_000_000_000;
        let w = Window::containing(61_000_000_000, s);
        assert_eq!(w.start, 60_000_000_000);
        assert_eq!(w.end, 120_000_000_000);
        assert_eq!(w.next().start, 120_000_000_000);
        assert_eq!(Window::containing(59_999_999_999, s).start, 0);
    }

    proptest! {
        /// Every timestamp falls in exactly one window, and windows are
        /// monotonic in time.
        #[test]
        fn every_timestamp_in_one_window(a in 0u64..1u64 << 62, b in 0u64..1u64 << 62, size in 1u64..1u64 << 40) {
            let wa = Window::containing(a, size);
            prop_assert!(wa.start <= a && a < wa.end);
            prop_assert_eq!(wa.start % size, 0);
            let wb = Window::containing(b, size);
            if a <= b { prop_assert!(wa.start <= wb.start); }
        }
    }
}
