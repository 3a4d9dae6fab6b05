//! The stream tables of a pipeline's shards, kept from one server to the
//! next across a reload.
//!
//! # Why
//!
//! A reload stops the running server the way SIGTERM does and starts the
//! next one from the checkpoint: the open windows come back, but a shard's
//! stream table (the last cumulative point of each metric stream) lived
//! only in the stopped shard. Without it the next point of every cumulative
//! stream looks like a stream's first: counted in full again when the
//! stream started in a window that is still open (its earlier deltas are
//! already in that window), or only a baseline otherwise (what happened
//! since its previous point is lost). A stopping shard therefore leaves its
//! table here, after its last batch and its final snapshot, and the shard of
//! the next server takes it back, so deltas go on exactly where they
//! stopped.
//!
//! A graceful stop also stores each table with the final checkpoint
//! ([`encode`]), with the seeds of the process's stream ids, and the next
//! start reads them back once ([`Carry::restore`]) after adopting those
//! seeds, so a restart goes on the same way. A crash finds no table (a
//! start's first full checkpoint replaces them; an instance on PostgreSQL
//! deletes its own as it reads them): its streams start again.
//!
//! A table is taken back only when what its entries are keyed by is
//! unchanged ([`Layout`]): the stream ids hash the pipeline's index and the
//! contract's index, and a series maps to a shard by its contract index and
//! the number of shards. A reload that changes any of these starts the
//! pipeline's streams again, as a restart does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::streams::{StoredTable, StreamParams, StreamTable};

/// Format version of an encoded table.
const VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Encoded {
    version: u32,
    layout: Layout,
    table: StoredTable,
}

/// A shard's table as stored at a graceful stop, with the layout it was
/// keyed by.
pub fn encode(layout: &Layout, table: &StreamTable) -> String {
    let encoded = Encoded {
        version: VERSION,
        layout: layout.clone(),
        table: table.to_stored(),
    };
    // Plain numbers and strings: nothing here can fail to serialize but
    // a non-finite number, which no point that counts carries.
    serde_json::to_string(&encoded).unwrap_or_default()
}

/// A stored table and the layout it was keyed by.
pub fn decode(text: &str) -> Result<(Layout, StoredTable), String> {
    let encoded: Encoded = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if encoded.version != VERSION {
        return Err(format!("format version {} unknown", encoded.version));
    }
    Ok((encoded.layout, encoded.table))
}

/// What a pipeline's stream tables are keyed by: equal layouts share
/// stream ids and shards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// The numbers the process's stream ids are seeded from (see
    /// `receivers::otlp::stream_id`).
    pub seeds: [u64; 2],
    /// The pipeline's index in the configuration (hashed into stream ids).
    pub index: usize,
    /// Its number of shards (a series' shard depends on it).
    pub shards: usize,
    /// Its contracts' names, by index (hashed into stream ids and series
    /// keys by index).
    pub contracts: Vec<String>,
}

#[derive(Debug)]
struct Kept {
    layout: Layout,
    tables: Vec<Option<StreamTable>>,
}

/// Stream tables left by stopped shards, by pipeline name; shared by the
/// servers one supervisor starts in turn.
#[derive(Debug, Clone, Default)]
pub struct Carry(Arc<Mutex<HashMap<String, Kept>>>);

impl Carry {
    /// Leaves shard `shard`'s table of `pipeline` (laid out as `layout`)
    /// for the next server. A table of another layout left earlier is
    /// dropped.
    pub fn put(&self, pipeline: &str, layout: &Layout, shard: usize, table: StreamTable) {
        let Ok(mut kept) = self.0.lock() else { return };
        let entry = kept.entry(pipeline.to_string()).or_insert_with(|| Kept {
            layout: layout.clone(),
            tables: Vec::new(),
        });
        if entry.layout != *layout {
            *entry = Kept {
                layout: layout.clone(),
                tables: Vec::new(),
            };
        }
        if entry.tables.len() <= shard {
            entry.tables.resize_with(shard + 1, || None);
        }
        entry.tables[shard] = Some(table);
    }

    /// Takes the tables `pipeline`'s shards left, by shard, when they were
    /// laid out as `layout`; none otherwise (they are dropped either way).
    pub fn take(&self, pipeline: &str, layout: &Layout) -> Vec<Option<StreamTable>> {
        let Ok(mut kept) = self.0.lock() else {
            return Vec::new();
        };
        match kept.remove(pipeline) {
            Some(k) if k.layout == *layout => k.tables,
            Some(_) => {
                tracing::info!(
                    pipeline,
                    "The pipeline's shards or contracts changed: its cumulative metric streams start again (their next point is a baseline, or counted whole when it started in an open window)."
                );
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Puts the tables a graceful stop stored for `pipeline` (by shard,
    /// keyed by `stored`) where its shards will take them, when nothing
    /// is left in memory for it (a reload's tables are newer) and `stored`
    /// is the layout of this start (`layout`); says how many streams, or
    /// `None` when tables kept in memory take precedence.
    pub fn restore(
        &self,
        pipeline: &str,
        layout: &Layout,
        stored: Vec<(usize, Layout, StoredTable)>,
        params: StreamParams,
    ) -> Option<usize> {
        let Ok(mut kept) = self.0.lock() else {
            return None;
        };
        if kept.contains_key(pipeline) {
            return None;
        }
        let mut tables: Vec<Option<StreamTable>> = Vec::new();
        let mut streams = 0;
        for (shard, at, table) in stored {
            if at != *layout || shard >= layout.shards {
                continue;
            }
            if tables.len() <= shard {
                tables.resize_with(shard + 1, || None);
            }
            streams += table.len();
            tables[shard] = Some(StreamTable::from_stored(params, table));
        }
        if !tables.is_empty() {
            kept.insert(
                pipeline.to_string(),
                Kept {
                    layout: layout.clone(),
                    tables,
                },
            );
        }
        Some(streams)
    }

    /// Forgets what was left (pipelines the next configuration does not
    /// have, after it started).
    pub fn clear(&self) {
        if let Ok(mut kept) = self.0.lock() {
            kept.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregator::streams::StreamParams;

    fn table(max_streams: usize) -> StreamTable {
        StreamTable::new(StreamParams {
            max_streams,
            expiry: 1,
        })
    }

    fn layout(shards: usize, contracts: &[&str]) -> Layout {
        Layout {
            seeds: [1, 2],
            index: 0,
            shards,
            contracts: contracts.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn tables_come_back_only_to_the_same_layout_and_only_once() {
        let carry = Carry::default();
        let two = layout(2, &["a", "b"]);
        carry.put("p", &two, 1, table(1));
        carry.put("p", &two, 0, table(1));
        let back = carry.take("p", &two);
        assert_eq!(back.len(), 2);
        assert!(back.iter().all(Option::is_some));
        assert!(carry.take("p", &two).is_empty(), "taken once");

        carry.put("p", &two, 0, table(1));
        assert!(carry.take("p", &layout(3, &["a", "b"])).is_empty());
        carry.put("p", &two, 0, table(1));
        assert!(carry.take("p", &layout(2, &["b", "a"])).is_empty());
        carry.put("p", &two, 0, table(1));
        assert!(carry.take("q", &two).is_empty(), "another pipeline");
        carry.clear();
        assert!(carry.take("p", &two).is_empty());
    }

    #[test]
    fn a_table_of_another_layout_is_replaced() {
        let carry = Carry::default();
        carry.put("p", &layout(2, &["a"]), 1, table(1));
        carry.put("p", &layout(1, &["a"]), 0, table(1));
        let back = carry.take("p", &layout(1, &["a"]));
        assert_eq!(back.len(), 1);
        assert!(back[0].is_some());
    }
}
