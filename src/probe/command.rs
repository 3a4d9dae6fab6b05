//! `verdict probe` as a library call: an [`Invocation`] (plan, thresholds,
//! hooks) in; the run (with a progress bar when stderr is a terminal), the
//! result JSON on stdout, then the `--on-pass` / `--on-fail` hook. The
//! caller maps the outcome to the exit code: pass 0, fail 1,
//! [`CommandError`] 2.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::engine::{self, Observer};
use super::hooks::{self, RetryPolicy};
use super::progress::Progress;
use super::report::{judge, ProbeReport};
use crate::config::probe_plan::ProbePlan;
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
    /// No threshold given, and no contract: refused as the server refuses a
    /// contract without thresholds, since such a probe passes whatever the
    /// target answers (short of failing every request).
    #[error(
        "no threshold set; set at least one of --max-p95-latency-ms, --max-error-rate-percent \
         or --min-conversion-rate-percent, or take a contract's with --contract FILE:contract/NAME"
    )]
    NoThresholds,
    /// The contract only compares with a baseline, which a probe has not.
    #[error(
        "contract/{0} has no absolute threshold (only baseline comparisons, and a probe has no \
         baseline); give thresholds with --max-p95-latency-ms, --max-error-rate-percent or \
         --min-conversion-rate-percent instead"
    )]
    OnlyBaseline(String),
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

/// Everything one `verdict probe` needs, however it was asked for (the
/// command line builds it from flags).
#[derive(Debug, Clone)]
pub struct Invocation {
    /// What to send.
    pub plan: ProbePlan,
    /// What the result is judged by.
    pub thresholds: ThresholdSource,
    /// POST the result JSON here when the probe passes.
    pub on_pass: Option<reqwest::Url>,
    /// POST the result JSON here when the probe fails.
    pub on_fail: Option<reqwest::Url>,
    /// Machine output even on a terminal: no progress bar, one-line JSON.
    pub json: bool,
}

/// Where the thresholds come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdSource {
    /// Given directly; at least one ([`CommandError::NoThresholds`]
    /// otherwise). `min_samples` is 1.
    Given(Thresholds),
    /// The contract `name` of the pipeline file `file`.
    Contract {
        /// The pipeline file.
        file: PathBuf,
        /// The contract's name.
        name: String,
    },
}

impl ThresholdSource {
    /// The contract the probe is judged by: its thresholds and
    /// `min_samples`.
    pub fn contract(&self) -> Result<ContractSpec, CommandError> {
        match self {
            ThresholdSource::Given(t) if *t == Thresholds::default() => {
                Err(CommandError::NoThresholds)
            }
            ThresholdSource::Given(t) => Ok(ContractSpec::with_thresholds("probe", *t)),
            ThresholdSource::Contract { file, name } => {
                let spec = load_contract(file, name)?;
                if spec.thresholds == Thresholds::default() {
                    return Err(CommandError::OnlyBaseline(spec.name));
                }
                Ok(spec)
            }
        }
    }
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
pub async fn execute(args: &Invocation) -> Result<bool, CommandError> {
    let plan = &args.plan;
    let spec = args.thresholds.contract()?;
    let target = Arc::new(super::client::Target::new(plan)?);
    let progress = (!args.json && std::io::stderr().is_terminal()).then(|| Progress::start(plan));
    let observer: Arc<dyn Observer> = match &progress {
        Some(p) => p.observer(),
        None => Arc::new(()),
    };
    let result = engine::run_target(target, plan, observer).await;
    if let Some(p) = progress {
        p.finish();
    }
    let report = judge(&spec, plan, &result);
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
    match writeln!(out, "{json}").and_then(|()| out.flush()) {
        // The reader went away (`| head`): the verdict still stands, and
        // the exit code still tells it.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.map_err(CommandError::Output),
    }
}

/// Delivers the hook; a failure is reported on stderr and does not change
/// the verdict (the result was printed already).
async fn send_hook(url: &reqwest::Url, report: &ProbeReport) {
    let body = match serde_json::to_vec(report) {
        Ok(body) => body,
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: encoding the result for {url}: {err}"
            );
            return;
        }
    };
    let delivered = match hooks::client() {
        Ok(client) => hooks::deliver(&client, url, &body, &RetryPolicy::default()).await,
        Err(err) => Err(err),
    };
    if let Err(err) = delivered {
        let _ = writeln!(std::io::stderr(), "error: hook not delivered: {err}");
    }
}
