//! `verdict probe`: flags → plan and thresholds, the run (with a progress bar
//! when stderr is a terminal), the result JSON on stdout, then the
//! `--on-pass` / `--on-fail` hook. The caller maps the outcome to the exit
//! code: pass 0, fail 1, [`CommandError`] 2.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::engine::{self, Observer};
use super::hooks::{self, RetryPolicy};
use super::progress::Progress;
use super::report::{judge, ProbeReport};
use crate::cli::ProbeArgs;
use crate::config::probe_plan::{Amount, ProbePlan, DEFAULT_REQUESTS};
use crate::config::{self, ConfigErrors, ContractSpec, Thresholds};

/// Why `verdict probe` could not run (exit 2). A target that fails every
/// request is not one of these: that is a probe that ran and failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// `--body FILE` could not be read.
    #[error("reading --body {path}: {source}")]
    Body {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--contract` is not `FILE:contract/NAME`.
    #[error("--contract {0:?}: expected FILE:contract/NAME")]
    ContractSyntax(String),
    /// The pipeline file of `--contract` does not load.
    #[error("{}: invalid pipeline file:\n{errors}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Every problem in it.
        errors: ConfigErrors,
    },
    /// The file has no contract of that name.
    #[error("{}: no contract {name:?} (it has: {available})", path.display())]
    NoSuchContract {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The names it has, comma-separated.
        available: String,
    },
    /// The URL cannot be probed.
    #[error(transparent)]
    Target(#[from] super::client::ClientError),
    /// stdout is gone.
    #[error("writing the result: {0}")]
    Output(#[source] std::io::Error),
}

/// The plan the flags describe.
pub fn plan(args: &ProbeArgs) -> Result<ProbePlan, CommandError> {
    let mut plan = ProbePlan::new(args.url.clone());
    plan.method = args.method.clone();
    plan.headers = args.headers.iter().cloned().collect();
    plan.body = match &args.body {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|source| CommandError::Body {
                    path: path.clone(),
                    source,
                })?
                .into(),
        ),
        None => None,
    };
    plan.amount = match (args.requests, args.duration) {
        (_, Some(d)) => Amount::Duration(d),
        (n, None) => Amount::Requests(n.unwrap_or(DEFAULT_REQUESTS)),
    };
    plan.concurrency = args.concurrency;
    plan.timeout = args.timeout;
    plan.rate = args.rate;
    plan.conversion_header = args.conversion_header.clone();
    Ok(plan)
}

/// The contract the probe is judged by: `--contract`'s, or one made of the
/// threshold flags (none given = only "every request failed" fails).
pub fn contract(args: &ProbeArgs) -> Result<ContractSpec, CommandError> {
    let Some(reference) = &args.contract else {
        return Ok(ContractSpec::with_thresholds(
            "probe",
            Thresholds {
                max_p95_latency_ms: args.max_p95_latency_ms,
                max_error_rate_percent: args.max_error_rate_percent,
                min_conversion_rate_percent: args.min_conversion_rate_percent,
            },
        ));
    };
    let (file, id) = reference
        .rsplit_once(':')
        .filter(|(file, id)| !file.is_empty() && !id.is_empty())
        .ok_or_else(|| CommandError::ContractSyntax(reference.clone()))?;
    let name = match id.split_once('/') {
        Some(("contract", name)) => name,
        Some(_) => return Err(CommandError::ContractSyntax(reference.clone())),
        None => id,
    };
    load_contract(Path::new(file), name)
}

/// The contract `name` of the pipeline file at `path`.
pub fn load_contract(path: &Path, name: &str) -> Result<ContractSpec, CommandError> {
    let cfg = config::load_file(path).map_err(|errors| CommandError::Config {
        path: path.to_path_buf(),
        errors,
    })?;
    let contracts = cfg.pipelines.iter().flat_map(|p| &p.contracts);
    if let Some(found) = contracts.clone().find(|c| c.name == name) {
        return Ok(found.clone());
    }
    Err(CommandError::NoSuchContract {
        path: path.to_path_buf(),
        name: name.to_string(),
        available: contracts
            .map(|c| format!("contract/{}", c.name))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Runs `verdict probe`; `Ok(true)` when it passed.
pub async fn execute(args: &ProbeArgs) -> Result<bool, CommandError> {
    let plan = plan(args)?;
    let spec = contract(args)?;
    let target = Arc::new(super::client::Target::new(&plan)?);
    let progress = (!args.json && std::io::stderr().is_terminal()).then(|| Progress::start(&plan));
    let observer: Arc<dyn Observer> = match &progress {
        Some(p) => p.observer(),
        None => Arc::new(()),
    };
    let result = engine::run_target(target, &plan, observer).await;
    if let Some(p) = progress {
        p.finish();
    }
    let report = judge(&spec, plan.url.as_str(), &result);
    let pretty = !args.json && std::io::stdout().is_terminal();
    print(&report, pretty)?;
    let hook = if report.passed {
        &args.on_pass
    } else {
        &args.on_fail
    };
    if let Some(url) = hook {
        send_hook(url, &report).await;
    }
    Ok(report.passed)
}

fn print(report: &ProbeReport, pretty: bool) -> Result<(), CommandError> {
    let json = if pretty {
        serde_json::to_string_pretty(report)
    } else {
        serde_json::to_string(report)
    }
    .map_err(|e| CommandError::Output(e.into()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")
        .and_then(|()| out.flush())
        .map_err(CommandError::Output)
}

/// Delivers the hook; a failure is reported on stderr and does not change
/// the verdict (the result was printed already).
async fn send_hook(url: &reqwest::Url, report: &ProbeReport) {
    let body = match serde_json::to_vec(report) {
        Ok(body) => body,
        Err(err) => {
            eprintln!("error: encoding the result for {url}: {err}");
            return;
        }
    };
    let delivered = match hooks::client() {
        Ok(client) => hooks::deliver(&client, url, &body, &RetryPolicy::default()).await,
        Err(err) => Err(err),
    };
    if let Err(err) = delivered {
        eprintln!("error: hook not delivered: {err}");
    }
}
