//! The progress bar of `verdict probe` on a terminal: requests done (or time
//! elapsed, for `--duration`), requests per second, and the live p95 and
//! error rate, redrawn ten times a second on stderr. Workers only add to a
//! shared tally under a short lock; the drawing happens on a ticker task.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::engine::Observer;
use super::tally::{Observation, Tally};
use crate::config::probe_plan::{Amount, ProbePlan};
use crate::model::Figures;

/// The tally the bar reads, fed by every worker.
#[derive(Debug, Default)]
struct Live(Mutex<Tally>);

impl Live {
    fn lock(&self) -> MutexGuard<'_, Tally> {
        // A worker that panicked mid-record leaves a tally that is still a
        // fine thing to draw.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Observer for Live {
    fn observe(&self, observation: &Observation) {
        self.lock().record(observation);
    }
}

/// The live figures as the bar shows them: `p95 12.3ms · errors 0.4%`.
pub fn status_line(figures: &Figures) -> String {
    let p95 = figures
        .p95_latency_ms
        .map_or_else(|| "-".to_string(), |v| format!("{v:.1}ms"));
    let errors = figures
        .error_rate_percent
        .map_or_else(|| "-".to_string(), |v| format!("{v:.1}%"));
    format!("p95 {p95} · errors {errors}")
}

/// A progress bar on stderr, following a run.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    live: Arc<Live>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Draws a bar for `plan` on stderr; call only when stderr is a terminal.
    pub fn start(plan: &ProbePlan) -> Progress {
        let (length, by_time) = match plan.amount {
            Amount::Requests(n) => (n, false),
            Amount::Duration(d) => (d.as_millis().try_into().unwrap_or(u64::MAX), true),
        };
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        let template = if by_time {
            "{spinner} [{elapsed_precise}] {wide_bar} {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let live = Arc::new(Live::default());
        let ticker = {
            let (bar, live) = (bar.clone(), live.clone());
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    let (done, figures) = {
                        let tally = live.lock();
                        (tally.requests(), tally.figures())
                    };
                    let elapsed = started.elapsed();
                    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
                    bar.set_position(if by_time {
                        elapsed.as_millis().try_into().unwrap_or(u64::MAX)
                    } else {
                        done
                    });
                    bar.set_message(format!("{rate:.0} req/s · {}", status_line(&figures)));
                }
            })
        };
        Progress { bar, live, ticker }
    }

    /// The observer to hand to the engine.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.live.clone()
    }

    /// Stops drawing and clears the bar.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_shows_p95_and_error_rate() {
        let mut tally = Tally::default();
        for i in 0..100 {
            tally.record(&Observation {
                latency_ms: Some(10.0),
                failure: (i < 3).then_some(super::super::Failure::Timeout),
                status: (i >= 3).then_some(200),
                converted: false,
            });
        }
        let line = status_line(&tally.figures());
        assert!(line.starts_with("p95 10.0ms"), "{line}");
        assert!(line.ends_with("errors 3.0%"), "{line}");
        assert_eq!(status_line(&Tally::default().figures()), "p95 - · errors -");
    }
}
