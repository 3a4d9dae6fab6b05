//! The verdict of a probe and its JSON (design §6): the figures of every
//! request sent, judged by the contracts' own [`check_thresholds`], so a
//! probe and the server word a failure the same way
//! (`p95 latency 130.2ms exceeds threshold 120ms`). A run in which every
//! request failed fails whatever the thresholds, with a sentence that names
//! the causes (`all 5000 requests failed: connection refused`), and so does
//! one with fewer requests than the contract's `min_samples` (the server
//! would not promote on so few either).

use std::collections::BTreeMap;

use serde::Serialize;

use super::engine::RunResult;
use crate::config::probe_plan::ProbePlan;
use crate::config::{ContractSpec, Thresholds};
use crate::contracts::evaluate::check_thresholds;

/// The result of `verdict probe`: printed on stdout and POSTed to the hooks.
/// Rates are over all requests sent; latency quantiles over every request
/// that reached the target (responses of any status, and timeouts at the
/// time they were given up).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// Every check within limits, at least `min_samples` requests sent, and
    /// not every one of them failed.
    pub passed: bool,
    /// The URL probed.
    pub url: String,
    /// Median latency (ms); `null` when no request reached the target.
    pub p50_latency_ms: Option<f64>,
    /// 95th percentile latency (ms).
    pub p95_latency_ms: Option<f64>,
    /// 99th percentile latency (ms).
    pub p99_latency_ms: Option<f64>,
    /// Failed requests over requests sent, in percent.
    pub error_rate_percent: Option<f64>,
    /// Converted requests over requests sent, in percent.
    pub conversion_rate_percent: Option<f64>,
    /// Requests sent.
    pub sample_size: u64,
    /// Requests that failed (timeout, connection error, 5xx, 4xx unless
    /// `allow_4xx`).
    pub requests_failed: u64,
    /// Failed requests by cause (`timeout`, `connection refused`, `HTTP 503`, …).
    pub requests_failed_by_cause: BTreeMap<String, u64>,
    /// Answers by HTTP status, errors or not (`{"200": 4990, "404": 10}`):
    /// what the target said, whatever the success rule made of it.
    pub status_codes: BTreeMap<String, u64>,
    /// Whether 4xx answers counted as successes (`--allow-4xx`).
    pub allow_4xx: bool,
    /// Wall time of the run, in seconds.
    pub duration_seconds: f64,
    /// Requests sent per second of the run.
    pub requests_per_second: f64,
    /// Relative error bound of the latency quantiles (the sketch's).
    pub latency_relative_error: f64,
    /// The thresholds judged by.
    pub thresholds: Thresholds,
    /// Fewest requests a passing probe sends: the contract's `min_samples`
    /// (1 without a contract).
    pub min_samples: u64,
    /// One sentence per failed check.
    pub failures: Vec<String>,
}

/// Rounds to three decimals: more digits than that are noise in a report.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Judges a finished run of `plan` against a contract's thresholds and
/// `min_samples`.
pub fn judge(spec: &ContractSpec, plan: &ProbePlan, result: &RunResult) -> ProbeReport {
    let tally = &result.tally;
    let figures = tally.figures();
    let mut failures = Vec::new();
    let sent = tally.requests();
    if sent == 0 {
        failures.push("no request was sent".to_string());
    } else if tally.failed() == sent {
        failures.push(format!("all {sent} requests failed: {}", tally.causes()));
    }
    if sent > 0 && sent < spec.min_samples {
        failures.push(format!(
            "sample size {sent} is below min_samples {}",
            spec.min_samples
        ));
    }
    failures.extend(check_thresholds(spec, tally.accum()));
    let seconds = result.elapsed.as_secs_f64();
    ProbeReport {
        passed: failures.is_empty(),
        url: plan.url.to_string(),
        p50_latency_ms: figures.p50_latency_ms.map(round3),
        p95_latency_ms: figures.p95_latency_ms.map(round3),
        p99_latency_ms: figures.p99_latency_ms.map(round3),
        error_rate_percent: figures.error_rate_percent.map(round3),
        conversion_rate_percent: figures.conversion_rate_percent.map(round3),
        sample_size: sent,
        requests_failed: tally.failed(),
        requests_failed_by_cause: tally
            .failures
            .iter()
            .map(|(f, n)| (f.to_string(), *n))
            .collect(),
        status_codes: tally
            .statuses
            .iter()
            .map(|(status, n)| (status.to_string(), *n))
            .collect(),
        allow_4xx: plan.allow_4xx,
        duration_seconds: round3(seconds),
        requests_per_second: round3(if seconds > 0.0 {
            sent as f64 / seconds
        } else {
            0.0
        }),
        latency_relative_error: figures.latency_relative_error,
        thresholds: spec.thresholds,
        min_samples: spec.min_samples,
        failures,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::tally::{Failure, Observation, Tally};

    fn result(observations: &[Observation]) -> RunResult {
        let mut tally = Tally::default();
        for o in observations {
            tally.record(o);
        }
        RunResult {
            tally,
            elapsed: Duration::from_secs(2),
        }
    }

    fn spec() -> ContractSpec {
        ContractSpec::with_thresholds(
            "probe",
            Thresholds {
                max_p95_latency_ms: Some(50.0),
                max_error_rate_percent: Some(10.0),
                min_conversion_rate_percent: Some(20.0),
                ..Thresholds::default()
            },
        )
    }

    fn answered(ms: f64, converted: bool) -> Observation {
        Observation {
            latency_ms: Some(ms),
            failure: None,
            status: Some(200),
            converted,
        }
    }

    fn plan() -> ProbePlan {
        ProbePlan::new(crate::config::probe_plan::parse_url("http://t/").expect("a URL"))
    }

    #[test]
    fn passing_run_reports_figures_over_every_request() {
        let mut obs: Vec<Observation> = (0..100).map(|i| answered(10.0, i % 4 == 0)).collect();
        obs.push(Observation {
            latency_ms: Some(10.0),
            failure: Some(Failure::Status(503)),
            status: Some(503),
            converted: false,
        });
        let report = judge(&spec(), &plan(), &result(&obs));
        assert!(report.passed, "{:?}", report.failures);
        assert_eq!(report.sample_size, 101);
        assert_eq!(report.requests_failed, 1);
        assert_eq!(report.requests_failed_by_cause["HTTP 503"], 1);
        assert_eq!(
            report.status_codes,
            BTreeMap::from([("200".to_string(), 100), ("503".to_string(), 1)])
        );
        assert_eq!(report.error_rate_percent, Some(0.99));
        assert_eq!(report.requests_per_second, 50.5);
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "passed",
            "p95_latency_ms",
            "error_rate_percent",
            "conversion_rate_percent",
            "sample_size",
            "status_codes",
            "min_samples",
            "failures",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }

    #[test]
    fn failed_checks_use_the_contract_sentences() {
        let obs: Vec<Observation> = (0..100).map(|_| answered(200.0, false)).collect();
        let report = judge(&spec(), &plan(), &result(&obs));
        assert!(!report.passed);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(report.failures[0].ends_with("ms exceeds threshold 50ms"));
        assert_eq!(
            report.failures[1],
            "conversion rate 0.0% is below threshold 20%"
        );
    }

    #[test]
    fn all_failed_fails_even_without_thresholds() {
        let refused = Observation {
            latency_ms: None,
            failure: Some(Failure::ConnectionRefused),
            status: None,
            converted: false,
        };
        let no_limits = ContractSpec::with_thresholds("probe", Thresholds::default());
        let report = judge(&no_limits, &plan(), &result(&[refused; 5]));
        assert!(!report.passed);
        assert_eq!(
            report.failures,
            ["all 5 requests failed: connection refused"]
        );
        assert_eq!(report.p95_latency_ms, None);
        assert_eq!(report.error_rate_percent, Some(100.0));
        assert!(report.status_codes.is_empty());
    }

    #[test]
    fn fewer_requests_than_min_samples_fail() {
        let mut contract = spec();
        contract.min_samples = 50;
        let obs: Vec<Observation> = (0..20).map(|_| answered(10.0, true)).collect();
        let report = judge(&contract, &plan(), &result(&obs));
        assert!(!report.passed);
        assert_eq!(report.failures, ["sample size 20 is below min_samples 50"]);
        assert_eq!(report.min_samples, 50);
        contract.min_samples = 20;
        assert!(judge(&contract, &plan(), &result(&obs)).passed);
    }
}
