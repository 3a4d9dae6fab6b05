//! `verdict simulate`: how a contract treats a release before the release
//! meets real traffic. Synthetic windows of requests (seeded) go through
//! the very run engine the server uses — same checks, same decisions,
//! same timeouts — for many runs, and the outcome is counted: how often a
//! release is rolled back, promoted or left undecided, and how many windows
//! and samples a decision takes.
//!
//! - [`traffic`]: a release's (and its baseline's) requests per window;
//! - [`command`]: `verdict simulate` (plan, scenarios, report);
//! - [`run`] (this file): one run through the engine, many runs over the
//!   cores, and the summary of a scenario.

pub mod command;
pub mod traffic;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::config::{ContractSpec, WindowSpec};
use crate::model::{ClosedWindow, EngineInput, RunState, SeriesKey, Subject, UnixNanos, Window};
use crate::runs::engine::{Engine, EngineSeed};

pub use traffic::{Shape, Side};

/// Windows simulated at most for a contract without `max_duration`.
pub const DEFAULT_MAX_WINDOWS: u64 = 500;

/// One scenario: the release's traffic, and its baseline's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    /// The release.
    pub release: Side,
    /// The baseline, when the contract compares with one.
    pub baseline: Option<Side>,
}

/// How one simulated run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// ROLLED_BACK on evidence (or by a streak).
    RolledBack,
    /// PROMOTED.
    Promoted,
    /// Still undecided after the simulated windows (no `max_duration`).
    Undecided,
}

/// One simulated run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// `max_duration` decided it (`on_timeout`), not the evidence.
    pub timed_out: bool,
    /// Windows judged until then.
    pub windows: u64,
    /// Samples of the release until then.
    pub samples: u64,
}

/// Windows a run is simulated for at most, whatever `max_duration` spans:
/// a 48 h `max_duration` over 1 s windows would otherwise mean 172,801
/// windows per run, hours of simulation.
pub const MAX_SIMULATED_WINDOWS: u64 = 10_000;

/// Windows a contract's runs are simulated for: up to `max_duration`, or
/// `cap` without one, and never more than [`MAX_SIMULATED_WINDOWS`]. The
/// second value is the windows `max_duration` spans when that was cut.
pub fn windows_for(spec: &ContractSpec, window: &WindowSpec, cap: u64) -> (u64, Option<u64>) {
    let size = window.size.as_secs_f64().max(1e-9);
    let wanted = match spec.max_duration {
        // One more than fits, so the timeout itself is reached.
        Some(d) => ((d.as_secs_f64() / size).ceil() as u64).saturating_add(1),
        None => cap,
    }
    .max(1);
    if wanted > MAX_SIMULATED_WINDOWS {
        (MAX_SIMULATED_WINDOWS, Some(wanted))
    } else {
        (wanted, None)
    }
}

/// Runs one release through the engine: one window of traffic at a time,
/// closed and watermarked as the shards would, until the run is final or
/// `max_windows` have passed.
pub fn run_once(
    spec: &ContractSpec,
    window: &WindowSpec,
    scenario: &Scenario,
    max_windows: u64,
    rng: &mut rand::rngs::SmallRng,
) -> Outcome {
    let timing = window.timing();
    // A window-aligned start far from the epoch, as real time would be.
    let start: UnixNanos = timing.size.saturating_mul(1_000_000);
    let mut engine = Engine::new(
        vec![spec.clone()],
        window,
        1,
        Vec::new(),
        EngineSeed::default(),
        start,
    );
    let subject = Subject::new(
        spec.subject_by
            .iter()
            .map(|k| (k.clone(), "simulated".to_string()))
            .collect(),
    );
    let series = SeriesKey {
        contract: 0,
        subject,
    };
    let baseline = SeriesKey {
        contract: 0,
        subject: spec
            .baseline_of(&series.subject)
            .unwrap_or_else(|| Subject::baseline(Vec::new())),
    };
    let mut samples = 0u64;
    engine.handle(
        EngineInput::SeriesSeen {
            series: series.clone(),
            ts: start,
        },
        start,
    );
    for k in 0..max_windows {
        let w = Window {
            start: start.saturating_add(k.saturating_mul(timing.size)),
            end: start.saturating_add((k + 1).saturating_mul(timing.size)),
        };
        let accum = scenario.release.window(rng);
        samples = samples.saturating_add(accum.samples);
        let close = w.deadline(timing.lateness);
        engine.handle(
            EngineInput::Closed(ClosedWindow {
                series: series.clone(),
                window: w,
                accum,
            }),
            close,
        );
        if let Some(side) = &scenario.baseline {
            engine.handle(
                EngineInput::Closed(ClosedWindow {
                    series: baseline.clone(),
                    window: w,
                    accum: side.window(rng),
                }),
                close,
            );
        }
        let commits = engine.handle(
            EngineInput::Watermark {
                shard: 0,
                now: close,
            },
            close,
        );
        for c in commits {
            let Some(event) = c.event else { continue };
            if !event.run.state.is_final() {
                continue;
            }
            let ending = if event.run.state == RunState::Promoted {
                Ending::Promoted
            } else {
                Ending::RolledBack
            };
            return Outcome {
                ending,
                timed_out: event.run.reason.starts_with("timeout"),
                windows: k + 1,
                samples,
            };
        }
    }
    Outcome {
        ending: Ending::Undecided,
        timed_out: false,
        windows: max_windows,
        samples,
    }
}

/// Median and 90th percentile of a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// Median.
    pub median: u64,
    /// 90th percentile.
    pub p90: u64,
}

fn spread(mut values: Vec<u64>) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at =
        |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
    Some(Spread {
        median: at(0.5),
        p90: at(0.9),
    })
}

/// What many runs of one scenario came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Runs simulated.
    pub runs: u64,
    /// Share rolled back, on evidence or by `max_duration` (0–1).
    pub rolled_back: f64,
    /// Share promoted, on evidence or by `max_duration` (0–1).
    pub promoted: f64,
    /// Share still undecided after the simulated windows (0–1).
    pub undecided: f64,
    /// Share decided by `max_duration` rather than evidence (0–1; part of
    /// `rolled_back` or `promoted`, as `on_timeout` says).
    pub timed_out: f64,
    /// Windows to a decision on evidence.
    pub windows_to_decision: Option<Spread>,
    /// Release samples to a decision on evidence.
    pub samples_to_decision: Option<Spread>,
}

impl Summary {
    /// Counts `outcomes`.
    pub fn of(outcomes: &[Outcome]) -> Summary {
        let n = outcomes.len().max(1) as f64;
        let share = |e: Ending| outcomes.iter().filter(|o| o.ending == e).count() as f64 / n;
        let decided: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.ending != Ending::Undecided && !o.timed_out)
            .collect();
        Summary {
            runs: outcomes.len() as u64,
            rolled_back: share(Ending::RolledBack),
            promoted: share(Ending::Promoted),
            undecided: share(Ending::Undecided),
            timed_out: outcomes.iter().filter(|o| o.timed_out).count() as f64 / n,
            windows_to_decision: spread(decided.iter().map(|o| o.windows).collect()),
            samples_to_decision: spread(decided.iter().map(|o| o.samples).collect()),
        }
    }
}

/// A contract, its window settings, and how many runs to simulate.
#[derive(Debug, Clone, Copy)]
pub struct Simulation<'a> {
    /// The contract.
    pub spec: &'a ContractSpec,
    /// Its pipeline's windows.
    pub window: &'a WindowSpec,
    /// Runs per scenario.
    pub runs: u64,
    /// Seed of the first run.
    pub seed: u64,
    /// Windows a run is simulated for at most.
    pub max_windows: u64,
    /// Threads to run on.
    pub threads: usize,
}

impl Simulation<'_> {
    /// Simulates the runs of `scenario`; run `i` draws its traffic from
    /// `traffic::rng(seed, i)`, so the result does not depend on the
    /// number of threads. `progress` is called after each run.
    pub fn summarize(&self, scenario: &Scenario, progress: &(dyn Fn() + Sync)) -> Summary {
        let next = AtomicUsize::new(0);
        let outcomes = Mutex::new(vec![None; self.runs as usize]);
        std::thread::scope(|s| {
            for _ in 0..self.threads.max(1) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i as u64 >= self.runs {
                        break;
                    }
                    let mut rng = traffic::rng(self.seed, i as u64);
                    let o = run_once(self.spec, self.window, scenario, self.max_windows, &mut rng);
                    if let Ok(mut all) = outcomes.lock() {
                        all[i] = Some(o);
                    }
                    progress();
                });
            }
        });
        let outcomes: Vec<Outcome> = outcomes
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        Summary::of(&outcomes)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
