//! The start-up summary: each pipeline's effective windows and contracts in
//! a line, logged by `verdict run` when it starts and after every reload.
//! It is the first thing to check when a run does not behave (did my
//! `VERDICT__…` override apply? which contract version is live?).

use super::print::contract_id;
use super::validated::{ContractSpec, Decision, Source, ValidatedConfig};

/// One pipeline's effective windows and contracts in a line each, for the
/// start-up log: what a person checks first when a run does not behave
/// (did my `VERDICT__…` override apply? which version is live?).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSummary {
    /// The pipeline's name.
    pub pipeline: String,
    /// `60s windows, judged 10s after they end`.
    pub window: String,
    /// One description per contract (see [`describe_contract`]).
    pub contracts: Vec<String>,
}

/// The start-up summary of every pipeline of `config`.
pub fn summary(config: &ValidatedConfig) -> Vec<PipelineSummary> {
    config
        .pipelines
        .iter()
        .map(|p| PipelineSummary {
            pipeline: p.name.clone(),
            window: format!(
                "{} windows, judged {} after they end",
                humantime::format_duration(p.window.size),
                humantime::format_duration(p.window.allowed_lateness)
            ),
            contracts: p.contracts.iter().map(describe_contract).collect(),
        })
        .collect()
}

/// `contract/default v1 (spans, subject service.name/service.version,
/// sequential alpha 0.05): p95 <= 500ms, errors <= 1%, min_samples 300`.
pub fn describe_contract(c: &ContractSpec) -> String {
    let mut checks = c.thresholds.describe("<=", ">=", "ms");
    if let Some(b) = &c.baseline {
        let matched: Vec<String> = b
            .matches
            .iter()
            .map(|m| format!("{}={}", m.key, m.pattern))
            .collect();
        let mut limits = Vec::new();
        if let Some(p) = b.max_p95_latency_increase_percent {
            limits.push(format!("p95 +{p}%"));
        }
        if let Some(p) = b.max_error_rate_increase_points {
            limits.push(format!("errors +{p} points"));
        }
        checks.push(format!(
            "baseline {} ({})",
            matched.join(","),
            limits.join(", ")
        ));
    }
    checks.push(format!("min_samples {}", c.min_samples));
    let decision = match c.decision {
        Decision::Sequential => format!("sequential alpha {}", c.alpha),
        Decision::Windows => format!("windows: pass {} / fail {}", c.pass_windows, c.fail_windows),
    };
    let source = match c.source {
        Source::Spans => "spans",
        Source::Metrics => "metrics",
    };
    format!(
        "{} v{} ({source}, subject {}, {decision}{}): {}",
        contract_id(c),
        c.version,
        c.subject_by.join("/"),
        if c.dry_run { ", dry run" } else { "" },
        checks.join(", ")
    )
}
