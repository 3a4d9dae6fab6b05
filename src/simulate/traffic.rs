//! Synthetic traffic: what a release (and its baseline) serve in one
//! window, drawn from a seeded generator, as the shards would have
//! accumulated it.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::Accum;

/// How request latencies are spread around their p95.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Lognormal with this sigma (of the log): 0.5 is a typical service,
    /// 1.0 a heavy-tailed one.
    Lognormal(f64),
    /// Pareto with this tail index (smaller = heavier tail; 2 is heavy).
    Pareto(f64),
}

impl Shape {
    /// Draws one latency (ms) whose distribution has `p95_ms` as its p95.
    fn draw(self, p95_ms: f64, rng: &mut SmallRng) -> f64 {
        match self {
            Shape::Lognormal(sigma) => {
                // z_0.95 of the standard normal.
                let median = p95_ms / (1.644_853_626_951_472_2 * sigma).exp();
                median * (sigma * standard_normal(rng)).exp()
            }
            Shape::Pareto(alpha) => {
                // P(X > x) = (xm / x)^alpha, and P(X > p95) = 0.05.
                let xm = p95_ms * 0.05f64.powf(1.0 / alpha);
                let u: f64 = 1.0 - rng.random::<f64>();
                xm / u.powf(1.0 / alpha)
            }
        }
    }

    /// `lognormal σ 0.5` / `pareto α 2`, for reports.
    pub fn describe(self) -> String {
        match self {
            Shape::Lognormal(s) => format!("lognormal σ {s}"),
            Shape::Pareto(a) => format!("pareto α {a}"),
        }
    }
}

/// Box–Muller: one standard normal draw.
fn standard_normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// What one side (the release, or its baseline) serves each window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Side {
    /// Requests per window.
    pub requests: u64,
    /// True p95 latency (ms); 0 = no latencies at all (only the rates
    /// matter; faster to simulate).
    pub p95_ms: f64,
    /// Latency shape.
    pub shape: Shape,
    /// True share of failed requests (0–1).
    pub error_rate: f64,
    /// True share of converted requests (0–1).
    pub conversion_rate: f64,
}

/// One request a side served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Its latency (ms); `None` when the side draws no latencies.
    pub latency_ms: Option<f64>,
    /// It failed.
    pub error: bool,
    /// It converted.
    pub converted: bool,
}

impl Side {
    /// One request of this side: what `verdict simulate` adds to a window
    /// and what `verdict demo` sends as a span.
    pub fn request(&self, rng: &mut SmallRng) -> Request {
        Request {
            latency_ms: (self.p95_ms > 0.0).then(|| self.shape.draw(self.p95_ms, rng)),
            error: rng.random::<f64>() < self.error_rate,
            converted: rng.random::<f64>() < self.conversion_rate,
        }
    }

    /// One window of this side's requests.
    pub fn window(&self, rng: &mut SmallRng) -> Accum {
        let mut acc = Accum::default();
        for _ in 0..self.requests {
            let request = self.request(rng);
            if let Some(latency) = request.latency_ms {
                let _ = acc.latency.insert(latency);
            }
            acc.errors += u64::from(request.error);
            acc.conversions += u64::from(request.converted);
        }
        acc.samples = self.requests;
        acc
    }
}

/// The generator of run `index` of a simulation seeded with `seed`: the
/// same run gets the same traffic whatever the number of threads.
pub fn rng(seed: u64, index: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_latencies_have_the_asked_p95() {
        for shape in [
            Shape::Lognormal(0.5),
            Shape::Lognormal(1.0),
            Shape::Pareto(2.0),
        ] {
            let side = Side {
                requests: 200_000,
                p95_ms: 120.0,
                shape,
                error_rate: 0.02,
                conversion_rate: 0.3,
            };
            let acc = side.window(&mut rng(7, 0));
            let p95 = acc.latency.quantile(0.95).map_or(0.0, |q| q.value);
            assert!((p95 - 120.0).abs() < 3.0, "{shape:?}: {p95}");
            let errors = acc.errors as f64 / acc.samples as f64;
            assert!((errors - 0.02).abs() < 0.002, "{errors}");
            let conversions = acc.conversions as f64 / acc.samples as f64;
            assert!((conversions - 0.3).abs() < 0.005, "{conversions}");
        }
    }
}
