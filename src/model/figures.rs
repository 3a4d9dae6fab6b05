//! The figures a window or a run shows (quantiles, rates, samples and the
//! bound of the latency answers) and the result of judging a window. Every
//! stage after the aggregator reads them: contracts judge them, runs record
//! them, storage keeps them, exporters and the API show them.

use serde::{Deserialize, Serialize};

use super::Accum;

/// Observed figures of a window or a run, in the contract's units.
///
/// Its serde form is how storage keeps a window's figures (the API and
/// events use the `verdict.v1` messages instead): renaming a field here
/// changes the stored format, which `storage::codec`'s tests pin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Figures {
    /// Median latency (ms); `None` without samples.
    pub p50_latency_ms: Option<f64>,
    /// 95th percentile latency (ms).
    pub p95_latency_ms: Option<f64>,
    /// 99th percentile latency (ms).
    pub p99_latency_ms: Option<f64>,
    /// Failed requests over all requests, in percent.
    pub error_rate_percent: Option<f64>,
    /// Converted requests over all requests, in percent.
    pub conversion_rate_percent: Option<f64>,
    /// Requests.
    pub samples: u64,
    /// Relative error bound of the latency sketch (e.g. 0.0054 at scale 6,
    /// 0.043 at scale 3, where SDK exponential histograms often arrive).
    pub latency_relative_error: f64,
    /// Quantiles are approximate beyond the sketch's bound: explicit-bucket
    /// histograms were spread inside their buckets.
    #[serde(default)]
    pub latency_approximate: bool,
    /// Absolute bound (ms) of the p95 answer: the sketch's relative bound,
    /// plus the explicit bucket's width when approximate; `+inf` when the
    /// p95 lies in an open bucket (above the last bound, no `max`).
    #[serde(flatten, with = "p95_latency_bound")]
    pub p95_latency_error_ms: Option<f64>,
    /// Absolute bound (ms) of the median, as for the p95.
    #[serde(flatten, with = "p50_latency_bound")]
    pub p50_latency_error_ms: Option<f64>,
    /// Absolute bound (ms) of the p99, as for the p95.
    #[serde(flatten, with = "p99_latency_bound")]
    pub p99_latency_error_ms: Option<f64>,
}

/// Serde for an absolute bound where `+inf` means "no bound": JSON has no
/// infinity, so it is written as the finite bound (or null) and a flag.
macro_rules! unbounded_as_flag {
    ($module:ident, $finite:ident, $flag:ident) => {
        mod $module {
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            #[derive(Serialize, Deserialize)]
            struct Repr {
                #[serde(default)]
                $finite: Option<f64>,
                #[serde(default)]
                $flag: bool,
            }

            pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
                Repr {
                    $finite: v.filter(|v| v.is_finite()),
                    $flag: v.is_some_and(|v| v.is_infinite()),
                }
                .serialize(s)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
                let r = Repr::deserialize(d)?;
                Ok(if r.$flag {
                    Some(f64::INFINITY)
                } else {
                    r.$finite
                })
            }
        }
    };
}

unbounded_as_flag!(
    p95_latency_bound,
    p95_latency_error_ms,
    p95_latency_unbounded
);
unbounded_as_flag!(
    p50_latency_bound,
    p50_latency_error_ms,
    p50_latency_unbounded
);
unbounded_as_flag!(
    p99_latency_bound,
    p99_latency_error_ms,
    p99_latency_unbounded
);
unbounded_as_flag!(p95_bound, p95_error_ms, p95_unbounded);

/// The quantile bound of a window or a run, as the API reports it. Its
/// serde form is how storage keeps a run's bound.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencyBound {
    /// Relative bound of the sketch.
    pub relative_error: f64,
    /// Explicit buckets were spread.
    pub approximate: bool,
    /// Absolute bound of the p95 (ms); `+inf` = unbounded.
    #[serde(flatten, with = "p95_bound")]
    pub p95_error_ms: Option<f64>,
}

impl LatencyBound {
    /// The worse of two bounds (a run's bound is the worst of its windows).
    pub fn worst(self, other: LatencyBound) -> LatencyBound {
        LatencyBound {
            relative_error: self.relative_error.max(other.relative_error),
            approximate: self.approximate || other.approximate,
            p95_error_ms: match (self.p95_error_ms, other.p95_error_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// JSON fields: `latency_relative_error`, `latency_approximate` and
    /// `p95_latency_error_ms` (`null` when unbounded or unknown).
    pub fn json_fields(&self) -> [(&'static str, serde_json::Value); 3] {
        [
            ("latency_relative_error", self.relative_error.into()),
            ("latency_approximate", self.approximate.into()),
            (
                "p95_latency_error_ms",
                self.p95_error_ms
                    .filter(|v| v.is_finite())
                    .map_or(serde_json::Value::Null, Into::into),
            ),
        ]
    }
}

impl Figures {
    /// Computes the figures of an accumulation.
    pub fn of(acc: &Accum) -> Figures {
        let qs = acc.latency.quantiles(&[0.5, 0.95, 0.99]);
        // The sketch counts in its input's unit (seconds for most metrics).
        let ms = acc.unit.to_ms();
        let q = |i: usize| qs.get(i).copied().flatten().map(|q| q.value);
        // A conversions counter from another metric can outrun the
        // requests; a rate above 100 % would only confuse.
        let rate =
            |n: u64| (acc.samples > 0).then(|| (n as f64 * 100.0 / acc.samples as f64).min(100.0));
        Figures {
            p50_latency_ms: q(0).map(|v| v * ms),
            p95_latency_ms: q(1).map(|v| v * ms),
            p99_latency_ms: q(2).map(|v| v * ms),
            error_rate_percent: rate(acc.errors),
            conversion_rate_percent: rate(acc.conversions),
            samples: acc.samples,
            latency_relative_error: acc.relative_error(),
            latency_approximate: acc.approximate(),
            p95_latency_error_ms: q(1).map(|v| acc.error_bound(v) * ms),
            p50_latency_error_ms: q(0).map(|v| acc.error_bound(v) * ms),
            p99_latency_error_ms: q(2).map(|v| acc.error_bound(v) * ms),
        }
    }

    /// The latency quantile `q` (0.5, 0.95 or 0.99, in ms) with its absolute
    /// bound (`+inf` when unbounded); `None` without latencies.
    pub fn latency(&self, q: Quantile) -> Option<(f64, f64)> {
        let (value, bound) = match q {
            Quantile::P50 => (self.p50_latency_ms, self.p50_latency_error_ms),
            Quantile::P95 => (self.p95_latency_ms, self.p95_latency_error_ms),
            Quantile::P99 => (self.p99_latency_ms, self.p99_latency_error_ms),
        };
        // Rows stored before the p50/p99 bounds existed: the sketch's
        // relative bound is the least that applies.
        let fallback = |v: f64| {
            let rel = self.latency_relative_error.min(0.999);
            rel * v / (1.0 - rel)
        };
        value.map(|v| (v, bound.unwrap_or_else(|| fallback(v))))
    }

    /// The quantile bound of these figures.
    pub fn bound(&self) -> LatencyBound {
        LatencyBound {
            relative_error: self.latency_relative_error,
            approximate: self.latency_approximate,
            p95_error_ms: self.p95_latency_error_ms,
        }
    }
}

/// A latency quantile a contract can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantile {
    /// The median.
    P50,
    /// The 95th percentile.
    P95,
    /// The 99th percentile.
    P99,
}

impl Quantile {
    /// All three, in order.
    pub const ALL: [Quantile; 3] = [Quantile::P50, Quantile::P95, Quantile::P99];

    /// The quantile as a fraction (0.95).
    pub fn fraction(self) -> f64 {
        match self {
            Quantile::P50 => 0.5,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
        }
    }

    /// The share of values above it (0.05 for the p95), exactly.
    pub fn tail(self) -> f64 {
        match self {
            Quantile::P50 => 0.5,
            Quantile::P95 => 0.05,
            Quantile::P99 => 0.01,
        }
    }

    /// Its name in sentences (`p95`).
    pub fn name(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
        }
    }
}

/// The result of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowVerdict {
    /// Every check within limits.
    Pass,
    /// At least one check failed.
    Fail,
    /// Too few samples to judge: neither breaks nor extends a streak.
    Insufficient,
}

/// A judged window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOutcome {
    /// Pass, fail or insufficient.
    pub verdict: WindowVerdict,
    /// One sentence per failed check.
    pub failures: Vec<String>,
    /// One sentence per check the window could not judge (its figure's
    /// bound straddles the limit), which makes it insufficient.
    pub notes: Vec<String>,
}
