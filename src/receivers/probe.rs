//! The `probe` receiver: the probe engine inside a pipeline. It runs its plan
//! at start, and again every `interval` if one is set, and turns every
//! request into one sample per contract that selects its `resource` —
//! exactly as a SERVER span of that resource would count — so a contract can
//! be validated on synthetic traffic before real traffic exists. Samples
//! carry `verdict.synthetic=true` in their resource, and go through the same
//! all-or-nothing [`enqueue`](super::enqueue) as OTLP data. A request is an
//! error by the same rule as for `verdict probe` (timeouts, connection
//! errors, 5xx, and 4xx unless `allow_4xx`:
//! [`Failure::of_status`](crate::probe::Failure::of_status)).
//!
//! Requests are stamped with the time they ended and flushed to the shards
//! every [`FLUSH_EVERY`], so they land in the window they happened in. A full
//! shard queue is backpressure here, not loss: the samples wait for the next
//! flush.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::otlp::convert::targets;
use super::{enqueue, PipelineInput};
use crate::clock::SharedClock;
use crate::config::ProbePlan;
use crate::config::{ProbeReceiverSpec, Source};
use crate::model::{Sample, SeriesKey, UnixNanos};
use crate::probe::client;
use crate::probe::engine::{self, Observer};
use crate::probe::Observation;
use crate::telemetry;

/// How often finished requests are pushed to the shards.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// One series a request counts for, and the shard that holds it.
#[derive(Debug)]
struct Target {
    pipeline: usize,
    series: SeriesKey,
    shard: usize,
}

/// Finished requests stamped with their end time, until the next flush.
#[derive(Debug)]
struct Pending {
    clock: SharedClock,
    done: Mutex<Vec<(UnixNanos, Observation)>>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, Vec<(UnixNanos, Observation)>> {
        // Plain data: still consistent after a panicking holder.
        self.done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Observer for Pending {
    fn observe(&self, observation: &Observation) {
        let ts = self.clock.now();
        self.lock().push((ts, *observation));
    }
}

/// Samples converted but not yet enqueued: `batches[pipeline][shard]`.
#[derive(Debug)]
struct Outbox {
    batches: Vec<Vec<Vec<Sample>>>,
    /// Requests whose samples are in `batches`.
    requests: u64,
}

/// A running probe receiver.
#[derive(Debug)]
pub struct ProbeReceiver {
    id: String,
    plan: ProbePlan,
    interval: Option<Duration>,
    pipelines: Vec<Arc<PipelineInput>>,
    targets: Vec<Target>,
    clock: SharedClock,
}

impl ProbeReceiver {
    /// A receiver feeding `pipelines`. Validation made sure its resource
    /// selects at least one contract and names every subject attribute.
    pub fn new(
        id: &str,
        spec: &ProbeReceiverSpec,
        pipelines: Vec<Arc<PipelineInput>>,
        clock: SharedClock,
    ) -> ProbeReceiver {
        let attrs: Vec<(&str, Cow<'_, str>)> = spec
            .resource
            .iter()
            .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())))
            .collect();
        let inputs: Vec<&PipelineInput> = pipelines.iter().map(Arc::as_ref).collect();
        let targets = targets(&attrs, &inputs, Source::Spans, &mut Vec::new())
            .into_iter()
            .filter_map(|t| {
                let series = t.series?;
                let shard = pipelines[t.pipeline].router.shard_of(&series);
                Some(Target {
                    pipeline: t.pipeline,
                    series,
                    shard,
                })
            })
            .collect();
        ProbeReceiver {
            id: id.to_string(),
            plan: spec.plan.clone(),
            interval: spec.interval,
            pipelines,
            targets,
            clock,
        }
    }

    /// Probes at start and every `interval` until `stop`; then flushes what
    /// it has and returns (dropping its shard senders, so the shards drain).
    pub async fn run(self, stop: CancellationToken) {
        let target = match client::Target::new(&self.plan) {
            Ok(target) => Arc::new(target),
            Err(err) => {
                tracing::error!(receiver = %self.id, error = %err, "Probe cannot run.");
                stop.cancelled().await;
                return;
            }
        };
        loop {
            let started = Instant::now();
            if !self.run_once(&target, &stop).await {
                return;
            }
            let Some(interval) = self.interval else {
                // Ran once; stays up (a receiver that ends looks like a crash).
                stop.cancelled().await;
                return;
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(started + interval) => {}
            }
        }
    }

    /// One run of the plan, flushing as it goes. False when stopped.
    async fn run_once(&self, target: &Arc<client::Target>, stop: &CancellationToken) -> bool {
        let pending = Arc::new(Pending {
            clock: self.clock.clone(),
            done: Mutex::new(Vec::new()),
        });
        let mut outbox = Outbox {
            batches: self
                .pipelines
                .iter()
                .map(|p| vec![Vec::new(); p.router.shards()])
                .collect(),
            requests: 0,
        };
        let run = engine::run_target(target.clone(), &self.plan, pending.clone());
        tokio::pin!(run);
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                // Stopping: hand over what was measured, abandon the rest.
                _ = stop.cancelled() => {
                    self.flush(&pending, &mut outbox);
                    return false;
                }
                result = &mut run => break result,
                _ = flush.tick() => {
                    self.flush(&pending, &mut outbox);
                }
            }
        };
        // The last requests: wait for room in the queues rather than drop them.
        while !self.flush(&pending, &mut outbox) {
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
            }
        }
        let figures = result.tally.figures();
        tracing::info!(
            receiver = %self.id,
            requests = result.tally.requests(),
            failed = result.tally.failed(),
            p95_latency_ms = figures.p95_latency_ms.unwrap_or(f64::NAN),
            seconds = result.elapsed.as_secs_f64(),
            "Probe run finished."
        );
        true
    }

    /// Converts the requests finished so far and enqueues everything waiting.
    /// True when nothing is left waiting.
    fn flush(&self, pending: &Pending, outbox: &mut Outbox) -> bool {
        let done = std::mem::take(&mut *pending.lock());
        outbox.requests += done.len() as u64;
        for (ts, o) in done {
            for t in &self.targets {
                outbox.batches[t.pipeline][t.shard].push(Sample {
                    series: t.series.clone(),
                    ts,
                    // No latency when the connection failed: still a request
                    // and an error, but not in the latency sketch.
                    latency_ms: o.latency_ms.unwrap_or(f64::NAN),
                    error: o.failure.is_some(),
                    converted: o.converted,
                });
            }
        }
        if outbox.requests == 0 {
            return true;
        }
        // Probe samples are few and made here, not read from a client: they
        // take no share of the in-flight byte budget.
        match enqueue(&self.pipelines, &mut outbox.batches, None) {
            Ok(()) => {
                metrics::counter!(telemetry::RECEIVER_ACCEPTED_ITEMS, "protocol" => "probe", "signal" => "traces")
                    .increment(outbox.requests);
                outbox.requests = 0;
                true
            }
            Err(full) => {
                tracing::debug!(receiver = %self.id, %full, "Shard queue full; probe samples wait.");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{
        select_resource as select, AttributeMatch, ContractSpec, Selection, Thresholds,
        SYNTHETIC_ATTRIBUTE,
    };
    use crate::probe::Failure;

    fn contract(subject_by: &[&str]) -> ContractSpec {
        let mut spec = ContractSpec::with_thresholds(
            "checkout",
            Thresholds {
                max_p95_latency_ms: Some(100.0),
                ..Thresholds::default()
            },
        );
        spec.matches = vec![
            AttributeMatch::new("service.name", "checkout").expect("glob"),
            AttributeMatch::new(SYNTHETIC_ATTRIBUTE, "true").expect("glob"),
        ];
        spec.subject_by = subject_by.iter().map(|s| s.to_string()).collect();
        spec
    }

    fn resource() -> Vec<(String, String)> {
        vec![
            ("service.name".into(), "checkout".into()),
            ("service.version".into(), "2.0.0".into()),
            (SYNTHETIC_ATTRIBUTE.into(), "true".into()),
        ]
    }

    #[test]
    fn selection_follows_the_contracts() {
        let contracts = [
            contract(&["service.name", "service.version"]),
            contract(&["service.name", "deployment.environment"]),
        ];
        let selected = select(&resource(), &contracts);
        assert_eq!(selected.len(), 2);
        match &selected[0].1 {
            Selection::Subject(s) => assert_eq!(s.joined(), "checkout/2.0.0"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            selected[1].1,
            Selection::MissingAttribute("deployment.environment".into())
        );
        let mut real = resource();
        real.pop();
        assert!(select(&real, &contracts).is_empty());
    }

    #[tokio::test]
    async fn requests_become_samples_and_wait_out_a_full_queue() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let clock = Arc::new(ManualClock::new(42_000_000_000));
        let input = Arc::new(crate::test_util::pipeline_input_with_clock(
            contract(&["service.name", "service.version"]),
            vec![tx.clone()],
            clock.clone(),
        ));
        let spec = ProbeReceiverSpec {
            plan: ProbePlan::new(
                crate::config::probe_plan::parse_url("http://127.0.0.1:9/").unwrap(),
            ),
            interval: None,
            resource: resource(),
        };
        let receiver = ProbeReceiver::new("probe", &spec, vec![input], clock.clone());
        let pending = Pending {
            clock,
            done: Mutex::new(Vec::new()),
        };
        let mut outbox = Outbox {
            batches: vec![vec![Vec::new()]],
            requests: 0,
        };
        pending.observe(&Observation {
            latency_ms: Some(12.5),
            failure: None,
            status: Some(200),
            converted: true,
        });
        pending.observe(&Observation {
            latency_ms: None,
            failure: Some(Failure::ConnectionRefused),
            status: None,
            converted: false,
        });
        // The queue is full: nothing is lost, it waits.
        let permit = tx.try_reserve().unwrap();
        assert!(!receiver.flush(&pending, &mut outbox));
        assert_eq!(outbox.batches[0][0].len(), 2);
        drop(permit);
        assert!(receiver.flush(&pending, &mut outbox));
        let crate::aggregator::ShardItems::Samples(batch) = rx.recv().await.unwrap().items else {
            panic!("probe batches carry samples");
        };
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].series.subject.joined(), "checkout/2.0.0");
        assert_eq!(batch[0].ts, 42_000_000_000);
        assert_eq!(
            (batch[0].latency_ms, batch[0].error, batch[0].converted),
            (12.5, false, true)
        );
        assert!(batch[1].latency_ms.is_nan() && batch[1].error);
    }
}
