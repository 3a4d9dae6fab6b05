//! The `log` exporter: every verdict event as one JSON line on stdout
//! (design §5.5 shape), for `jq`, log shippers and humans. Like webhooks it
//! reads the outbox, so a line is written only for a committed transition,
//! and a restart re-writes the lines that were not written yet.

use std::io::Write;

use crate::storage::{Attempt, Delivery};

/// Writes one event line.
pub fn write(d: &Delivery) -> Attempt {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", d.event).and_then(|()| out.flush()) {
        Ok(()) => Attempt::Delivered,
        // stdout closed (a broken pipe): nothing to retry into.
        Err(e) => Attempt::Failed {
            error: format!("writing to stdout: {e}"),
        },
    }
}
