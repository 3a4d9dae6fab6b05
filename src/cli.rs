//! The command line (design §1): `verdict run`, `verdict validate`,
//! `verdict probe`. Values are checked here, so a bad flag is a usage error
//! (exit 2) before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::config::probe_plan::{
    parse_header_line, parse_header_name, parse_method, parse_url, Amount, ProbePlan,
    DEFAULT_CONVERSION_HEADER, DEFAULT_REQUESTS, MAX_CONCURRENCY,
};
use crate::config::Thresholds;
use crate::probe::command::{CommandError, Invocation, ThresholdSource};
use crate::simulate::Shape;
use crate::telemetry::LogFormat;

/// verdict turns live OpenTelemetry telemetry into release decisions:
/// PROMOTED or ROLLED_BACK, per versioned validation contract.
#[derive(Debug, Parser)]
#[command(name = "verdict", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server with a pipeline file.
    Run {
        /// Pipeline file (YAML).
        #[arg(short, long, default_value = "pipelines/default.yaml")]
        config: PathBuf,
        /// How long a graceful stop may take before giving up.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
    },
    /// Check a pipeline file and print every problem with its path.
    Validate {
        /// Pipeline file (YAML).
        #[arg(short, long, default_value = "pipelines/default.yaml")]
        config: PathBuf,
        /// Print the effective configuration (after `${env:…}`,
        /// `VERDICT__…` overrides and defaults) on stdout as a pipeline
        /// file, secrets redacted.
        #[arg(long)]
        print_config: bool,
    },
    /// Send synthetic traffic to a URL and judge it against thresholds:
    /// prints the result JSON on stdout; exit 0 pass, 1 fail, 2 usage or
    /// config error.
    Probe(Box<ProbeArgs>),
    /// Show runs as the API has them: every run, one contract's current
    /// runs, or one run with its checks, windows and transitions. With
    /// `--watch`, follow them; on one run, exit 0 once PROMOTED and 1 once
    /// ROLLED_BACK.
    Runs(Box<RunsArgs>),
    /// Simulate a contract before a rollout: how often it rolls back a
    /// healthy release, and how fast it catches one at its limits. Runs
    /// the server's own decision engine on seeded synthetic traffic.
    Simulate(Box<SimulateArgs>),
    /// Send demo traffic: OTLP spans of a healthy current release of
    /// `checkout` and of a canary that is good (PROMOTED) or bad
    /// (ROLLED_BACK), to a running `verdict run`.
    Demo(Box<DemoArgs>),
}

/// `verdict demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The canary: `good` (as healthy as the current release) or `bad`
    /// (p95 about 1.2 s, 4% errors).
    #[arg(long, value_enum, default_value = "bad")]
    pub canary: crate::demo::Canary,
    /// OTLP/HTTP address of the server (`/v1/traces` is added) [default:
    /// the OTLP/HTTP listener of the pipeline file (`https://` when it has
    /// `tls:`), else http://127.0.0.1:4318].
    #[arg(long, value_parser = parse_url)]
    pub endpoint: Option<Url>,
    /// Pipeline file whose OTLP/HTTP listener and API to send to and point
    /// at [default: pipelines/default.yaml when there is one].
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// For an https:// endpoint: PEM CA certificates to trust besides the
    /// system's roots (a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Requests per second of each release (1 to 100,000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// How long to send (`40s`, `5m`).
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub duration: Duration,
    /// `service.name` of both releases.
    #[arg(long, default_value = "checkout")]
    pub service: String,
    /// `service.version` of the current release.
    #[arg(long, default_value = "2.0.0")]
    pub current_version: String,
    /// `service.version` of the canary.
    #[arg(long, default_value = "2.1.0")]
    pub canary_version: String,
    /// Bearer token of the OTLP receiver (`auth.bearer_token`).
    #[arg(long, env = "VERDICT_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seed of the traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl DemoArgs {
    /// The traffic these flags describe, sent to `endpoint` (`--endpoint`,
    /// or where the pipeline file says).
    pub fn plan(&self, endpoint: Url) -> crate::demo::Plan {
        crate::demo::Plan {
            endpoint,
            ca_file: self.ca_file.clone(),
            service: self.service.clone(),
            releases: crate::demo::Plan::releases(
                &self.current_version,
                &self.canary_version,
                self.canary,
            ),
            rate: self.rate,
            duration: self.duration,
            token: self.token.clone().filter(|t| !t.is_empty()),
            seed: self.seed,
        }
    }
}

/// `verdict runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// A contract: its current runs.
    pub contract: Option<String>,
    /// A subject of the contract (its values joined with `/`, e.g.
    /// `checkout/2.0.1`; a `/` inside a value is written %2F): that run.
    pub subject: Option<String>,
    /// The API's URL [default: `service.api` of the pipeline file
    /// (`https://` when it has `tls:`), else http://127.0.0.1:8686].
    #[arg(long, env = "VERDICT_API", value_name = "URL")]
    pub api: Option<String>,
    /// Pipeline file whose `service.api` to read [default:
    /// pipelines/default.yaml when there is one].
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// For an https:// API: PEM CA certificates to trust besides the
    /// system's roots (a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The API's JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh until stopped, or until the run (with SUBJECT) is decided.
    #[arg(long)]
    pub watch: bool,
    /// How often `--watch` refreshes.
    #[arg(long, default_value = "2s", value_parser = refresh_interval)]
    pub interval: Duration,
    /// Also list runs that were replaced (by a reset or a new contract
    /// version).
    #[arg(long)]
    pub all: bool,
}

/// `verdict simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Pipeline file (YAML).
    #[arg(short, long, default_value = "pipelines/default.yaml")]
    pub config: PathBuf,
    /// The contract to simulate (needed when the file has several).
    #[arg(long, value_name = "NAME")]
    pub contract: Option<String>,
    /// Requests the release serves per window (at most 100,000,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub requests_per_window: u64,
    /// The release's true p95 latency [default: 80% of the contract's limit].
    #[arg(long, value_parser = latency_ms)]
    pub p95_ms: Option<f64>,
    /// How latencies spread around their p95: `lognormal` (sigma 0.5),
    /// `lognormal:SIGMA` (up to 5), `pareto` (tail index 2) or
    /// `pareto:INDEX` (0.1 to 100).
    #[arg(long, default_value = "lognormal", value_parser = shape)]
    pub shape: Shape,
    /// The release's true error rate [default: 80% of the contract's limit].
    #[arg(long, value_parser = percent)]
    pub error_rate_percent: Option<f64>,
    /// The release's true conversion rate [default: the contract's floor / 0.8].
    #[arg(long, value_parser = percent)]
    pub conversion_rate_percent: Option<f64>,
    /// The baseline's share of all traffic, 0 to 99 [default: 50 when the
    /// contract has a baseline].
    #[arg(long, value_parser = baseline_share)]
    pub baseline_share_percent: Option<f64>,
    /// The baseline's true p95 [default: the release's].
    #[arg(long, value_parser = latency_ms)]
    pub baseline_p95_ms: Option<f64>,
    /// The baseline's true error rate [default: the release's].
    #[arg(long, value_parser = percent)]
    pub baseline_error_rate_percent: Option<f64>,
    /// Runs per scenario (at most 10,000,000).
    #[arg(long, default_value_t = crate::simulate::command::DEFAULT_RUNS, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub runs: u64,
    /// Seed of the synthetic traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Windows a run is simulated for when the contract has no max_duration
    /// (at most 10,000).
    #[arg(long, default_value_t = crate::simulate::DEFAULT_MAX_WINDOWS, value_parser = clap::value_parser!(u64).range(1..=crate::simulate::MAX_SIMULATED_WINDOWS))]
    pub max_windows: u64,
    /// Threads [default: one per core].
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// JSON on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl SimulateArgs {
    /// The simulation these flags describe.
    pub fn plan(&self) -> crate::simulate::command::Plan {
        crate::simulate::command::Plan {
            file: self.config.clone(),
            contract: self.contract.clone(),
            requests_per_window: self.requests_per_window,
            p95_ms: self.p95_ms,
            shape: self.shape,
            error_rate_percent: self.error_rate_percent,
            conversion_rate_percent: self.conversion_rate_percent,
            baseline_share_percent: self.baseline_share_percent,
            baseline_p95_ms: self.baseline_p95_ms,
            baseline_error_rate_percent: self.baseline_error_rate_percent,
            runs: self.runs,
            seed: self.seed,
            max_windows: self.max_windows,
            threads: self.threads,
            json: self.json,
        }
    }
}

/// `lognormal`, `lognormal:0.8`, `pareto`, `pareto:1.5`.
/// Beyond these the draws overflow or stop meaning anything: a lognormal
/// with sigma 5 already has its p99.99 at 10^5 times its p95, and a Pareto
/// index below 0.1 puts the median at 10^13 times below the p95.
fn shape(text: &str) -> Result<Shape, String> {
    let (kind, parameter) = match text.split_once(':') {
        Some((k, p)) => (k, Some(p)),
        None => (text, None),
    };
    let value = |default: f64, range: std::ops::RangeInclusive<f64>| -> Result<f64, String> {
        match parameter {
            None => Ok(default),
            Some(p) => match p.parse::<f64>() {
                Ok(v) if v > 0.0 && range.contains(&v) => Ok(v),
                _ => Err(format!(
                    "expected a number from {} to {} after {kind}:, got {p:?}",
                    range.start(),
                    range.end()
                )),
            },
        }
    };
    match kind {
        "lognormal" => Ok(Shape::Lognormal(value(0.5, 0.0..=5.0)?)),
        "pareto" => Ok(Shape::Pareto(value(2.0, 0.1..=100.0)?)),
        other => Err(format!("expected lognormal or pareto, got {other:?}")),
    }
}

/// `verdict probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// URL to send requests to (http://…).
    #[arg(long, value_parser = parse_url)]
    pub url: Url,
    /// Number of requests [default: 1000 unless --duration is given].
    #[arg(long, short = 'n', conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Send requests for this long instead of a fixed number (`30s`, `5m`).
    #[arg(long, value_parser = positive_duration)]
    pub duration: Option<Duration>,
    /// Requests in flight at once (and keep-alive connections kept). No
    /// short flag: `-c` is `--config` in `run` and `validate`.
    #[arg(long, default_value_t = crate::config::probe_plan::DEFAULT_CONCURRENCY, value_parser = concurrency)]
    pub concurrency: usize,
    /// Per request, from sending to the end of the response body.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub timeout: Duration,
    /// At most this many requests per second over the run.
    #[arg(long, value_parser = positive_number)]
    pub rate: Option<f64>,
    /// HTTP method.
    #[arg(long, short = 'X', default_value = "GET", value_parser = parse_method)]
    pub method: Method,
    /// Request header `NAME:VALUE`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE", value_parser = parse_header_line)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// File whose contents are sent as the request body.
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// Response header whose value `true` on a 2xx marks a conversion.
    #[arg(long, default_value = DEFAULT_CONVERSION_HEADER, value_parser = parse_header_name)]
    pub conversion_header: HeaderName,
    /// Count 4xx answers as successes. By default 2xx and 3xx succeed and a
    /// 4xx is an error, like a 5xx: a probe of a wrong path or without its
    /// credentials measures nothing.
    #[arg(long = "allow-4xx")]
    pub allow_4xx: bool,
    /// For an https:// URL: PEM CA certificates to trust besides the
    /// system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Fail when the p95 latency exceeds this many milliseconds.
    #[arg(long, value_parser = positive_number)]
    pub max_p95_latency_ms: Option<f64>,
    /// Fail when more than this percentage of requests fail.
    #[arg(long, value_parser = percent)]
    pub max_error_rate_percent: Option<f64>,
    /// Fail when fewer than this percentage of requests convert.
    #[arg(long, value_parser = percent)]
    pub min_conversion_rate_percent: Option<f64>,
    /// Take the thresholds and `min_samples` of a contract in a pipeline
    /// file: `FILE:contract/NAME` (e.g.
    /// `pipelines/default.yaml:contract/default`). Without it, at least one
    /// threshold flag is required.
    #[arg(long, value_name = "FILE:contract/NAME", conflicts_with_all = ["max_p95_latency_ms", "max_error_rate_percent", "min_conversion_rate_percent"])]
    pub contract: Option<String>,
    /// POST the result JSON here when the probe passes (retried on failure).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub on_pass: Option<Url>,
    /// POST the result JSON here when the probe fails (retried on failure).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub on_fail: Option<Url>,
    /// Machine output even on a terminal: no progress bar, the result JSON
    /// on one line.
    #[arg(long)]
    pub json: bool,
}

impl ProbeArgs {
    /// The probe these flags describe (reads `--body`).
    pub fn invocation(&self) -> Result<Invocation, CommandError> {
        let mut plan = ProbePlan::new(self.url.clone());
        plan.method = self.method.clone();
        plan.headers = self.headers.iter().cloned().collect();
        plan.body = match &self.body {
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
        plan.amount = match (self.requests, self.duration) {
            (_, Some(d)) => Amount::Duration(d),
            (n, None) => Amount::Requests(n.unwrap_or(DEFAULT_REQUESTS)),
        };
        plan.concurrency = self.concurrency;
        plan.timeout = self.timeout;
        plan.rate = self.rate;
        plan.conversion_header = self.conversion_header.clone();
        plan.allow_4xx = self.allow_4xx;
        plan.tls.ca_file = self.ca_file.clone();
        Ok(Invocation {
            plan,
            thresholds: self.thresholds()?,
            on_pass: self.on_pass.clone(),
            on_fail: self.on_fail.clone(),
            json: self.json,
        })
    }

    /// `--contract FILE:contract/NAME`, or the threshold flags.
    fn thresholds(&self) -> Result<ThresholdSource, CommandError> {
        let Some(reference) = &self.contract else {
            return Ok(ThresholdSource::Given(Thresholds {
                max_p95_latency_ms: self.max_p95_latency_ms,
                max_error_rate_percent: self.max_error_rate_percent,
                min_conversion_rate_percent: self.min_conversion_rate_percent,
                ..Thresholds::default()
            }));
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
        Ok(ThresholdSource::Contract {
            file: PathBuf::from(file),
            name: name.to_string(),
        })
    }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be greater than 0".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("invalid duration {text:?}: {e}")),
    }
}

fn refresh_interval(text: &str) -> Result<Duration, String> {
    match positive_duration(text)? {
        d if d < Duration::from_millis(100) => Err("must be at least 100ms".to_string()),
        d => Ok(d),
    }
}

fn concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number between 1 and {MAX_CONCURRENCY}, got {text:?}"
        )),
    }
}

fn number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("expected a number, got {text:?}")),
    }
}

fn positive_number(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be greater than 0, got {v}"))
    }
}

/// A simulated latency: positive, and at most 10^9 ms (11 days), beyond
/// which nothing a contract limits is meant.
fn latency_ms(text: &str) -> Result<f64, String> {
    let v = positive_number(text)?;
    if v <= 1e9 {
        Ok(v)
    } else {
        Err(format!("must be at most 1000000000 (ms), got {v}"))
    }
}

/// The baseline's share of traffic: 0 to 99 %; at 99.99 % the baseline
/// would send 10,000 requests for each of the release's.
fn baseline_share(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if (0.0..=99.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be between 0 and 99, got {v}"))
    }
}

fn percent(text: &str) -> Result<f64, String> {
    let v = number(text)?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be between 0 and 100, got {v}"))
    }
}
