//! The shard task: owns one [`ShardState`], records batches from its bounded
//! queue and closes windows on a timer, so windows close on wall-clock time
//! even when no data arrives.
//!
//! A window closes once its deadline has passed **and** every batch accepted
//! before the deadline has been taken in. The shard can fall behind its
//! queue (a burst of new series waits for their runs to be created, a slow
//! storage holds the engine); closing on the clock alone would then drop as
//! late the samples a receiver accepted in time and answered 200 for. While
//! batches wait in the queue, windows close only up to the time the last
//! batch taken in was accepted: the queue is FIFO, so everything accepted
//! before it has been recorded.

use std::time::Duration;

use tokio::sync::mpsc;

use super::state::{RecordOutcome, ShardState};
use super::{ShardBatch, ShardItems};
use crate::clock::SharedClock;
use crate::model::{EngineInput, UnixNanos};
use crate::telemetry;

/// One shard and its channels.
#[derive(Debug)]
pub struct Shard {
    /// Shard index.
    pub id: usize,
    /// Pipeline name (metric label).
    pub pipeline: String,
    /// The pure state.
    pub state: ShardState,
    /// Batches from the receivers.
    pub input: mpsc::Receiver<ShardBatch>,
    /// To the run engine.
    pub output: mpsc::Sender<EngineInput>,
    /// Wall-clock source.
    pub clock: SharedClock,
    /// How often windows are closed.
    pub tick: Duration,
    /// Cancelled when the pipeline stops (see [`super::Setup::drain`]).
    pub drain: tokio_util::sync::CancellationToken,
    /// How often the open windows are sent for the checkpoint.
    pub checkpoint_interval: Duration,
    /// Where the stream table is left when the shard stops (see
    /// [`super::carry`]).
    pub carry: super::carry::Carry,
    /// What the stream table is keyed by.
    pub layout: super::carry::Layout,
}

impl Shard {
    /// A copy of this shard's open windows, for the engine's checkpoint.
    fn snapshot(&self) -> EngineInput {
        EngineInput::Snapshot {
            shard: self.id,
            series: self.state.snapshot(),
        }
    }

    /// Runs until the input closes and is drained, then sends its open
    /// windows one last time so that a graceful stop checkpoints them.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = tokio::time::Instant::now() + self.checkpoint_interval;
        let mut checkpoint = tokio::time::interval_at(start, self.checkpoint_interval);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let label = self.id.to_string();
        let depth = metrics::gauge!(telemetry::QUEUE_DEPTH, "shard" => label, "pipeline" => self.pipeline.clone());
        let late = metrics::counter!(telemetry::LATE_SAMPLES);
        let overflow = metrics::counter!(telemetry::SERIES_OVERFLOW);
        let streams = metrics::gauge!(telemetry::METRIC_STREAMS, "shard" => self.id.to_string(), "pipeline" => self.pipeline.clone());
        let streams_overflow =
            metrics::counter!(telemetry::METRIC_STREAMS_OVERFLOW, "reason" => "streams");
        let buckets_overflow =
            metrics::counter!(telemetry::METRIC_STREAMS_OVERFLOW, "reason" => "buckets");
        let streams_expired = metrics::counter!(telemetry::METRIC_STREAMS_EXPIRED);
        let stream_resets = metrics::counter!(telemetry::METRIC_STREAM_RESETS);
        let (mut late_seen, mut overflow_seen) = (0, 0);
        // A table kept across a reload has counted already.
        let mut streams_seen = {
            let t = self.state.streams();
            (
                t.overflowed(),
                t.expired(),
                t.resets(),
                t.bucket_overflowed(),
            )
        };
        let mut closing = false;
        // When the last batch taken in was accepted.
        let mut taken_until: UnixNanos = 0;
        // The bucket counts of the point being recorded (reused: see
        // `PointBatch::for_each_whole`).
        let mut counts = Vec::new();
        loop {
            tokio::select! {
                biased;
                // The pipeline stops: no new batch is let in; those queued,
                // and those whose sender holds a permit, still arrive, and
                // `recv` ends once they have.
                () = self.drain.cancelled(), if !closing => {
                    closing = true;
                    self.input.close();
                }
                // Closing first: a busy queue must not delay window emission.
                _ = tick.tick() => {
                    let now = if self.input.is_empty() {
                        self.clock.now()
                    } else {
                        self.clock.now().min(taken_until)
                    };
                    let closed = self.state.close_until(now);
                    for cw in closed {
                        if self.output.send(EngineInput::Closed(cw)).await.is_err() {
                            return;
                        }
                    }
                    for (series, tally) in self.state.take_rejections() {
                        if self.output.send(EngineInput::Rejected { series, tally }).await.is_err() {
                            return;
                        }
                    }
                    if self.output.send(EngineInput::Watermark { shard: self.id, now }).await.is_err() {
                        return;
                    }
                    depth.set((self.input.max_capacity() - self.input.capacity()) as f64);
                    // Counters are flushed per tick, not per sample.
                    late.increment(self.state.late() - late_seen);
                    late_seen = self.state.late();
                    overflow.increment(self.state.overflowed() - overflow_seen);
                    overflow_seen = self.state.overflowed();
                    let t = self.state.streams();
                    streams.set(t.len() as f64);
                    streams_overflow.increment(t.overflowed() - streams_seen.0);
                    streams_expired.increment(t.expired() - streams_seen.1);
                    stream_resets.increment(t.resets() - streams_seen.2);
                    buckets_overflow.increment(t.bucket_overflowed() - streams_seen.3);
                    streams_seen = (t.overflowed(), t.expired(), t.resets(), t.bucket_overflowed());
                }
                // Then the checkpoint: a copy of the open windows, so that a
                // kill -9 loses at most one interval of accepted samples.
                _ = checkpoint.tick() => {
                    let snapshot = self.snapshot();
                    if self.output.send(snapshot).await.is_err() {
                        return;
                    }
                }
                batch = self.input.recv() => {
                    let Some(batch) = batch else {
                        // Every receiver is gone and the queue is drained:
                        // the open windows go to the final checkpoint.
                        let snapshot = self.snapshot();
                        let _ = self.output.send(snapshot).await;
                        // The stream table goes with the windows: to the
                        // final checkpoint (a restart) and to the next
                        // server (a reload), which go on from both.
                        let table = self.state.take_streams();
                        if !table.is_empty() {
                            let encoded = super::carry::encode(&self.layout, &table);
                            let _ = self.output.send(EngineInput::Streams { shard: self.id, table: encoded }).await;
                        }
                        self.carry.put(&self.pipeline, &self.layout, self.id, table);
                        break;
                    };
                    taken_until = taken_until.max(batch.accepted_at);
                    let mut seen = Vec::new();
                    match batch.items {
                        ShardItems::Samples(samples) => {
                            for sample in samples {
                                if self.state.record(&sample) == RecordOutcome::NewSeries {
                                    seen.push(EngineInput::SeriesSeen { series: sample.series, ts: sample.ts });
                                }
                            }
                        }
                        ShardItems::Points(mut points) => {
                            self.state.warm_streams(points.points());
                            let state = &mut self.state;
                            points.for_each_whole(&mut counts, |point| {
                                if state.record_point_in(point) == RecordOutcome::NewSeries {
                                    seen.push(EngineInput::SeriesSeen { series: point.series.clone(), ts: point.ts });
                                }
                            });
                        }
                        ShardItems::Rejections(rejections) => {
                            let now = self.clock.now();
                            for (series, rejected) in rejections {
                                self.state.record_rejection(&series, &rejected, now);
                            }
                        }
                    }
                    for s in seen {
                        if self.output.send(s).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}
