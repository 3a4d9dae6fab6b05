//! The run, window, check, rollout and threshold gauges, read from the run
//! store at scrape time: a run's series appear with the run and leave
//! `metric_expiry` after its decision without any bookkeeping.

use crate::model::WindowVerdict;
use crate::model::{CheckStatus, RunRecord, RunState, WindowRecord};
use crate::runs::Catalog;

use super::exposition::{Family, Type};

/// The run and window families of every current run.
pub async fn families(catalog: &Catalog) -> Vec<Family> {
    let now = catalog.clock.now();
    let expiry = crate::model::nanos(catalog.metric_expiry);
    let mut state = Family::gauge(
        "verdict_run_state",
        "Current state of the run (1 for the current state, 0 for the others).",
    );
    let mut info = Family::new(
        "verdict_run_info",
        Type::Info,
        "Run identity: contract version and run id.",
    );
    let mut samples = Family::gauge("verdict_run_samples", "Samples counted over the whole run.");
    // Not a summary (whose quantiles cover everything observed so far):
    // one window's percentiles, labelled as the contracts name them.
    let mut latency = Family::gauge(
        "verdict_window_latency_seconds",
        "Latency percentiles (p50, p95, p99) of the last closed window, in seconds.",
    );
    let mut window_start = Family::gauge(
        "verdict_window_start_timestamp_seconds",
        "Start (UNIX seconds, inclusive) of the window the verdict_window_ gauges describe.",
    );
    let mut window_end = Family::gauge(
        "verdict_window_end_timestamp_seconds",
        "End (UNIX seconds, exclusive) of the window the verdict_window_ gauges describe.",
    );
    let mut errors = Family::gauge(
        "verdict_window_error_ratio",
        "Error ratio (0-1) of the last closed window.",
    );
    let mut conversions = Family::gauge(
        "verdict_window_conversion_ratio",
        "Conversion ratio (0-1) of the last closed window.",
    );
    let mut window_samples = Family::gauge(
        "verdict_window_samples",
        "Samples in the last closed window.",
    );
    let mut passed = Family::gauge("verdict_window_passed", "1 if the last closed window passed every check, 0 if it failed (absent when it had too few samples).");
    let mut check = Family::gauge(
        "verdict_run_check",
        "Where each check of the run stands at the latest look (1 for its status, 0 for the others): passing and failing are proven, open is not yet decided.",
    );
    let mut check_estimate = Family::gauge(
        "verdict_run_check_estimate_ratio",
        "The share a check tests, over the run (0-1; for a comparison with the baseline, the difference).",
    );
    let mut check_lower = Family::gauge(
        "verdict_run_check_lower_bound_ratio",
        "Lower confidence bound at the latest look of the share a check tests (0-1; -1 to 1 for a difference from the baseline).",
    );
    let mut check_upper = Family::gauge(
        "verdict_run_check_upper_bound_ratio",
        "Upper confidence bound at the latest look of the share a check tests (0-1; -1 to 1 for a difference from the baseline).",
    );
    let mut check_limit = Family::gauge(
        "verdict_run_check_limit_ratio",
        "The share a check allows (0-1; 0.05 for a p95 limit; for a difference from the baseline, the allowed increase).",
    );
    let mut check_samples = Family::gauge(
        "verdict_run_check_samples",
        "Samples the evidence of a check rests on.",
    );
    let mut rollout_percent = Family::gauge(
        "verdict_rollout_percent",
        "Rollout percentage of the run's flag as verdict last set it (unleash exporters).",
    );
    let mut rollout_applied = Family::gauge(
        "verdict_rollout_applied",
        "1 when Unleash has applied the run's latest flag change, 0 while it is pending.",
    );
    let mut rollout_next = Family::gauge(
        "verdict_rollout_next_step_timestamp_seconds",
        "Earliest time (UNIX seconds) of the flag's next step, or of promotion at the last step; absent while a change is pending and once final.",
    );
    let mut thresholds = Family::gauge(
        "verdict_contract_threshold",
        "The thresholds of each contract's current version, in base units: latencies in seconds, rates as ratios (0-1); for dashboards' threshold lines.",
    );
    for c in &catalog.contracts {
        let t = &c.thresholds;
        for (name, v) in [
            (
                "max_p50_latency_seconds",
                t.max_p50_latency_ms.map(|ms| ms / 1000.0),
            ),
            (
                "max_p95_latency_seconds",
                t.max_p95_latency_ms.map(|ms| ms / 1000.0),
            ),
            (
                "max_p99_latency_seconds",
                t.max_p99_latency_ms.map(|ms| ms / 1000.0),
            ),
            (
                "max_error_ratio",
                t.max_error_rate_percent.map(|p| p / 100.0),
            ),
            (
                "min_conversion_ratio",
                t.min_conversion_rate_percent.map(|p| p / 100.0),
            ),
        ] {
            if let Some(v) = v {
                thresholds.sample(&[("contract", c.name.as_str()), ("threshold", name)], v);
            }
        }
    }
    let mut runs: Vec<(RunRecord, Option<WindowRecord>)> = Vec::new();
    for c in &catalog.contracts {
        // The current contract version's live runs with their last window,
        // one query each: after a version bump an old verdict must not look
        // current, and final runs leave after `metric_expiry`.
        match catalog
            .store
            .live_runs(&c.name, c.version, now.saturating_sub(expiry))
            .await
        {
            Ok(r) => runs.extend(r),
            Err(err) => tracing::warn!(error = %err, "Scrape could not read runs."),
        }
    }
    for (run, last) in runs {
        let contract = run.contract.as_str();
        let subject = run.subject.joined();
        let base = [("contract", contract), ("subject", subject)];
        match catalog.store.rollouts(&run.run_id).await {
            Ok(list) => {
                for r in list {
                    let labels = [
                        base[0],
                        base[1],
                        ("exporter", r.exporter.as_str()),
                        ("flag", r.flag.as_str()),
                    ];
                    let percent = if r.enabled { f64::from(r.percent) } else { 0.0 };
                    rollout_percent.sample(&labels, percent);
                    rollout_applied.sample(&labels, if r.acked_at.is_some() { 1.0 } else { 0.0 });
                    if let Some(at) = r.next_step_at {
                        rollout_next.sample(&labels, at as f64 / 1e9);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "Scrape could not read rollouts."),
        }
        for s in RunState::ALL {
            state.sample(
                &[base[0], base[1], ("state", s.as_str())],
                if run.state == s { 1.0 } else { 0.0 },
            );
        }
        let version = run.contract_version.to_string();
        info.sample(
            &[
                ("contract", contract),
                ("contract_version", &version),
                ("subject", subject),
                ("run_id", &run.run_id),
            ],
            1.0,
        );
        samples.sample(&base, run.cumulative.samples as f64);
        for c in &run.evidence.checks {
            let labels = [base[0], base[1], ("check", c.check.as_str())];
            for s in CheckStatus::ALL {
                check.sample(
                    &[labels[0], labels[1], labels[2], ("status", s.as_str())],
                    if c.status == s { 1.0 } else { 0.0 },
                );
            }
            if let Some(e) = c.estimate {
                check_estimate.sample(&labels, e);
            }
            check_lower.sample(&labels, c.lower);
            check_upper.sample(&labels, c.upper);
            check_limit.sample(&labels, c.limit);
            check_samples.sample(&labels, c.samples as f64);
        }
        let Some(w) = last else { continue };
        let f = &w.figures;
        window_start.sample(&base, w.window.start as f64 / 1e9);
        window_end.sample(&base, w.window.end as f64 / 1e9);
        for (p, v) in [
            ("p50", f.p50_latency_ms),
            ("p95", f.p95_latency_ms),
            ("p99", f.p99_latency_ms),
        ] {
            if let Some(v) = v {
                latency.sample(&[base[0], base[1], ("percentile", p)], v / 1000.0);
            }
        }
        if let Some(e) = f.error_rate_percent {
            errors.sample(&base, e / 100.0);
        }
        if let Some(c) = f.conversion_rate_percent {
            conversions.sample(&base, c / 100.0);
        }
        window_samples.sample(&base, f.samples as f64);
        match w.result {
            WindowVerdict::Pass => passed.sample(&base, 1.0),
            WindowVerdict::Fail => passed.sample(&base, 0.0),
            WindowVerdict::Insufficient => {}
        }
    }
    vec![
        thresholds,
        state,
        info,
        samples,
        window_start,
        window_end,
        latency,
        errors,
        conversions,
        window_samples,
        passed,
        check,
        check_estimate,
        check_lower,
        check_upper,
        check_limit,
        check_samples,
        rollout_percent,
        rollout_applied,
        rollout_next,
    ]
}
