//! The async driver of a pipeline's run engine: feeds it what the shards
//! send, and hands the committed transitions to the pipeline's exporters.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::clock::SharedClock;

use super::engine::{Engine, EngineInput};
use super::record::VerdictEvent;

/// Runs the engine until every shard has hung up.
pub async fn run_engine(
    mut engine: Engine,
    mut input: mpsc::Receiver<EngineInput>,
    exporters: Vec<mpsc::Sender<Arc<VerdictEvent>>>,
    clock: SharedClock,
) {
    while let Some(msg) = input.recv().await {
        match engine.handle(msg, clock.now()) {
            Ok(events) => {
                for event in events {
                    let event = Arc::new(event);
                    tracing::info!(
                        contract = %event.run.contract,
                        subject = %event.run.subject,
                        state = event.run.state.as_str(),
                        reason = %event.run.reason,
                        "Run changed state."
                    );
                    for tx in &exporters {
                        // An exporter that has stopped only loses its own
                        // copy; the transition is committed already.
                        let _ = tx.send(event.clone()).await;
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "Run engine could not commit; window results lost.")
            }
        }
    }
}
