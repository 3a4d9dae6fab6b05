//! What a pipeline resumes from at start: its current runs (with their last
//! window result) and its checkpointed windows, split into those whose
//! deadline has passed — handed to the engine, judged at the first
//! watermark — and those still open — put back into the shard that owns
//! their series in this process's layout (the shard count may have changed).

use std::collections::{BTreeMap, HashMap};

use crate::aggregator::carry::{self, Layout};
use crate::aggregator::streams::StoredTable;
use crate::config::PipelineSpec;
use crate::model::Accum;
use crate::model::OpenWindows;
use crate::model::{SeriesKey, UnixNanos};
use crate::runs::engine::EngineSeed;
use crate::storage::checkpoint::{self, RestoredSeries, PENDING_SLOT};
use crate::storage::{RunStore, StoreError};

/// The metric stream tables a graceful stop stored for `pipeline`, by
/// shard, with the layout each was keyed by; unreadable ones are logged
/// and left out (their streams start again).
///
/// An instance on PostgreSQL (`instance`) stores its own under
/// [`checkpoint::instance_streams_key`], and they are deleted as they are
/// read (no full checkpoint replaces them there): a crash later must not
/// find them, stale, at the next start.
pub(super) async fn stream_tables(
    store: &dyn RunStore,
    pipeline: &PipelineSpec,
    instance: Option<&str>,
    now: UnixNanos,
) -> Result<Vec<(usize, Layout, StoredTable)>, StoreError> {
    let mut out = Vec::new();
    let key = match instance {
        Some(i) => checkpoint::instance_streams_key(&pipeline.name, i),
        None => pipeline.name.clone(),
    };
    let slots = store.load_checkpoint(&key).await?;
    if instance.is_some() && !slots.is_empty() {
        store.save_checkpoint(&key, &[], true, now).await?;
    }
    for (slot, text) in slots {
        let Some(shard) = checkpoint::streams_shard(slot) else {
            continue;
        };
        match carry::decode(&text) {
            Ok((layout, table)) => out.push((shard, layout, table)),
            Err(err) => {
                tracing::error!(pipeline = %pipeline.name, shard, error = %err, "Stored metric stream table unreadable; its cumulative streams start again.");
            }
        }
    }
    Ok(out)
}

/// The engine's seed, with the open windows of each shard.
pub(super) async fn seed(
    store: &dyn RunStore,
    pipeline: &PipelineSpec,
    shards: usize,
    now: UnixNanos,
) -> Result<EngineSeed, StoreError> {
    let mut seed = crate::runs::leader::seed_runs(store, pipeline).await?;
    if !seed.runs.is_empty() {
        tracing::info!(pipeline = %pipeline.name, runs = seed.runs.len(), "Runs resumed from storage.");
    }

    // A closed-but-unjudged window (the pending slot) is complete; a shard
    // slot may hold an older partial copy of the same window: the closed
    // one wins.
    let mut slots = store.load_checkpoint(&pipeline.name).await?;
    // Stream tables are read by `stream_tables`.
    slots.retain(|(slot, _)| checkpoint::streams_shard(*slot).is_none());
    slots.sort_by_key(|(slot, _)| *slot);
    // By series: (window start, its size when another than this start's).
    let mut windows: HashMap<SeriesKey, BTreeMap<(UnixNanos, Option<u64>), Accum>> = HashMap::new();
    let mut restored = 0usize;
    for (slot, text) in slots {
        let (size, data) = match checkpoint::decode_sized(&text) {
            Ok(d) => d,
            Err(err) => {
                tracing::error!(pipeline = %pipeline.name, slot, error = %err, "Checkpoint slot unreadable; its open windows are lost.");
                continue;
            }
        };
        // Windows of another size than this start's are told apart (by
        // their size) from this size's windows of the same start.
        let resized = size.filter(|&s| s != pipeline.window.timing().size);
        for (key, start, acc) in series_of(pipeline, data) {
            let held = windows.entry(key).or_default();
            let at = (start, resized);
            if slot == PENDING_SLOT || !held.contains_key(&at) {
                held.insert(at, acc);
                restored += 1;
            }
        }
    }
    // Where each series' run stopped judging (its last judged window's
    // end, and where a reset made it count from). A window of another size
    // (the size changed, e.g. 5 s → 10 s → 5 s) can fall on a window of
    // this size its run judged already: the engine would skip it as
    // judged, and samples accepted after that judgment would be lost, so
    // it goes to the first window the run has not judged. (A window of this
    // size that was judged is a copy a kill -9 left in the checkpoint: the
    // engine skips it, as it must.)
    let mut judged: HashMap<SeriesKey, (Option<UnixNanos>, Option<UnixNanos>)> = HashMap::new();
    for run in &seed.runs {
        let Some(index) = pipeline
            .contracts
            .iter()
            .position(|c| c.name == run.contract)
        else {
            continue;
        };
        let key = SeriesKey {
            contract: index as u32,
            subject: run.subject.clone(),
        };
        let held = judged.entry(key).or_default();
        held.0 = held.0.max(run.last_window_end);
        held.1 = held.1.max(run.counts_from);
    }
    let timing = pipeline.window.timing();
    let mut open: Vec<OpenWindows> = vec![HashMap::new(); shards.max(1)];
    for (key, series) in windows {
        for ((start, resized), acc) in series {
            let mut w = timing.window_of(start);
            if let (Some(old_size), Some(&(last_end, counts_from))) = (resized, judged.get(&key)) {
                if last_end.is_some_and(|end| start.saturating_add(old_size) <= end) {
                    // Judged whole in its own size already.
                    continue;
                }
                if let Some(end) = last_end.filter(|&end| w.end <= end) {
                    w = timing.window_of(end);
                }
                if let Some(from) = counts_from.filter(|&from| w.start < from) {
                    w = timing.window_of(from);
                    if w.start < from {
                        w = w.next();
                    }
                }
            }
            let target = if w.deadline(timing.lateness) <= now {
                &mut seed.closed
            } else {
                &mut open[key.shard(shards.max(1))]
            };
            // Windows of another size (the size changed since the
            // checkpoint) can fall into one window of this size: merged,
            // never one overwriting the other.
            match target.entry(key.clone()).or_default().entry(w.start) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(acc);
                }
                std::collections::btree_map::Entry::Occupied(mut held) => {
                    held.get_mut().merge(&acc);
                }
            }
        }
    }
    if restored > 0 {
        tracing::info!(pipeline = %pipeline.name, windows = restored, "Open windows restored from the checkpoint.");
    }
    seed.open = open;
    Ok(seed)
}

/// The windows of a checkpoint slot, keyed for this configuration; series of
/// contracts that no longer exist in the pipeline are dropped.
fn series_of(
    pipeline: &PipelineSpec,
    data: Vec<RestoredSeries>,
) -> Vec<(SeriesKey, UnixNanos, Accum)> {
    let mut out = Vec::new();
    for s in data {
        let Some(index) = pipeline.contracts.iter().position(|c| c.name == s.contract) else {
            continue;
        };
        let key = SeriesKey {
            contract: index as u32,
            subject: s.subject,
        };
        for (start, acc) in s.windows {
            out.push((key.clone(), start, acc));
        }
    }
    out
}

/// A cluster instance's own partials of windows still open (their close
/// deadline is after `now`), put back into the shard that owns their
/// series: what it had aggregated before a restart (up to its last write)
/// goes on growing, and is written again whole. Windows whose deadline has
/// passed stay in the database for the leader.
pub(super) async fn own_partials(
    member: &crate::cluster::Member,
    pipeline: &PipelineSpec,
    shards: usize,
    now: UnixNanos,
) -> Result<Vec<OpenWindows>, StoreError> {
    let timing = pipeline.window.timing();
    let from =
        crate::model::Window::containing(now.saturating_sub(timing.lateness), timing.size).start;
    let mut open: Vec<OpenWindows> = vec![HashMap::new(); shards.max(1)];
    let mut restored = 0usize;
    for p in member
        .store
        .own_partials(&pipeline.name, member.instance(), from)
        .await?
    {
        let Some(index) = pipeline.contracts.iter().position(|c| c.name == p.contract) else {
            continue;
        };
        if timing.window_of(p.window_start).deadline(timing.lateness) <= now {
            continue;
        }
        let key = SeriesKey {
            contract: index as u32,
            subject: p.subject,
        };
        let shard = key.shard(shards.max(1));
        open[shard]
            .entry(key)
            .or_default()
            .insert(p.window_start, p.accum);
        restored += 1;
    }
    if restored > 0 {
        tracing::info!(pipeline = %pipeline.name, windows = restored, "Open windows restored from this instance's partials.");
    }
    Ok(open)
}
