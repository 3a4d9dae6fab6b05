//! What one probe request showed ([`Observation`]) and what many add up to
//! ([`Tally`]). The tally keeps the aggregator's own [`Accum`] — the same
//! quantile sketch and counters a window keeps — so the probe's figures are
//! computed exactly as the server computes a window's.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::Accum;
use crate::model::Figures;
pub use crate::tls::TlsFailure;

/// Why a request counts as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// No complete response within the timeout.
    Timeout,
    /// The target refused the connection (nothing listens there).
    ConnectionRefused,
    /// Any other failure to connect (DNS, unreachable, reset while connecting).
    Connect,
    /// The TLS handshake failed, and why: most often the target's
    /// certificate, which the probe names (an `https://` probe that fails
    /// every request on its certificate measured nothing).
    Tls(TlsFailure),
    /// The response status was an error: 5xx, or 4xx unless 4xx answers
    /// are allowed ([`Failure::of_status`]).
    Status(u16),
    /// The connection failed after the request was sent (reset, bad response).
    Transport,
}

impl Failure {
    /// Whether an answer with `status` is an error, by the probe's success
    /// rule: 2xx and 3xx succeed (redirects are not followed: a 3xx is the
    /// target's answer, as for wrk); 5xx fail; 4xx fail unless `allow_4xx`.
    /// A 4xx by default, because a probe of a wrong path (404) or without
    /// its credentials (401) measures nothing: 5000 answers of 404 used to
    /// pass as 5000 successes. `allow_4xx` is for targets where a 4xx is a
    /// correct answer (a probe of "not found" handling).
    pub fn of_status(status: u16, allow_4xx: bool) -> Option<Failure> {
        match status {
            500.. => Some(Failure::Status(status)),
            400..=499 if !allow_4xx => Some(Failure::Status(status)),
            _ => None,
        }
    }

    /// True when the request never reached the target, so it has no latency.
    pub fn before_request(self) -> bool {
        matches!(
            self,
            Failure::ConnectionRefused | Failure::Connect | Failure::Tls(_)
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::ConnectionRefused => f.write_str("connection refused"),
            Failure::Connect => f.write_str("connection failed"),
            Failure::Tls(why) => why.fmt(f),
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
    /// The HTTP status of the answer; `None` when there was none (timeout,
    /// connection failure).
    pub status: Option<u16>,
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
    /// Answers by HTTP status, errors or not: what the target actually said,
    /// whatever the success rule made of it.
    pub statuses: BTreeMap<u16, u64>,
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
        if let Some(status) = o.status {
            *self.statuses.entry(status).or_default() += 1;
        }
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Tally) {
        self.accum.merge(&other.accum);
        for (failure, n) in &other.failures {
            *self.failures.entry(*failure).or_default() += n;
        }
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
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

    /// Everything counted, as a contract's window would hold it.
    pub fn accum(&self) -> &Accum {
        &self.accum
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
            status: Some(200),
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
            status: None,
            converted: false,
        });
        t.record(&Observation {
            latency_ms: Some(5000.0),
            failure: Some(Failure::Timeout),
            status: None,
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
        // Only answers have a status.
        assert_eq!(merged.statuses, BTreeMap::from([(200, 16)]));
    }

    #[test]
    fn success_rule_fails_5xx_and_4xx_unless_allowed() {
        for (status, strict, allowing) in [
            (200, None, None),
            (204, None, None),
            (301, None, None),
            (304, None, None),
            (404, Some(Failure::Status(404)), None),
            (429, Some(Failure::Status(429)), None),
            (500, Some(Failure::Status(500)), Some(Failure::Status(500))),
            (503, Some(Failure::Status(503)), Some(Failure::Status(503))),
        ] {
            assert_eq!(Failure::of_status(status, false), strict, "{status}");
            assert_eq!(Failure::of_status(status, true), allowing, "{status}");
        }
    }

    #[test]
    fn one_cause_is_named_alone() {
        let mut t = Tally::default();
        for _ in 0..3 {
            t.record(&Observation {
                latency_ms: Some(1.0),
                failure: Some(Failure::Status(503)),
                status: Some(503),
                converted: false,
            });
        }
        assert_eq!(t.causes(), "HTTP 503");
    }

    #[test]
    fn tls_failures_name_the_certificate_problem() {
        use rustls::CertificateError as C;
        for (error, failure, text) in [
            (
                C::UnknownIssuer,
                TlsFailure::UnknownIssuer,
                "certificate problem: unknown issuer",
            ),
            (
                C::Expired,
                TlsFailure::Expired,
                "certificate problem: expired",
            ),
            (
                C::NotValidYet,
                TlsFailure::NotValidYet,
                "certificate problem: not valid yet",
            ),
            (
                C::NotValidForName,
                TlsFailure::NameMismatch,
                "certificate problem: name mismatch",
            ),
            (
                C::BadSignature,
                TlsFailure::Certificate,
                "certificate problem: refused",
            ),
        ] {
            let got = TlsFailure::of(&rustls::Error::InvalidCertificate(error));
            assert_eq!(got, failure);
            assert!(Failure::Tls(got).to_string().starts_with(text), "{got}");
            assert!(Failure::Tls(got).before_request());
        }
        assert_eq!(
            TlsFailure::of(&rustls::Error::NoCertificatesPresented),
            TlsFailure::Handshake
        );
    }
}
