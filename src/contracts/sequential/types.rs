//! Plain data types shared by the checks: inputs ([`Counts`]), outputs
//! ([`Evidence`], [`Status`]), configuration ([`Direction`]), persisted
//! state ([`State`]) and parameter errors ([`ParamError`]).

use std::fmt;

/// Where a check stands after a look.
///
/// `ProvenPassing` / `ProvenFailing` are final: once a check reaches one it
/// stays there for the rest of the run, whatever later data says (the
/// guarantee is about the *first* time a bound crosses the limit, and a
/// verdict that could flip back would be worthless to a rollout controller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Status {
    /// Not enough evidence either way yet: keep collecting.
    #[default]
    Open,
    /// The confidence sequence lies entirely on the passing side of the limit.
    ProvenPassing,
    /// The confidence sequence lies entirely on the failing side of the limit.
    ProvenFailing,
}

#[cfg_attr(not(test), allow(dead_code))]
impl Status {
    /// Stable one-byte encoding for persistence (`0` open, `1` passing,
    /// `2` failing). These numbers are part of the storage format: never
    /// renumber them.
    pub fn as_u8(self) -> u8 {
        match self {
            Status::Open => 0,
            Status::ProvenPassing => 1,
            Status::ProvenFailing => 2,
        }
    }

    /// Inverse of [`Status::as_u8`]; `None` for an unknown byte (a corrupt
    /// or newer record), so the caller decides instead of us guessing.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Status::Open),
            1 => Some(Status::ProvenPassing),
            2 => Some(Status::ProvenFailing),
            _ => None,
        }
    }

    /// `true` for either proven status.
    pub fn is_proven(self) -> bool {
        self != Status::Open
    }
}

/// Which side of the limit passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The check passes while the true share is `≤ limit` (error rate,
    /// share of requests slower than a latency threshold).
    AtMost,
    /// The check passes while the true share is `≥ limit` (conversion rate).
    AtLeast,
}

/// Cumulative counts of one arm at a look: `x` "events" (errors, requests
/// slower than L, conversions) out of `n` samples.
///
/// When the event count is only known within a range (latency exceedance
/// read from a histogram or sketch), `x_low` is the count that is surely
/// an event and `x_high` the count that possibly is one. For exact counts
/// both are equal ([`Counts::exact`]). The checks use `x_low` for the lower
/// confidence bound of the share and `x_high` for the upper one, so both
/// bounds, and therefore both decisions, are conservative.
///
/// Inconsistent input is clamped rather than rejected (it comes from
/// telemetry, not from a person): `x > n` is read as `x = n`, and
/// `x_low > x_high` is read as the range `[x_high, x_low]`, which is the
/// conservative reading for both bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Counts {
    /// Events that surely happened.
    pub x_low: u64,
    /// Events that possibly happened.
    pub x_high: u64,
    /// Samples.
    pub n: u64,
}

impl Counts {
    /// Exactly `x` events out of `n`.
    pub fn exact(x: u64, n: u64) -> Self {
        Counts {
            x_low: x,
            x_high: x,
            n,
        }
    }

    /// Between `x_low` and `x_high` events out of `n`.
    pub fn range(x_low: u64, x_high: u64, n: u64) -> Self {
        Counts { x_low, x_high, n }
    }

    /// `(x_low, x_high, n)` with `x_low ≤ x_high ≤ n` enforced as documented
    /// on the type.
    pub(crate) fn sanitized(self) -> (u64, u64, u64) {
        let lo = self.x_low.min(self.x_high).min(self.n);
        let hi = self.x_low.max(self.x_high).min(self.n);
        (lo, hi, self.n)
    }

    /// Point estimate of the share: the middle of the range over `n`
    /// (0 when `n = 0`, so callers never see NaN; `samples = 0` tells them
    /// there is no estimate).
    pub(crate) fn midpoint_share(self) -> f64 {
        let (lo, hi, n) = self.sanitized();
        if n == 0 {
            return 0.0;
        }
        // Average in f64: (lo + hi) could overflow u64.
        let mid = 0.5 * (lo as f64 + hi as f64);
        (mid / n as f64).clamp(0.0, 1.0)
    }
}

/// What a check reports at each look.
///
/// `lower` and `upper` are the *running* confidence bounds (the
/// intersection of the confidence sequence over all looks so far). They
/// are what a person reads ("95 % sure the error rate is above 4.9 %") and
/// exactly what the status is decided on:
///
/// | check            | `ProvenFailing`        | `ProvenPassing`        |
/// |------------------|------------------------|------------------------|
/// | share ≤ limit    | `lower > limit`        | `upper < limit`        |
/// | share ≥ limit    | `upper < limit`        | `lower > limit`        |
/// | B − A ≤ delta    | `lower > delta`        | `upper < delta`        |
///
/// Because the bounds are running, the current `estimate` is inside the
/// bounds of the current look but can, rarely, lie outside the running
/// interval (an earlier look already ruled those values out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evidence {
    /// Share `x/n` (middle of the count range), or the difference of shares
    /// canary − baseline for a [`super::DifferenceCheck`].
    pub estimate: f64,
    /// Running lower confidence bound.
    pub lower: f64,
    /// Running upper confidence bound.
    pub upper: f64,
    /// Samples of the subject (the canary for a difference check).
    pub samples: u64,
    /// Samples of the baseline for a difference check; `None` otherwise.
    pub baseline_samples: Option<u64>,
    /// Status after this look (sticky once proven).
    pub status: Status,
}

/// The running state of a check, as plain fields so the caller can persist
/// it next to the run (three columns) and resume after a restart.
///
/// The check's parameters (limit, direction, alpha, delta, tuning) are
/// configuration and are *not* part of the state: restore a state only
/// into a check built from the same contract version.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct State {
    /// Running lower bound.
    pub lower: f64,
    /// Running upper bound.
    pub upper: f64,
    /// [`Status::as_u8`].
    pub status: u8,
}

/// A parameter or a persisted state that the checks refuse.
///
/// Parameters come from contract configuration, so they are validated
/// (and reported) rather than silently clamped; counts come from telemetry
/// and are clamped instead (see [`Counts`]).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(test), allow(dead_code))]
pub enum ParamError {
    /// A share limit outside `[0, 1]` or not finite.
    Limit(f64),
    /// An alpha outside `(0, 0.5)` or not finite.
    Alpha(f64),
    /// A difference margin outside `[-1, 1]` or not finite.
    Delta(f64),
    /// A tuning sample size that is not finite and positive.
    TuningN(f64),
    /// A minimum-data guard that is not finite and non-negative.
    MinEvents(f64),
    /// Prior parameters that are not finite, or an odds ratio below 1 or a
    /// shape that is not positive.
    Prior,
    /// A persisted state with non-finite or out-of-range bounds, crossed
    /// bounds or an unknown status byte.
    State,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Limit(v) => write!(f, "limit {v} is not a share in [0, 1]"),
            ParamError::Alpha(v) => write!(f, "alpha {v} is not in (0, 0.5)"),
            ParamError::Delta(v) => write!(f, "delta {v} is not a difference in [-1, 1]"),
            ParamError::TuningN(v) => write!(f, "tuning sample size {v} is not positive"),
            ParamError::MinEvents(v) => {
                write!(f, "minimum expected events {v} is not a count >= 0")
            }
            ParamError::Prior => write!(f, "prior needs odds_ratio >= 1 and shape > 0"),
            ParamError::State => write!(f, "persisted check state is invalid"),
        }
    }
}

impl std::error::Error for ParamError {}

/// `alpha` must be a usable error budget: one-sided tests at `alpha ≥ 0.5`
/// are meaningless (the GrowthBook ρ formula also degenerates at 0.5).
pub(crate) fn check_alpha(alpha: f64) -> Result<f64, ParamError> {
    if alpha.is_finite() && alpha > 0.0 && alpha < 0.5 {
        Ok(alpha)
    } else {
        Err(ParamError::Alpha(alpha))
    }
}

/// Intersects the running interval `[lower, upper]` with this look's
/// interval.
///
/// If the intersection would be empty the running interval is kept as it
/// was. That can only happen after the sequence has already missed the
/// true value at some look (probability ≤ the check's error budget), and
/// keeping the old interval is still valid: it always contains the plain
/// intersection whenever that is non-empty. It also guarantees
/// `lower ≤ upper`, which makes "proven passing" and "proven failing"
/// mutually exclusive forever.
pub(crate) fn intersect(lower: &mut f64, upper: &mut f64, look_lower: f64, look_upper: f64) {
    // `f64::max/min` ignore a NaN operand, so a NaN here could never widen
    // or poison the running bounds.
    let lo = lower.max(look_lower);
    let hi = upper.min(look_upper);
    if lo <= hi {
        *lower = lo;
        *upper = hi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_roundtrip() {
        for s in [Status::Open, Status::ProvenPassing, Status::ProvenFailing] {
            assert_eq!(Status::from_u8(s.as_u8()), Some(s));
        }
        assert_eq!(Status::from_u8(3), None);
        assert!(!Status::Open.is_proven());
    }

    #[test]
    fn counts_are_sanitized() {
        assert_eq!(Counts::exact(5, 3).sanitized(), (3, 3, 3));
        assert_eq!(Counts::range(7, 2, 10).sanitized(), (2, 7, 10));
        assert_eq!(
            Counts::range(u64::MAX, u64::MAX, u64::MAX).sanitized(),
            (u64::MAX, u64::MAX, u64::MAX)
        );
        assert_eq!(Counts::exact(0, 0).midpoint_share(), 0.0);
        assert_eq!(
            Counts::range(u64::MAX, u64::MAX, u64::MAX).midpoint_share(),
            1.0
        );
        assert_eq!(Counts::range(1, 3, 10).midpoint_share(), 0.2);
    }

    #[test]
    fn intersect_keeps_interval_when_empty() {
        let (mut lo, mut hi) = (0.1, 0.3);
        intersect(&mut lo, &mut hi, 0.2, 0.5);
        assert_eq!((lo, hi), (0.2, 0.3));
        intersect(&mut lo, &mut hi, 0.35, 0.6);
        assert_eq!((lo, hi), (0.2, 0.3));
        intersect(&mut lo, &mut hi, f64::NAN, f64::NAN);
        assert_eq!((lo, hi), (0.2, 0.3));
    }
}
