//! The identity of a metric stream (resource + scope + metric name + point
//! attributes, and the contract reading it), hashed to the 128-bit
//! [`StreamId`] the shards key their stream tables by.
//!
//! # Why foldhash with a secret seed
//!
//! Every histogram point is hashed here, over some hundred bytes of
//! attributes: with two SipHash-2-4 states this was a tenth of what a
//! metric point cost the server. foldhash hashes the same bytes in a few
//! multiplications. Its security is what a stream id needs, and no more:
//! - **No aimed collisions.** Both halves are seeded from secret random
//!   numbers drawn once per process, so a sender cannot compute the id of
//!   another sender's stream, nor make one of its own streams collide with
//!   it (which would corrupt the victim's deltas). foldhash is not
//!   cryptographic: its secrets could in principle be learned from its
//!   outputs, but stream ids never leave the process (they are neither
//!   answered nor logged; stored only with the stream tables, in verdict's
//!   own storage), and the only outside view of them is the
//!   timing of the shard's hash table, itself seeded independently.
//! - **No accidental collisions.** Two independent 64-bit halves: among a
//!   million streams the chance that any two share an id is about 10⁻²⁷.
//! - **Stable across a graceful restart only**: the seeds are drawn at
//!   each start, except that a process restoring the stream tables a
//!   graceful stop stored adopts the seeds they were keyed with (stored
//!   with them, in verdict's own storage) before it hashes anything.
//!
//! The points' bytes go into the hash as sent: attributes by their encoded
//! `KeyValue` (the wire reader hashes them as it reads them, the prost
//! path re-encodes them), each with its length, then their number.
//!
//! # Attributes are a set
//!
//! OTLP attributes are a map: a sender may list the same attributes in
//! another order from one export to the next, and it is still the same
//! stream (the Collector's identities sort them). Each attribute is hashed
//! on its own and a list is the wrapping sum of its attributes' hashes,
//! then its number: the order does not change the id, while another value,
//! a missing or repeated attribute, or the same bytes split otherwise still
//! do.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use foldhash::quality::FoldHasher;
use foldhash::SharedSeed;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use prost::Message;

use crate::model::point::StreamId;

/// The secret seeds of the two halves, drawn once per process unless a
/// restart adopted the stored ones first ([`adopt_seeds`]), with the
/// numbers they were made from.
static SEEDS: OnceLock<([SharedSeed; 2], [u64; 2])> = OnceLock::new();

fn seeds() -> &'static ([SharedSeed; 2], [u64; 2]) {
    SEEDS.get_or_init(|| seeded([rand::random(), rand::random()]))
}

fn seeded(raw: [u64; 2]) -> ([SharedSeed; 2], [u64; 2]) {
    (
        [SharedSeed::from_u64(raw[0]), SharedSeed::from_u64(raw[1])],
        raw,
    )
}

/// The numbers this process's stream ids are seeded from: stored with the
/// stream tables at a graceful stop, so that the next process can key its
/// streams alike ([`adopt_seeds`]). They never leave verdict's storage.
pub fn stream_seeds() -> [u64; 2] {
    seeds().1
}

/// Seeds this process's stream ids from `raw` (those of the process that
/// stored the stream tables being restored), unless ids were seeded
/// already; says whether ids are now seeded from `raw`, i.e. whether the
/// stored tables' ids are this process's.
pub fn adopt_seeds(raw: [u64; 2]) -> bool {
    seeds_of(&SEEDS, raw)
}

fn seeds_of(cell: &OnceLock<([SharedSeed; 2], [u64; 2])>, raw: [u64; 2]) -> bool {
    cell.get_or_init(|| seeded(raw)).1 == raw
}

/// A stream identity being hashed: two foldhash states with independent
/// secret seeds (see the module documentation), and the sums of the
/// attributes of the list being read.
#[derive(Clone)]
pub(crate) struct StreamHasher {
    halves: (FoldHasher<'static>, FoldHasher<'static>),
    /// The wrapping sums of the hashes of the attributes read since the
    /// last list ended ([`StreamHasher::attributes_end`]).
    list: (u64, u64),
}

impl StreamHasher {
    /// The identity of nothing yet.
    pub(crate) fn new() -> StreamHasher {
        let [a, b] = &seeds().0;
        StreamHasher {
            halves: (FoldHasher::with_seed(0, a), FoldHasher::with_seed(0, b)),
            list: (0, 0),
        }
    }

    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        b.hash(&mut self.halves.0);
        b.hash(&mut self.halves.1);
    }

    /// A string (with its length).
    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// A number.
    pub(crate) fn u64(&mut self, v: u64) {
        v.hash(&mut self.halves.0);
        v.hash(&mut self.halves.1);
    }

    /// Attributes by their encoded form (any value type, nested ones
    /// too), then their number: what the wire reader hashes as it reads
    /// them ([`StreamHasher::attribute`], [`StreamHasher::attributes_end`]).
    pub(crate) fn attributes(&mut self, attributes: &[KeyValue]) {
        for kv in attributes {
            self.attribute(&kv.encode_to_vec());
        }
        self.attributes_end(attributes.len() as u64);
    }

    /// One attribute, by its encoded `KeyValue`: hashed on its own and
    /// added to its list (the order of a list does not matter).
    #[inline]
    pub(crate) fn attribute(&mut self, encoded: &[u8]) {
        let [a, b] = &seeds().0;
        let mut one = (FoldHasher::with_seed(0, a), FoldHasher::with_seed(0, b));
        encoded.hash(&mut one.0);
        encoded.hash(&mut one.1);
        self.list.0 = self.list.0.wrapping_add(one.0.finish());
        self.list.1 = self.list.1.wrapping_add(one.1.finish());
    }

    /// The end of a list of `n` attributes: its sums, then `n`.
    pub(crate) fn attributes_end(&mut self, n: u64) {
        let (a, b) = std::mem::take(&mut self.list);
        a.hash(&mut self.halves.0);
        b.hash(&mut self.halves.1);
        self.u64(n);
    }

    /// An instrumentation scope: name, version and attributes, or a mark
    /// for none.
    pub(crate) fn scope(&mut self, scope: Option<&InstrumentationScope>) {
        match scope {
            Some(s) => {
                self.str(&s.name);
                self.str(&s.version);
                self.attributes(&s.attributes);
            }
            None => self.u64(u64::MAX),
        }
    }

    /// The identity hashed so far.
    pub(crate) fn finish(&self) -> StreamId {
        StreamId(self.halves.0.finish(), self.halves.1.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds are adopted only before anything is hashed: a process whose
    /// ids are seeded already refuses other seeds (its stored tables are
    /// not its ids), and accepts its own.
    #[test]
    fn seeds_are_adopted_only_first() {
        let cell = OnceLock::new();
        assert!(seeds_of(&cell, [1, 2]));
        assert!(seeds_of(&cell, [1, 2]));
        assert!(!seeds_of(&cell, [3, 4]));
        assert!(adopt_seeds(stream_seeds()));
    }

    fn id(parts: &[&[u8]]) -> StreamId {
        let mut h = StreamHasher::new();
        for p in parts {
            h.attribute(p);
        }
        h.attributes_end(parts.len() as u64);
        h.finish()
    }

    /// The same attributes give the same id, in any order (attributes
    /// are a set); other bytes, another split of the same bytes, a missing
    /// or a repeated attribute give another one.
    #[test]
    fn ids_follow_the_bytes_and_their_boundaries() {
        assert_eq!(
            id(&[b"route=/a", b"code=200"]),
            id(&[b"route=/a", b"code=200"])
        );
        assert_eq!(
            id(&[b"route=/a", b"code=200", b"m=GET"]),
            id(&[b"m=GET", b"code=200", b"route=/a"])
        );
        let others = [
            id(&[b"route=/a", b"code=500"]),
            id(&[b"route=/a", b"code=200", b"code=200"]),
            id(&[b"route=/a"]),
            id(&[b"route=/acode=200"]),
            id(&[b"route=/a", b"code=200", b""]),
            id(&[]),
        ];
        let base = id(&[b"route=/a", b"code=200"]);
        for (i, o) in others.iter().enumerate() {
            assert_ne!(*o, base, "{i}");
            for p in &others[i + 1..] {
                assert_ne!(o, p);
            }
        }
    }

    /// 200,000 distinct attribute sets, 200,000 distinct ids, with
    /// both halves distinct on their own too (each is a full 64-bit hash).
    #[test]
    fn distinct_streams_never_share_an_id() {
        let mut full = std::collections::HashSet::new();
        let mut low = std::collections::HashSet::new();
        for i in 0..200_000u32 {
            let route = format!("route=/r{}", i % 1000);
            let code = format!("code={}", i / 1000);
            let s = id(&[route.as_bytes(), code.as_bytes()]);
            assert!(full.insert(s), "{i}");
            assert!(low.insert(s.0), "{i}");
        }
    }
}
