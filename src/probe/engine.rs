//! The load loop: `concurrency` worker tasks share one request counter, each
//! with its own keep-alive [`Connection`] and its own [`Tally`] (no lock on
//! the hot path), merged at the end. An [`Observer`] hears of every request as it ends,
//! which is how the progress bar and the `probe` receiver follow a run live.
//!
//! With a rate limit, request `i` is due at `start + i / rate` whichever
//! worker takes it, so the rate holds over the whole run without a token
//! bucket; with a duration, no request starts after `start + duration`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{ClientError, Connection, Target};
use super::tally::{Observation, Tally};
use crate::config::probe_plan::{Amount, ProbePlan};

/// Hears of every request as it ends, from any worker.
pub trait Observer: Send + Sync {
    /// One request ended.
    fn observe(&self, observation: &Observation);
}

/// Nobody listening.
impl Observer for () {
    fn observe(&self, _: &Observation) {}
}

/// What a finished run counted, and how long it took.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Every request.
    pub tally: Tally,
    /// From the first request sent to the last one ended.
    pub elapsed: Duration,
}

/// Runs a plan to the end and returns what it counted. Dropping the future
/// aborts the workers (and their requests).
pub async fn run(plan: &ProbePlan, observer: Arc<dyn Observer>) -> Result<RunResult, ClientError> {
    let target = Arc::new(Target::new(plan)?);
    Ok(run_target(target, plan, observer).await)
}

/// As [`run`], with the target prepared by the caller (once for many runs).
pub async fn run_target(
    target: Arc<Target>,
    plan: &ProbePlan,
    observer: Arc<dyn Observer>,
) -> RunResult {
    let (amount, rate) = (plan.amount, plan.rate);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers = match plan.amount {
        Amount::Requests(n) => plan
            .concurrency
            .min(usize::try_from(n).unwrap_or(usize::MAX)),
        Amount::Duration(_) => plan.concurrency,
    };
    let mut set = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (target, next, observer) = (target.clone(), next.clone(), observer.clone());
        set.spawn(
            async move { worker(&target, amount, rate, &next, start, observer.as_ref()).await },
        );
    }
    let mut tally = Tally::default();
    while let Some(joined) = set.join_next().await {
        // A worker only ends by returning its tally; a panic would be a bug,
        // and its requests are then missing from the result rather than
        // taking the whole process down.
        if let Ok(part) = joined {
            tally.merge(&part);
        }
    }
    RunResult {
        tally,
        elapsed: start.elapsed(),
    }
}

/// Takes request numbers until the plan is done.
async fn worker(
    target: &Target,
    amount: Amount,
    rate: Option<f64>,
    next: &AtomicU64,
    start: Instant,
    observer: &dyn Observer,
) -> Tally {
    let mut tally = Tally::default();
    let mut connection = Connection::default();
    let deadline = match amount {
        Amount::Duration(d) => Some(start + d),
        Amount::Requests(_) => None,
    };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if let Amount::Requests(n) = amount {
            if i >= n {
                break;
            }
        }
        if let Some(rate) = rate {
            // Validation keeps the rate positive and finite; a schedule past
            // what `Instant` can hold simply ends the run.
            let due = Duration::try_from_secs_f64(i as f64 / rate)
                .ok()
                .and_then(|offset| start.checked_add(offset));
            let Some(due) = due else { break };
            if deadline.is_some_and(|d| due >= d) {
                break;
            }
            tokio::time::sleep_until(due).await;
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let observation = connection.send(target).await;
        observer.observe(&observation);
        tally.record(&observation);
    }
    tally
}
