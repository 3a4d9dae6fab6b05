//! Trying again: how long to wait after a failed attempt, and what an HTTP
//! status means for a delivery. Webhook deliveries, `verdict probe`'s hooks
//! and the run engine's storage commits all back off the same way.

use std::time::Duration;

/// Exponential backoff: `initial · 2^(attempts-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failed attempt.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `attempts`-th failed attempt (1 = the first).
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << exp).min(self.max)
    }

    /// [`Backoff::delay`] times a jitter factor in [0.5, 1.5) (`jitter` in
    /// [0, 1)), capped again. Jitter keeps many pending deliveries from
    /// hitting a recovering target at once.
    pub fn jittered(&self, attempts: u32, jitter: f64) -> Duration {
        self.delay(attempts)
            .mul_f64(0.5 + jitter.clamp(0.0, 1.0))
            .min(self.max)
    }
}

/// What an HTTP status means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Delivered,
    /// 408, 429, 5xx, anything unexpected: try again later.
    Retry,
    /// Other 4xx: final (the request itself is wrong; retrying cannot help).
    Final,
}

/// Classifies an HTTP status.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Delivered,
        408 | 429 => StatusClass::Retry,
        400..=499 => StatusClass::Final,
        _ => StatusClass::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_capped() {
        let r = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        assert_eq!(r.jittered(1, 0.5), Duration::from_secs(1));
        assert_eq!(r.jittered(2, 0.5), Duration::from_secs(2));
        assert_eq!(r.jittered(3, 0.0), Duration::from_secs(2));
        assert_eq!(r.jittered(10, 0.5), Duration::from_secs(30));
        assert_eq!(r.jittered(10, 0.99), Duration::from_secs(30));
        assert_eq!(r.jittered(u32::MAX, 0.5), Duration::from_secs(30));
        for a in 1..20 {
            let d = r.jittered(a, 0.0);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(30));
        }
        assert_eq!(r.delay(1), Duration::from_secs(1));
        assert_eq!(r.delay(3), Duration::from_secs(4));
        assert_eq!(r.delay(40), Duration::from_secs(30));
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(204), StatusClass::Delivered);
        assert_eq!(classify(404), StatusClass::Final);
        assert_eq!(classify(408), StatusClass::Retry);
        assert_eq!(classify(429), StatusClass::Retry);
        assert_eq!(classify(503), StatusClass::Retry);
        assert_eq!(classify(301), StatusClass::Retry);
    }
}
