//! The `prometheus` exporter (design §7): `/metrics` in the text exposition
//! format. Run and window gauges are rendered from the run store at scrape
//! time — so a run's series appear with the run and leave `metric_expiry`
//! after its decision without any bookkeeping — followed by verdict's own
//! counters from the process-wide metrics recorder.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::model::WindowVerdict;
use crate::model::{CheckStatus, RunRecord, RunState, WindowRecord};
use crate::runs::Catalog;
use crate::telemetry;

/// The `/metrics` route over `catalog`.
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(catalog)
}

async fn scrape(State(catalog): State<Arc<Catalog>>) -> impl IntoResponse {
    let mut body = render_runs(&catalog).await;
    body.push_str(&telemetry::metrics_handle().render());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// Escapes a label value per the exposition format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family {
    name: &'static str,
    help: &'static str,
    lines: String,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            lines: String::new(),
        }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(
            self.lines,
            "{}{{{}}} {}",
            self.name,
            labels.join(","),
            value
        );
    }

    fn write(&self, out: &mut String) {
        if self.lines.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        out.push_str(&self.lines);
    }
}

/// Renders the run and window gauges of every current run.
pub async fn render_runs(catalog: &Catalog) -> String {
    let now = catalog.clock.now();
    let expiry = crate::model::nanos(catalog.metric_expiry);
    let mut state = Family::new(
        "verdict_run_state",
        "Current state of the run (1 for the current state, 0 for the others).",
    );
    let mut info = Family::new(
        "verdict_run_info",
        "Run identity: contract version and run id.",
    );
    let mut samples = Family::new("verdict_run_samples", "Samples counted over the whole run.");
    let mut latency = Family::new(
        "verdict_window_latency_seconds",
        "Latency quantiles of the last closed window, in seconds.",
    );
    let mut errors = Family::new(
        "verdict_window_error_ratio",
        "Error ratio (0-1) of the last closed window.",
    );
    let mut conversions = Family::new(
        "verdict_window_conversion_ratio",
        "Conversion ratio (0-1) of the last closed window.",
    );
    let mut window_samples = Family::new(
        "verdict_window_samples",
        "Samples in the last closed window.",
    );
    let mut passed = Family::new("verdict_window_passed", "1 if the last closed window passed every check, 0 if it failed (absent when it had too few samples).");
    let mut check = Family::new(
        "verdict_run_check",
        "Where each check of the run stands at the latest look (1 for its status, 0 for the others): passing and failing are proven, open is not yet decided.",
    );
    let mut check_estimate = Family::new(
        "verdict_run_check_estimate_ratio",
        "The share a check tests, over the run (0-1; for a comparison with the baseline, the difference).",
    );
    let mut check_lower = Family::new(
        "verdict_run_check_lower_bound_ratio",
        "Lower confidence bound at the latest look of the share a check tests (0-1; -1 to 1 for a difference from the baseline).",
    );
    let mut check_upper = Family::new(
        "verdict_run_check_upper_bound_ratio",
        "Upper confidence bound at the latest look of the share a check tests (0-1; -1 to 1 for a difference from the baseline).",
    );
    let mut check_limit = Family::new(
        "verdict_run_check_limit_ratio",
        "The share a check allows (0-1; 0.05 for a p95 limit; for a difference from the baseline, the allowed increase).",
    );
    let mut check_samples = Family::new(
        "verdict_run_check_samples",
        "Samples the evidence of a check rests on.",
    );
    let mut rollout_percent = Family::new(
        "verdict_rollout_percent",
        "Rollout percentage of the run's flag as verdict last set it (unleash exporters).",
    );
    let mut rollout_applied = Family::new(
        "verdict_rollout_applied",
        "1 when Unleash has applied the run's latest flag change, 0 while it is pending.",
    );
    let mut rollout_next = Family::new(
        "verdict_rollout_next_step_timestamp_seconds",
        "Earliest time (UNIX seconds) of the flag's next step, or of promotion at the last step; absent while a change is pending and once final.",
    );
    let mut thresholds = Family::new(
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
        for (q, v) in [
            ("0.5", f.p50_latency_ms),
            ("0.95", f.p95_latency_ms),
            ("0.99", f.p99_latency_ms),
        ] {
            if let Some(v) = v {
                latency.sample(&[base[0], base[1], ("quantile", q)], v / 1000.0);
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
    let mut out = String::new();
    for f in [
        &thresholds,
        &state,
        &info,
        &samples,
        &latency,
        &errors,
        &conversions,
        &window_samples,
        &passed,
        &check,
        &check_estimate,
        &check_lower,
        &check_upper,
        &check_limit,
        &check_samples,
        &rollout_percent,
        &rollout_applied,
        &rollout_next,
    ] {
        f.write(&mut out);
    }
    out
}
