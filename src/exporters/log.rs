//! The `log` exporter: every verdict event as one JSON line on stdout
//! (design §5.5 shape), for `jq`, log shippers and humans.

use std::io::Write;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::runs::VerdictEvent;

/// Writes events until every sender is gone.
pub async fn run(mut input: mpsc::Receiver<Arc<VerdictEvent>>) {
    while let Some(event) = input.recv().await {
        let line = event.to_json().to_string();
        let mut out = std::io::stdout().lock();
        // stdout closed (e.g. a broken pipe) loses only the log copy.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}
