//! The checkpoint format: what a pipeline's open windows (and its closed
//! windows not judged yet) look like in storage. The run engine writes
//! slots through [`encode`]; the topology reads them back through
//! [`decode`] at start. One slot per shard, plus [`PENDING_SLOT`].
//!
//! Series are stored by contract *name* and subject values, never by
//! index, so a checkpoint survives a configuration whose contracts moved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::codec::{corrupt, AccumData, SubjectData};
use super::StoreError;
use crate::model::{Accum, Subject, UnixNanos};

/// The slot of the closed windows the engine has not judged yet (shards use
/// their index as slot).
pub const PENDING_SLOT: i64 = -1;

/// The slot of shard 0's metric stream table; shard `i`'s is this minus
/// `i` (see [`streams_slot`]).
const STREAMS_SLOT: i64 = -1000;

/// The slot of shard `shard`'s metric stream table, written by a graceful
/// stop only (its text is the aggregator's, not a slot of windows).
pub fn streams_slot(shard: usize) -> i64 {
    STREAMS_SLOT.saturating_sub(i64::try_from(shard).unwrap_or(i64::MAX))
}

/// Where an instance on PostgreSQL stores the stream tables of
/// `pipeline` (its own: instances do not share streams), in place of the
/// pipeline's name. The separator is a control character, which no
/// pipeline name holds.
pub fn instance_streams_key(pipeline: &str, instance: &str) -> String {
    format!("{pipeline}\u{1f}streams of\u{1f}{instance}")
}

/// The shard whose stream table `slot` holds, if it holds one.
pub fn streams_shard(slot: i64) -> Option<usize> {
    (slot <= STREAMS_SLOT).then(|| usize::try_from(STREAMS_SLOT - slot).ok())?
}

/// Format version written into every slot.
const VERSION: u32 = 1;

/// One series' windows in a slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeriesData {
    /// Contract name (indices can change between configurations).
    contract: String,
    /// The subject.
    subject: SubjectData,
    /// Window start → what it accumulated.
    windows: BTreeMap<UnixNanos, AccumData>,
}

/// A slot as stored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct SlotData {
    version: u32,
    /// The window size (ns) the windows were aggregated with: a start
    /// alone does not say which window it was once the size changed
    /// (absent from slots written before it was stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    series: Vec<SeriesData>,
}

/// One series' windows, as the engine hands them over.
#[derive(Debug)]
pub struct SeriesWindows<'a> {
    /// Contract name.
    pub contract: &'a str,
    /// The subject.
    pub subject: &'a Subject,
    /// Window start and what it accumulated.
    pub windows: Vec<(UnixNanos, &'a Accum)>,
}

/// One series' windows, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredSeries {
    /// Contract name.
    pub contract: String,
    /// The subject.
    pub subject: Subject,
    /// Window start and what it accumulated.
    pub windows: Vec<(UnixNanos, Accum)>,
}

/// A slot's text (series without windows are left out; sorted by contract
/// so equal contents give equal text).
/// `size`: the window size (ns) the windows have.
pub fn encode<'a>(
    size: Option<u64>,
    series: impl IntoIterator<Item = SeriesWindows<'a>>,
) -> String {
    let mut data = SlotData {
        version: VERSION,
        size,
        series: Vec::new(),
    };
    for s in series {
        if s.windows.is_empty() {
            continue;
        }
        data.series.push(SeriesData {
            contract: s.contract.to_string(),
            subject: SubjectData::from(s.subject),
            windows: s
                .windows
                .into_iter()
                .map(|(start, acc)| (start, AccumData::from(acc)))
                .collect(),
        });
    }
    data.series.sort_by(|a, b| a.contract.cmp(&b.contract));
    serde_json::to_string(&data).unwrap_or_default()
}

/// Reads what [`encode`] wrote (the series only).
#[cfg(test)]
pub fn decode(text: &str) -> Result<Vec<RestoredSeries>, StoreError> {
    decode_sized(text).map(|(_, series)| series)
}

/// Reads what [`encode`] wrote: the window size, when the slot says
/// it, and the series.
pub fn decode_sized(text: &str) -> Result<(Option<u64>, Vec<RestoredSeries>), StoreError> {
    let data: SlotData = serde_json::from_str(text).map_err(|e| corrupt("checkpoint", e))?;
    let series = data
        .series
        .into_iter()
        .map(|s| RestoredSeries {
            contract: s.contract,
            subject: Subject::from(s.subject),
            windows: s
                .windows
                .iter()
                .map(|(start, acc)| (*start, Accum::from(acc)))
                .collect(),
        })
        .collect();
    Ok((data.size, series))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_slots_are_apart_from_window_slots() {
        assert_eq!(streams_shard(streams_slot(0)), Some(0));
        assert_eq!(streams_shard(streams_slot(7)), Some(7));
        assert_eq!(streams_shard(PENDING_SLOT), None);
        assert_eq!(streams_shard(0), None);
        assert_eq!(streams_shard(3), None);
        assert_ne!(
            instance_streams_key("p", "a"),
            instance_streams_key("p", "b")
        );
    }

    #[test]
    fn slots_round_trip() {
        let subject = Subject::new(vec![("service.name".into(), "checkout".into())]);
        let mut acc = Accum::default();
        let _ = acc.latency.insert(12.5);
        acc.samples = 1;
        let text = encode(
            None,
            [
                SeriesWindows {
                    contract: "b",
                    subject: &subject,
                    windows: vec![(60, &acc)],
                },
                SeriesWindows {
                    contract: "a",
                    subject: &subject,
                    windows: Vec::new(),
                },
            ],
        );
        let back = decode(&text).expect("decodes");
        assert_eq!(
            back,
            vec![RestoredSeries {
                contract: "b".into(),
                subject,
                windows: vec![(60, acc)],
            }]
        );
        assert!(decode("{").is_err());
    }
}
