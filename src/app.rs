//! The binary's edge: runs a subcommand and maps the outcome to an exit code.
//! `anyhow` lives here and in `main.rs` only.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{Cli, Command};
use crate::clock::SystemClock;
use crate::config;

mod targets;

/// A line on stderr, like `eprintln!` but without its panic when stderr is
/// a pipe whose reader is gone (`verdict validate 2>&1 | head -1`): there
/// is no one left to tell.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes `text` on stdout. A reader that went away (`| head -1`) is how
/// pipelines end, not a failure, so it is ignored as other command-line
/// tools do; any other write error (a full disk) is said and fails with
/// `failure`.
fn print_out(text: &str, failure: u8) -> Result<(), ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => {
            say!("error: writing to stdout: {err}");
            Err(ExitCode::from(failure))
        }
    }
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    crate::telemetry::init_logging(cli.log_format);
    match cli.command {
        Command::Validate {
            config,
            print_config,
        } => validate(&config, print_config),
        Command::Probe(args) => probe(&args),
        Command::Simulate(args) => simulate(&args),
        Command::Runs(args) => runs(&args),
        Command::Demo(args) => demo(&args),
        Command::Run { config, grace } => {
            let cfg = match config::load_file(&config) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors.0 {
                        say!("{e}");
                    }
                    say!(
                        "{}: {} problem(s); not starting",
                        config.display(),
                        errors.0.len()
                    );
                    return ExitCode::from(1);
                }
            };
            let runtime = match runtime(1) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let supervised =
                crate::topology::supervisor::supervise(config, cfg, Arc::new(SystemClock), grace);
            match runtime.block_on(supervised) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    say!("error: {err:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The multi-threaded runtime, or the exit code `failure` after saying why
/// it could not start.
fn runtime(failure: u8) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            say!("error: starting the runtime: {err}");
            ExitCode::from(failure)
        })
}

/// `verdict probe`: exit 0 pass, 1 fail, 2 when it could not run.
fn probe(args: &crate::cli::ProbeArgs) -> ExitCode {
    const USAGE_OR_CONFIG: u8 = 2;
    let runtime = match runtime(USAGE_OR_CONFIG) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let executed = match args.invocation() {
        Ok(invocation) => runtime.block_on(crate::probe::command::execute(&invocation)),
        Err(err) => Err(err),
    };
    match executed {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            say!("error: {err}");
            ExitCode::from(USAGE_OR_CONFIG)
        }
    }
}

/// The pipeline file a client command takes `what` from
/// ([`targets::pipeline`]), or, when it does not load, the exit code
/// `failure` after saying every problem and how to do without (`hint`).
fn client_pipeline(
    given: Option<&std::path::Path>,
    what: &str,
    hint: &str,
    failure: u8,
) -> Result<Option<config::ValidatedConfig>, ExitCode> {
    targets::pipeline(given).map_err(|(path, errors)| {
        for e in &errors.0 {
            say!("{e}");
        }
        say!("error: cannot read {what} from {}; {hint}", path.display());
        ExitCode::from(failure)
    })
}

/// `verdict demo`: exit 0 once the traffic is sent, 1 when the server
/// could not be reached or refused it.
fn demo(args: &crate::cli::DemoArgs) -> ExitCode {
    let pipeline = match client_pipeline(
        args.config.as_deref(),
        "the server's addresses",
        "give the OTLP/HTTP one with --endpoint URL",
        1,
    ) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let endpoint = match &args.endpoint {
        Some(url) => Ok(url.clone()),
        None => pipeline
            .as_ref()
            .and_then(targets::otlp_http_url)
            .unwrap_or_else(|| format!("http://{}", targets::DEFAULT_OTLP_HTTP))
            .parse::<reqwest::Url>(),
    };
    let endpoint = match endpoint {
        Ok(url) => url,
        Err(err) => {
            say!("error: the pipeline file's OTLP/HTTP address is no URL: {err}; give it with --endpoint URL");
            return ExitCode::from(1);
        }
    };
    let plan = args.plan(endpoint);
    let runtime = match runtime(1) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let canary = match args.canary {
        crate::demo::Canary::Good => "good: as healthy as the current release",
        crate::demo::Canary::Bad => "bad: p95 about 1.2s, 4% errors",
    };
    say!(
        "verdict demo: {} requests/s each of {} {} (current, healthy) and {} (canary, {canary}) for {}, to {}",
        plan.rate,
        plan.service,
        args.current_version,
        args.canary_version,
        humantime::format_duration(plan.duration),
        plan.endpoint
    );
    match targets::demo_api_url(pipeline.as_ref(), args.endpoint.as_ref()) {
        Some(api) => say!(
            "follow them: verdict runs default {}/{} --watch   (or {api}/)",
            plan.service,
            args.canary_version,
        ),
        None => say!(
            "follow them: verdict runs default {}/{} --watch --api URL   (URL: the API address of the `verdict run` at {}; or open it in a browser)",
            plan.service,
            args.canary_version,
            plan.endpoint
        ),
    }
    let mut progress = |line: &str| say!("verdict demo: {line}");
    match runtime.block_on(crate::demo::run(&plan, &mut progress)) {
        Ok(sent) => {
            say!(
                "verdict demo: done, {} spans accepted{}",
                sent.spans,
                if sent.retried > 0 {
                    format!(
                        " ({} requests retried while the server was busy)",
                        sent.retried
                    )
                } else {
                    String::new()
                }
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            say!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// `verdict simulate`: exit 0 with a report, 2 when it could not run.
fn simulate(args: &crate::cli::SimulateArgs) -> ExitCode {
    let plan = args.plan();
    let report = crate::simulate::command::execute(&plan)
        .and_then(|r| crate::simulate::command::print(&r, plan.json));
    match report {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            say!("error: {err}");
            ExitCode::from(2)
        }
    }
}

/// `verdict validate`: exit 0 valid, 1 invalid. With `print_config`, stdout
/// is the effective configuration as a pipeline file (its summary a
/// comment), so it can be saved and validated again.
fn validate(path: &std::path::Path, print_config: bool) -> ExitCode {
    match config::load_file(path) {
        Ok(cfg) => {
            let contracts: usize = cfg.pipelines.iter().map(|p| p.contracts.len()).sum();
            let verdict = format!(
                "{}: valid ({} pipeline(s), {} contract(s))",
                path.display(),
                cfg.pipelines.len(),
                contracts
            );
            // Served all the same, so not a problem of the file; but
            // clients will refuse it, so said before they do.
            for warning in
                config::validity::certificate_warnings(&cfg, std::time::SystemTime::now())
            {
                say!("warning: {warning}");
            }
            if print_config {
                let header = [
                    verdict,
                    "The effective configuration: the file after ${env:...}, VERDICT__... overrides and defaults; secrets redacted.".to_string(),
                ];
                print_out(&config::print::to_yaml(&cfg, &header), 1)
            } else {
                print_out(&format!("{verdict}\n"), 1)
            }
            .err()
            .unwrap_or(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                say!("{e}");
            }
            // Invalid either way: the exit code says so even when no one
            // reads the line.
            let _ = print_out(
                &format!(
                    "{}: invalid, {} problem(s)\n",
                    path.display(),
                    errors.0.len()
                ),
                1,
            );
            ExitCode::from(1)
        }
    }
}

/// `verdict runs`: exit 0 shown (or, watching one run, PROMOTED), 1 watched
/// until ROLLED_BACK, 2 when the API could not be read.
fn runs(args: &crate::cli::RunsArgs) -> ExitCode {
    const FAILED: u8 = 2;
    let api = match &args.api {
        Some(url) => url.clone(),
        None => match client_pipeline(
            args.config.as_deref(),
            "the API's address",
            "give it with --api URL",
            FAILED,
        ) {
            Ok(cfg) => targets::api_url(cfg.as_ref()),
            Err(code) => return code,
        },
    };
    let query = crate::console::RunsQuery {
        api,
        ca_file: args.ca_file.clone(),
        contract: args.contract.clone(),
        subject: args.subject.clone(),
        json: args.json,
        watch: args.watch,
        interval: args.interval,
        all: args.all,
    };
    let runtime = match runtime(FAILED) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let stdout = std::io::stdout();
    let terminal = std::io::IsTerminal::is_terminal(&stdout);
    match runtime.block_on(crate::console::execute(
        &query,
        &mut stdout.lock(),
        terminal,
    )) {
        Ok(crate::console::Outcome::RolledBack) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            say!("error: {err}");
            ExitCode::from(FAILED)
        }
    }
}
