//! `verdict simulate` as a library call: a [`Plan`] (pipeline file, contract,
//! the traffic a release will get) in; two scenarios simulated — the release
//! as given, and the same release exactly at its limits — and a report out,
//! as a table or JSON.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::{windows_for, Scenario, Shape, Side, Simulation, Summary};
use crate::config::{self, ConfigErrors, ContractSpec, Decision, OnTimeout, WindowSpec};

/// Runs per scenario by default.
pub const DEFAULT_RUNS: u64 = 1000;

/// What to simulate; figures left `None` default to a healthy release at
/// 80 % of the contract's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The pipeline file.
    pub file: PathBuf,
    /// The contract's name (may be omitted when the file has one).
    pub contract: Option<String>,
    /// Release requests per window.
    pub requests_per_window: u64,
    /// True p95 latency of the release (ms).
    pub p95_ms: Option<f64>,
    /// Latency shape.
    pub shape: Shape,
    /// True error rate of the release (percent).
    pub error_rate_percent: Option<f64>,
    /// True conversion rate of the release (percent).
    pub conversion_rate_percent: Option<f64>,
    /// The baseline's share of all traffic (percent); `None` = no
    /// baseline traffic, unless the contract compares with one (then 50).
    pub baseline_share_percent: Option<f64>,
    /// True p95 of the baseline (ms); default the release's.
    pub baseline_p95_ms: Option<f64>,
    /// True error rate of the baseline (percent); default the release's.
    pub baseline_error_rate_percent: Option<f64>,
    /// Runs per scenario.
    pub runs: u64,
    /// Seed.
    pub seed: u64,
    /// Windows per run at most, for a contract without `max_duration`.
    pub max_windows: u64,
    /// Threads (0 = one per core).
    pub threads: usize,
    /// JSON on stdout instead of a table; no progress bar.
    pub json: bool,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulateError {
    /// The pipeline file does not load.
    #[error("{}: invalid pipeline file:\n{errors}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Every problem in it.
        errors: ConfigErrors,
    },
    /// No such contract, or several and none named.
    #[error("{0}")]
    Contract(String),
    /// A figure out of range.
    #[error("{0}")]
    Traffic(String),
    /// stdout is gone.
    #[error("writing the report: {0}")]
    Output(#[source] std::io::Error),
}

/// One scenario's traffic and result, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// `as_given` or `at_the_limit`.
    pub name: &'static str,
    /// Release requests per window.
    pub requests_per_window: u64,
    /// True p95 (ms), when latencies matter to the contract.
    pub p95_ms: Option<f64>,
    /// True error rate (percent).
    pub error_rate_percent: f64,
    /// True conversion rate (percent).
    pub conversion_rate_percent: f64,
    /// Baseline requests per window, p95 and error rate, when simulated.
    pub baseline: Option<BaselineReport>,
    /// What the runs came to.
    #[serde(flatten)]
    pub summary: Summary,
}

/// The baseline's traffic in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BaselineReport {
    /// Requests per window.
    pub requests_per_window: u64,
    /// True p95 (ms).
    pub p95_ms: Option<f64>,
    /// True error rate (percent).
    pub error_rate_percent: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Contract name.
    pub contract: String,
    /// Contract version.
    pub contract_version: u32,
    /// `sequential` or `windows`.
    pub decision: &'static str,
    /// Window length (seconds).
    pub window_seconds: f64,
    /// Windows a run was simulated for at most.
    pub max_windows: u64,
    /// The windows `max_duration` spans, when more than could be simulated
    /// (runs still open after `max_windows` are then undecided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration_windows: Option<u64>,
    /// What `max_duration` decides (`rollback` or `promote`).
    pub on_timeout: &'static str,
    /// Latency shape.
    pub shape: String,
    /// Seed.
    pub seed: u64,
    /// The two scenarios.
    pub scenarios: Vec<ScenarioReport>,
}

/// Loads the contract and its pipeline's windows.
pub fn contract(plan: &Plan) -> Result<(ContractSpec, WindowSpec), SimulateError> {
    let cfg = config::load_file(&plan.file).map_err(|errors| SimulateError::Config {
        path: plan.file.clone(),
        errors,
    })?;
    let all: Vec<(&ContractSpec, &WindowSpec)> = cfg
        .pipelines
        .iter()
        .flat_map(|p| p.contracts.iter().map(move |c| (c, &p.window)))
        .collect();
    let names = || {
        all.iter()
            .map(|(c, _)| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match &plan.contract {
        Some(name) => all.iter().find(|(c, _)| &c.name == name).ok_or_else(|| {
            SimulateError::Contract(format!(
                "{}: no contract {name:?} (it has: {})",
                plan.file.display(),
                names()
            ))
        })?,
        None if all.len() == 1 => &all[0],
        None => {
            return Err(SimulateError::Contract(format!(
                "{}: name the contract to simulate with --contract (it has: {})",
                plan.file.display(),
                names()
            )))
        }
    };
    Ok((found.0.clone(), found.1.clone()))
}

fn percent(name: &str, v: f64) -> Result<f64, SimulateError> {
    if (0.0..=100.0).contains(&v) {
        Ok(v / 100.0)
    } else {
        Err(SimulateError::Traffic(format!(
            "{name} must be between 0 and 100, got {v}"
        )))
    }
}

/// The two scenarios of a plan: as given (defaults at 80 % of the limits),
/// and at the limits.
pub fn scenarios(
    plan: &Plan,
    spec: &ContractSpec,
) -> Result<[(&'static str, Scenario); 2], SimulateError> {
    let t = &spec.thresholds;
    let increase = spec
        .baseline
        .as_ref()
        .and_then(|b| b.max_p95_latency_increase_percent);
    let points = spec
        .baseline
        .as_ref()
        .and_then(|b| b.max_error_rate_increase_points);
    let latencies_matter = t.max_p50_latency_ms.is_some()
        || t.max_p95_latency_ms.is_some()
        || t.max_p99_latency_ms.is_some()
        || increase.is_some();
    let p95 = match (plan.p95_ms, t.max_p95_latency_ms) {
        (Some(v), _) if v > 0.0 && v.is_finite() => v,
        (Some(v), _) => {
            return Err(SimulateError::Traffic(format!(
                "--p95-ms must be greater than 0, got {v}"
            )))
        }
        (None, Some(limit)) => 0.8 * limit,
        (None, None) => 100.0,
    };
    let error = match plan.error_rate_percent {
        Some(v) => percent("--error-rate-percent", v)?,
        None => 0.8 * t.max_error_rate_percent.unwrap_or(0.0) / 100.0,
    };
    let conversion = match plan.conversion_rate_percent {
        Some(v) => percent("--conversion-rate-percent", v)?,
        None => (t.min_conversion_rate_percent.unwrap_or(0.0) / 100.0 / 0.8).min(1.0),
    };
    let given = Side {
        requests: plan.requests_per_window,
        p95_ms: if latencies_matter { p95 } else { 0.0 },
        shape: plan.shape,
        error_rate: error,
        conversion_rate: conversion,
    };
    let share = match plan.baseline_share_percent {
        Some(v) if spec.baseline.is_none() && (0.0..=99.0).contains(&v) => {
            return Err(SimulateError::Traffic(
                "--baseline-share-percent applies only to a contract with a baseline, and this one has none"
                    .to_string(),
            ))
        }
        Some(v) if (0.0..=99.0).contains(&v) => Some(v / 100.0),
        Some(v) => {
            return Err(SimulateError::Traffic(format!(
                "--baseline-share-percent must be between 0 and 99, got {v}"
            )))
        }
        None => spec.baseline.as_ref().map(|_| 0.5),
    };
    let baseline = match share {
        Some(share) if share > 0.0 => {
            let requests = (plan.requests_per_window as f64 * share / (1.0 - share)).round() as u64;
            let error = match plan.baseline_error_rate_percent {
                Some(v) => percent("--baseline-error-rate-percent", v)?,
                None => given.error_rate,
            };
            Some(Side {
                requests: requests.max(1),
                p95_ms: if latencies_matter {
                    plan.baseline_p95_ms.unwrap_or(p95)
                } else {
                    0.0
                },
                error_rate: error,
                ..given
            })
        }
        _ => None,
    };
    // At the limit: every figure exactly where the tightest limit allows.
    let mut limit = given;
    if let Some(l) = t.max_p95_latency_ms {
        limit.p95_ms = l;
    }
    if let Some(e) = t.max_error_rate_percent {
        limit.error_rate = e / 100.0;
    }
    if let Some(c) = t.min_conversion_rate_percent {
        limit.conversion_rate = c / 100.0;
    }
    if let Some(b) = &baseline {
        if let Some(inc) = increase {
            let at = b.p95_ms * (1.0 + inc / 100.0);
            limit.p95_ms = if t.max_p95_latency_ms.is_some() {
                limit.p95_ms.min(at)
            } else {
                at
            };
        }
        if let Some(p) = points {
            let at = (b.error_rate + p / 100.0).min(1.0);
            limit.error_rate = if t.max_error_rate_percent.is_some() {
                limit.error_rate.min(at)
            } else {
                at
            };
        }
    }
    if !latencies_matter {
        limit.p95_ms = 0.0;
    }
    Ok([
        (
            "as_given",
            Scenario {
                release: given,
                baseline,
            },
        ),
        (
            "at_the_limit",
            Scenario {
                release: limit,
                baseline,
            },
        ),
    ])
}

/// Runs the plan's simulation.
pub fn execute(plan: &Plan) -> Result<Report, SimulateError> {
    if plan.requests_per_window == 0 {
        return Err(SimulateError::Traffic(
            "--requests-per-window must be at least 1".into(),
        ));
    }
    let (spec, window) = contract(plan)?;
    let scenarios = scenarios(plan, &spec)?;
    let (max_windows, cut_from) = windows_for(&spec, &window, plan.max_windows);
    let threads = if plan.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        plan.threads
    };
    let sim = Simulation {
        spec: &spec,
        window: &window,
        runs: plan.runs,
        seed: plan.seed,
        max_windows,
        threads,
    };
    let bar = (!plan.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(
            Some(plan.runs * scenarios.len() as u64),
            ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} runs · {per_sec} · eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    });
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let mut reports = Vec::new();
    for (name, scenario) in scenarios {
        let summary = sim.summarize(&scenario, &tick);
        let latency = |p95: f64| (p95 > 0.0).then_some(p95);
        reports.push(ScenarioReport {
            name,
            requests_per_window: scenario.release.requests,
            p95_ms: latency(scenario.release.p95_ms),
            error_rate_percent: scenario.release.error_rate * 100.0,
            conversion_rate_percent: scenario.release.conversion_rate * 100.0,
            baseline: scenario.baseline.map(|b| BaselineReport {
                requests_per_window: b.requests,
                p95_ms: latency(b.p95_ms),
                error_rate_percent: b.error_rate * 100.0,
            }),
            summary,
        });
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(Report {
        contract: spec.name.clone(),
        contract_version: spec.version,
        decision: match spec.decision {
            Decision::Sequential => "sequential",
            Decision::Windows => "windows",
        },
        window_seconds: window.size.as_secs_f64(),
        max_windows,
        max_duration_windows: cut_from,
        on_timeout: match spec.on_timeout {
            OnTimeout::Rollback => "rollback",
            OnTimeout::Promote => "promote",
        },
        shape: plan.shape.describe(),
        seed: plan.seed,
        scenarios: reports,
    })
}

/// The report as a table.
pub fn table(r: &Report) -> String {
    let mut out = format!(
        "contract {} (version {}), decision {}, windows of {}s, up to {} windows a run, latencies {}, seed {}\n\
         rolled back and promoted include runs that max_duration decided (timed out, then on_timeout: {});\n\
         windows and samples are to a decision on evidence\n\n",
        r.contract, r.contract_version, r.decision, r.window_seconds, r.max_windows, r.shape, r.seed, r.on_timeout
    );
    if let Some(spans) = r.max_duration_windows {
        out.insert_str(
            out.len() - 1,
            &format!(
                "max_duration spans {spans} windows, more than are simulated: runs still open after {} windows are undecided\n",
                r.max_windows
            ),
        );
    }
    out.push_str(&format!(
        "{:<13} {:>9} {:>8} {:>7} {:>11} {:>6} {:>12} {:>10} {:>10} {:>10}  {:<17} {:<17}\n",
        "scenario",
        "requests",
        "p95",
        "errors",
        "conversions",
        "runs",
        "rolled back",
        "promoted",
        "undecided",
        "timed out",
        "windows (med/p90)",
        "samples (med/p90)"
    ));
    for s in &r.scenarios {
        let pct = |v: f64| format!("{:.1}%", v * 100.0);
        let spread = |x: &Option<super::Spread>| {
            x.map_or_else(|| "-".to_string(), |x| format!("{} / {}", x.median, x.p90))
        };
        out.push_str(&format!(
            "{:<13} {:>9} {:>8} {:>7} {:>11} {:>6} {:>12} {:>10} {:>10} {:>10}  {:<17} {:<17}\n",
            s.name.replace('_', " "),
            s.requests_per_window,
            s.p95_ms.map_or_else(|| "-".into(), |v| format!("{v:.0}ms")),
            format!("{:.2}%", s.error_rate_percent),
            format!("{:.1}%", s.conversion_rate_percent),
            s.summary.runs,
            pct(s.summary.rolled_back),
            pct(s.summary.promoted),
            pct(s.summary.undecided),
            pct(s.summary.timed_out),
            spread(&s.summary.windows_to_decision),
            spread(&s.summary.samples_to_decision),
        ));
        if let Some(b) = &s.baseline {
            out.push_str(&format!(
                "{:<13} {:>9} {:>8} {:>7}   (baseline)\n",
                "",
                b.requests_per_window,
                b.p95_ms.map_or_else(|| "-".into(), |v| format!("{v:.0}ms")),
                format!("{:.2}%", b.error_rate_percent),
            ));
        }
    }
    out
}

/// Prints the report: JSON with `--json`, a table otherwise.
pub fn print(r: &Report, json: bool) -> Result<(), SimulateError> {
    let text = if json {
        serde_json::to_string(r).map_err(|e| SimulateError::Output(e.into()))?
    } else {
        table(r)
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end()).and_then(|()| out.flush()) {
        // The reader went away (`| head`): nothing is wrong with the report.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.map_err(SimulateError::Output),
    }
}
