//! What one probe request showed ([`Observation`]) and what many add up to
//! ([`Tally`]). The tally keeps the aggregator's own [`Accum`] — the same
//! quantile sketch and counters a window keeps — so the probe's figures are
//! computed exactly as the server computes a window's.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::Accum;
use crate::model::Figures;

/// Why a request counts as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// No complete response within the timeout.
    Timeout,
    /// The target refused the connection (nothing listens there).
    ConnectionRefused,
    /// Any other failure to connect (DNS, unreachable, reset while connecting).
    Connect,
    /// The response status was 5xx.
    Status(u16),
    /// The connection failed after the request was sent (reset, bad response).
    Transport,
}

impl Failure {
    /// True when the request never reached the target, so it has no latency.
    pub fn before_request(self) -> bool {
        matches!(self, Failure::ConnectionRefused | Failure::Connect)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::ConnectionRefused => f.write_str("connection refused"),
            Failure::Connect => f.write_str("connection failed"),
            Failure::Status(code) => write!(f, "HTTP {code}"),
            Failure::Transport => f.write_str("connection error"),
        }
    }
}

/// One request as the probe saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// From sending to the end of the response body (or to the timeout), in
    /// milliseconds; `None` when the connection failed before any request.
    pub latency_ms: Option<f64>,
    /// Why the request is an error, if it is one.
    pub failure: Option<Failure>,
    /// A 2xx response that carried the conversion header with `true`.
    pub converted: bool,
}

/// Requests added up: counters, latency sketch and failures by cause.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Requests sent (`samples`), errors, conversions, and the latency
    /// sketch of every request that has a latency.
    pub accum: Accum,
    /// Failed requests by cause.
    pub failures: BTreeMap<Failure, u64>,
}

impl Tally {
    /// Adds one request.
    pub fn record(&mut self, o: &Observation) {
        if let Some(ms) = o.latency_ms {
            // The engine measures with a monotonic clock: finite, ≥ 0.
            let _ = self.accum.latency.insert(ms);
        }
        self.accum.samples += 1;
        self.accum.conversions += u64::from(o.converted);
        if let Some(failure) = o.failure {
            self.accum.errors += 1;
            *self.failures.entry(failure).or_default() += 1;
        }
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Tally) {
        self.accum.merge(&other.accum);
        for (failure, n) in &other.failures {
            *self.failures.entry(*failure).or_default() += n;
        }
    }

    /// Requests sent.
    pub fn requests(&self) -> u64 {
        self.accum.samples
    }

    /// Requests that failed.
    pub fn failed(&self) -> u64 {
        self.accum.errors
    }

    /// p50/p95/p99 latency, error and conversion rates over all requests sent.
    pub fn figures(&self) -> Figures {
        Figures::of(&self.accum)
    }

    /// Failures by cause, most frequent first, as `3 timeout, 2 HTTP 503`;
    /// a single cause is named alone (`connection refused`).
    pub fn causes(&self) -> String {
        let mut causes: Vec<(&Failure, &u64)> = self.failures.iter().collect();
        causes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        match causes.as_slice() {
            [(only, _)] => only.to_string(),
            many => many
                .iter()
                .map(|(f, n)| format!("{n} {f}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ms: f64, converted: bool) -> Observation {
        Observation {
            latency_ms: Some(ms),
            failure: None,
            converted,
        }
    }

    #[test]
    fn rates_are_over_every_request_and_refused_connections_have_no_latency() {
        let mut t = Tally::default();
        for i in 0..8 {
            t.record(&ok(10.0 + f64::from(i), i % 2 == 0));
        }
        t.record(&Observation {
            latency_ms: None,
            failure: Some(Failure::ConnectionRefused),
            converted: false,
        });
        t.record(&Observation {
            latency_ms: Some(5000.0),
            failure: Some(Failure::Timeout),
            converted: false,
        });
        let f = t.figures();
        assert_eq!(f.samples, 10);
        assert_eq!(f.error_rate_percent, Some(20.0));
        assert_eq!(f.conversion_rate_percent, Some(40.0));
        assert_eq!(t.accum.latency.count(), 9);
        assert_eq!(t.causes(), "1 timeout, 1 connection refused");

        let mut merged = Tally::default();
        merged.merge(&t);
        merged.merge(&t);
        assert_eq!((merged.requests(), merged.failed()), (20, 4));
        assert_eq!(merged.failures[&Failure::Timeout], 2);
    }

    #[test]
    fn one_cause_is_named_alone() {
        let mut t = Tally::default();
        for _ in 0..3 {
            t.record(&Observation {
                latency_ms: Some(1.0),
                failure: Some(Failure::Status(503)),
                converted: false,
            });
        }
        assert_eq!(t.causes(), "HTTP 503");
    }
}
