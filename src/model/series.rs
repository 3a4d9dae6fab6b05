//! Series identity: which contract a sample counts for and which subject
//! (release) it belongs to. A series always maps to the same shard.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The subject of a run: the values of the contract's `subject_by`
/// attributes, in order (e.g. `service.name=checkout, service.version=2.0.1`).
///
/// Cheap to clone (shared); compared by its values. Its hash is computed
/// once, at creation: a shard looks a series up for every sample, and
/// hashing the attribute strings each time would dominate that lookup.
#[derive(Clone)]
pub struct Subject(Arc<SubjectInner>);

struct SubjectInner {
    /// What the subject stands for.
    kind: Kind,
    /// `(attribute, value)` in `subject_by` order.
    attributes: Vec<(String, String)>,
    /// Values joined with `/`: the label and URL form (`checkout/2.0.1`).
    joined: String,
    /// Stable hash of the two fields above.
    hash: u64,
}

/// A release, or one of the pseudo-subjects that never get a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// A release: its run is judged.
    Release,
    /// A contract's baseline (the current release), per its unconstrained
    /// `subject_by` attributes.
    Baseline,
    /// A fixed name without attributes (overflow).
    Named,
}

fn stable_hash(attributes: &[(String, String)], joined: &str) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x7375_626a, 0x6563_7421);
    attributes.hash(&mut h);
    joined.hash(&mut h);
    h.finish()
}

/// Longest subject value kept as sent, in bytes. A subject value becomes a
/// storage key, a URL, a label of some thirty Prometheus series and a log
/// field: one sender with a megabyte `service.version` would otherwise make
/// every scrape hundreds of megabytes. Release names are far shorter.
pub const MAX_SUBJECT_VALUE_BYTES: usize = 256;

/// A subject value within [`MAX_SUBJECT_VALUE_BYTES`]: a longer one keeps
/// its start and ends with `…#` and a hash of the whole value, so two long
/// values that share their start stay two subjects. Bounding a bounded
/// value changes nothing (restored subjects keep their names).
pub fn bounded_value(v: String) -> String {
    if v.len() <= MAX_SUBJECT_VALUE_BYTES {
        return v;
    }
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x6c6f_6e67, 0x7661_6c75);
    v.hash(&mut h);
    // `…` (3 bytes), `#` and 16 hex digits follow the kept start.
    let mut keep = MAX_SUBJECT_VALUE_BYTES - 20;
    while !v.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}…#{:016x}", &v[..keep], h.finish())
}

fn bounded(attributes: Vec<(String, String)>) -> Vec<(String, String)> {
    if attributes
        .iter()
        .all(|(_, v)| v.len() <= MAX_SUBJECT_VALUE_BYTES)
    {
        return attributes;
    }
    attributes
        .into_iter()
        .map(|(k, v)| (k, bounded_value(v)))
        .collect()
}

impl PartialEq for Subject {
    fn eq(&self, other: &Self) -> bool {
        // Samples of one request share the Arc: pointer equality first.
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash
                && self.0.kind == other.0.kind
                && self.0.joined == other.0.joined
                && self.0.attributes == other.0.attributes)
    }
}

impl Eq for Subject {}

impl Hash for Subject {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for Subject {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Subject {
    /// Alphabetical by values, so listings read naturally.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.kind, &self.0.attributes, &self.0.joined).cmp(&(
            other.0.kind,
            &other.0.attributes,
            &other.0.joined,
        ))
    }
}

/// The subject of samples of series beyond `max_series`: windowed and
/// exposed, never given a run.
pub const OVERFLOW_SUBJECT: &str = "__overflow__";

/// The name of a contract's baseline (the current release) series; with
/// key attributes, their values follow it (`__baseline__/checkout`).
pub const BASELINE_SUBJECT: &str = "__baseline__";

impl Subject {
    /// Builds a subject from `(attribute, value)` pairs in `subject_by` order.
    pub fn new(attributes: Vec<(String, String)>) -> Subject {
        let attributes = bounded(attributes);
        let joined = attributes
            .iter()
            .map(|(_, v)| escape_value(v))
            .collect::<Vec<_>>()
            .join("/");
        let hash = stable_hash(&attributes, &joined);
        Subject(Arc::new(SubjectInner {
            kind: Kind::Release,
            attributes,
            joined,
            hash,
        }))
    }

    /// The baseline series of a contract for the values of its key
    /// attributes (the `subject_by` attributes its `baseline.match` leaves
    /// open; none for one baseline per contract). Joined as
    /// `__baseline__/value/…`.
    pub fn baseline(attributes: Vec<(String, String)>) -> Subject {
        let attributes = bounded(attributes);
        let mut joined = BASELINE_SUBJECT.to_string();
        for (_, v) in &attributes {
            joined.push('/');
            joined.push_str(&escape_value(v));
        }
        // Salted so a baseline never hashes like a release of the same
        // values (equality tells them apart anyway).
        let hash = stable_hash(&attributes, &joined) ^ 0xba5e_11e5;
        Subject(Arc::new(SubjectInner {
            kind: Kind::Baseline,
            attributes,
            joined,
            hash,
        }))
    }

    /// A subject with a fixed name and no attributes (overflow). The
    /// baseline's name gives the baseline without key attributes (as
    /// stored before baselines had keys).
    pub fn named(name: &str) -> Subject {
        if name == BASELINE_SUBJECT {
            return Subject::baseline(Vec::new());
        }
        let joined = name.to_string();
        Subject(Arc::new(SubjectInner {
            kind: Kind::Named,
            hash: stable_hash(&[], &joined),
            attributes: Vec::new(),
            joined,
        }))
    }

    /// The values joined with `/`, each with `%` written `%25` and `/`
    /// written `%2F` (see [`escape_value`]): the key of the subject in
    /// storage, URLs and metric labels.
    pub fn joined(&self) -> &str {
        &self.0.joined
    }

    /// `(attribute, value)` pairs in `subject_by` order.
    pub fn attributes(&self) -> &[(String, String)] {
        &self.0.attributes
    }

    /// The subject's stable hash (SipHash with fixed keys, computed once).
    pub fn stable_hash(&self) -> u64 {
        self.0.hash
    }

    /// True for the overflow and baseline pseudo-subjects, which never get a run.
    pub fn is_pseudo(&self) -> bool {
        self.0.kind != Kind::Release
    }

    /// True for a contract's baseline series.
    pub fn is_baseline(&self) -> bool {
        self.0.kind == Kind::Baseline
    }

    /// True for the overflow series, which holds what `max_series` left
    /// out and so takes no place itself.
    pub fn is_overflow(&self) -> bool {
        self.0.kind == Kind::Named && self.0.joined == OVERFLOW_SUBJECT
    }
}

/// A subject value as it is joined: `%` becomes `%25` and `/` becomes
/// `%2F`, so values that contain `/` cannot run into each other
/// (`("a/b", "c")` is `a%2Fb/c`, `("a", "b/c")` is `a/b%2Fc`). Values
/// without either character — nearly all — are unchanged.
pub fn escape_value(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['%', '/']) {
        return std::borrow::Cow::Borrowed(v);
    }
    std::borrow::Cow::Owned(v.replace('%', "%25").replace('/', "%2F"))
}

/// The values of a joined subject, unescaped: the inverse of joining with
/// [`escape_value`].
pub fn split_joined(joined: &str) -> Vec<String> {
    joined.split('/').map(unescape_value).collect()
}

/// Reads a subject written by a person (an API path, a Flagger payload)
/// for a contract whose `subject_by` has `parts` attributes: its canonical
/// joined form, or why it cannot be one. A wrong number of values or a `%`
/// that escapes neither `%` nor `/` is refused rather than looked up, since
/// such a subject can never have a run and would read as PENDING forever.
pub fn parse_joined(joined: &str, parts: usize) -> Result<String, String> {
    let values: Vec<&str> = joined.split('/').collect();
    if values.len() != parts {
        return Err(format!(
            "subject {joined:?} has {} value(s) but the contract's subject_by has {parts}: \
             values are joined with '/', and a '/' inside a value is written %2F",
            values.len()
        ));
    }
    for v in &values {
        let mut rest = *v;
        while let Some(i) = rest.find('%') {
            let tail = &rest[i..];
            let ok = ["%2F", "%2f", "%25"].iter().any(|e| tail.starts_with(e));
            if !ok {
                return Err(format!(
                    "subject {joined:?} has a '%' that is neither %25 ('%') nor %2F ('/')"
                ));
            }
            rest = &tail[3..];
        }
    }
    Ok(split_joined(joined)
        .iter()
        .map(|v| escape_value(v).into_owned())
        .collect::<Vec<_>>()
        .join("/"))
}

/// One value of a joined subject, unescaped in a single pass (`%2F` → `/`,
/// `%25` → `%`; any other `%` stays as it is).
fn unescape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail
            .strip_prefix("%2F")
            .or_else(|| tail.strip_prefix("%2f"))
        {
            out.push('/');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("%25") {
            out.push('%');
            rest = after;
        } else {
            out.push('%');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({})", self.0.joined)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.joined)
    }
}

/// A series: one subject of one contract. Contracts are numbered by their
/// position in the pipeline, which is fixed for the life of the process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Index of the contract in its pipeline.
    pub contract: u32,
    /// Subject of the series.
    pub subject: Subject,
}

impl SeriesKey {
    /// The shard this series belongs to, out of `shards`. Stable across
    /// processes built from the same source: derived from the subject's
    /// fixed-key SipHash, mixed with the contract index.
    #[inline]
    pub fn shard(&self, shards: usize) -> usize {
        if shards <= 1 {
            return 0;
        }
        let h = self.subject.stable_hash()
            ^ u64::from(self.contract).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h % shards as u64) as usize
    }
}

/// Hashes a [`SeriesKey`] for the shards' maps. The subject's hash is
/// computed once when the subject is made, so the map only mixes two
/// integers instead of running SipHash over the attribute strings for
/// every sample. Flooding a shard with colliding subjects can slow its
/// lookups but not grow its memory: `max_series` bounds the map.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesHasher(u64);

impl Hasher for SeriesHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
}

/// A map keyed by series, with [`SeriesHasher`].
pub type SeriesMap<V> =
    std::collections::HashMap<SeriesKey, V, std::hash::BuildHasherDefault<SeriesHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_subject_values_are_bounded_and_stay_distinct() {
        let long = |tail: &str| format!("{}{tail}", "é".repeat(2000));
        let a = Subject::new(vec![("service.version".into(), long("a"))]);
        let b = Subject::new(vec![("service.version".into(), long("b"))]);
        assert!(
            a.joined().len() <= MAX_SUBJECT_VALUE_BYTES,
            "{}",
            a.joined().len()
        );
        assert!(a.joined().contains("…#"));
        assert_ne!(a, b);
        // Idempotent: a restored subject keeps its name.
        assert_eq!(Subject::new(a.attributes().to_vec()), a);
        let short = Subject::new(vec![("service.version".into(), "2.0.1".into())]);
        assert_eq!(short.joined(), "2.0.1");
        let base = Subject::baseline(vec![("service.name".into(), long("x"))]);
        assert!(base.joined().len() <= BASELINE_SUBJECT.len() + 1 + MAX_SUBJECT_VALUE_BYTES);
    }

    /// Subject values with `/` cannot collide: the key and URL form escape
    /// them, and splitting it gives the values back.
    #[test]
    fn joined_subjects_are_unambiguous() {
        let s =
            |a: &str, b: &str| Subject::new(vec![("k1".into(), a.into()), ("k2".into(), b.into())]);
        let (x, y) = (s("a/b", "c"), s("a", "b/c"));
        assert_eq!(x.joined(), "a%2Fb/c");
        assert_eq!(y.joined(), "a/b%2Fc");
        assert_ne!(x, y);
        assert_eq!(split_joined(x.joined()), ["a/b", "c"]);
        assert_eq!(split_joined(y.joined()), ["a", "b/c"]);
        let odd = s("100%/x", "%2F");
        assert_eq!(odd.joined(), "100%25%2Fx/%252F");
        assert_eq!(split_joined(odd.joined()), ["100%/x", "%2F"]);
        assert_eq!(s("checkout", "2.0.1").joined(), "checkout/2.0.1");
        for v in ["%", "%%2F", "%2525", "a%2", "/%/"] {
            assert_eq!(split_joined(s(v, "x").joined())[0], v);
        }
    }

    #[test]
    fn joined_and_stable_shard() {
        let s = Subject::new(vec![
            ("service.name".into(), "checkout".into()),
            ("service.version".into(), "2.0.1".into()),
        ]);
        assert_eq!(s.joined(), "checkout/2.0.1");
        let k = SeriesKey {
            contract: 0,
            subject: s.clone(),
        };
        let k2 = SeriesKey {
            contract: 0,
            subject: Subject::new(s.attributes().to_vec()),
        };
        assert_eq!(k.shard(8), k2.shard(8));
        assert!(k.shard(8) < 8);
        assert!(Subject::named(OVERFLOW_SUBJECT).is_pseudo());
        assert!(Subject::named(OVERFLOW_SUBJECT).is_overflow());
        assert!(!s.is_pseudo());
    }

    #[test]
    fn baselines_are_keyed_and_never_a_release() {
        let attrs = vec![("service.name".to_string(), "checkout".to_string())];
        let b = Subject::baseline(attrs.clone());
        assert_eq!(b.joined(), "__baseline__/checkout");
        assert!(b.is_pseudo() && b.is_baseline() && !b.is_overflow());
        assert_ne!(b, Subject::new(attrs.clone()));
        // A release whose values spell a baseline's name is still a release.
        let spoof = Subject::new(vec![
            ("a".into(), BASELINE_SUBJECT.into()),
            ("b".into(), "checkout".into()),
        ]);
        assert_eq!(spoof.joined(), b.joined());
        assert!(!spoof.is_pseudo());
        assert_ne!(spoof, b);
        // The legacy name is the baseline without keys.
        assert_eq!(
            Subject::named(BASELINE_SUBJECT),
            Subject::baseline(Vec::new())
        );
        assert!(Subject::named(BASELINE_SUBJECT).is_baseline());
    }
}
