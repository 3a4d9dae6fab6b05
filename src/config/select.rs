//! Resource selection: a contract's `match` globs decide whether a resource's
//! telemetry counts for it, and its `subject_by` attributes name the run it
//! counts for. Done once per resource, not per span.
//!
//! The globs are compiled when the file is validated (a pattern that does
//! not compile is a config error), so selecting never fails.

use globset::{Glob, GlobMatcher};

use super::{ContractSpec, Source};
use crate::model::Subject;

/// One `match` entry: a resource attribute and a glob its value must match.
#[derive(Debug, Clone)]
pub struct AttributeMatch {
    /// Resource attribute key (`service.name`).
    pub key: String,
    /// Glob pattern (`*`, `?`, `[...]`), as written.
    pub pattern: String,
    matcher: GlobMatcher,
}

impl PartialEq for AttributeMatch {
    /// Two entries are the same when they say the same thing.
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.pattern == other.pattern
    }
}

impl AttributeMatch {
    /// Compiles `pattern` for `key`; the error is globset's reason.
    pub fn new(key: impl Into<String>, pattern: impl Into<String>) -> Result<Self, String> {
        let pattern = pattern.into();
        let matcher = Glob::new(&pattern)
            .map_err(|e| e.kind().to_string())?
            .compile_matcher();
        Ok(AttributeMatch {
            key: key.into(),
            pattern,
            matcher,
        })
    }

    fn matches<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a str>) -> bool {
        lookup(&self.key).is_some_and(|v| self.matcher.is_match(v))
    }
}

/// What a contract makes of one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Not for this contract.
    None,
    /// Counts for the run of this subject.
    Subject(Subject),
    /// The current release the contract compares against, keyed by the
    /// values of [`ContractSpec::baseline_keys`].
    Baseline(Subject),
    /// Selected, but the resource lacks a `subject_by` attribute: its
    /// requests are rejected (partial_success) rather than guessed at.
    MissingAttribute(String),
}

impl ContractSpec {
    /// Decides what this contract makes of a resource, given a lookup of its
    /// attributes as strings.
    ///
    /// A resource that matches the baseline is the baseline only, even when
    /// it also matches the contract: the current release is what candidates
    /// are compared with, not a candidate itself.
    ///
    /// The baseline is what `baseline.match` selects among what the
    /// contract's own `match` selects on the attributes `baseline.match`
    /// does not name: with `match: {service.name: "*"}` and
    /// `baseline.match: {service.version: "1.*"}`, each service's 1.x is
    /// its own baseline, compared only with that service's candidates (see
    /// [`ContractSpec::baseline_keys`]).
    pub fn select<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Selection {
        if let Some(baseline) = &self.baseline {
            let named = |key: &str| baseline.matches.iter().any(|m| m.key == key);
            if baseline.matches.iter().all(|m| m.matches(&lookup))
                && self
                    .matches
                    .iter()
                    .filter(|m| !named(&m.key))
                    .all(|m| m.matches(&lookup))
            {
                let mut attributes = Vec::new();
                for key in self.baseline_keys() {
                    match lookup(key) {
                        Some(v) => attributes.push((key.to_string(), v.to_string())),
                        None => return Selection::MissingAttribute(key.to_string()),
                    }
                }
                return Selection::Baseline(Subject::baseline(attributes));
            }
        }
        if !self.matches.iter().all(|m| m.matches(&lookup)) {
            return Selection::None;
        }
        let mut attributes = Vec::with_capacity(self.subject_by.len());
        for key in &self.subject_by {
            match lookup(key) {
                Some(v) => attributes.push((key.clone(), v.to_string())),
                None => return Selection::MissingAttribute(key.clone()),
            }
        }
        Selection::Subject(Subject::new(attributes))
    }

    /// The `subject_by` attributes that key the baseline: those its
    /// `baseline.match` does not name. A candidate is compared with the
    /// baseline that has its values of them — `checkout/2.0` with
    /// `__baseline__/checkout` when `baseline.match` names only
    /// `service.version` — so services sharing a contract never pool their
    /// baselines. When `baseline.match` names every `subject_by` attribute
    /// there is one baseline per contract.
    pub fn baseline_keys(&self) -> impl Iterator<Item = &str> {
        let named = self.baseline.as_ref().map(|b| &b.matches);
        self.subject_by
            .iter()
            .filter(move |key| named.is_some_and(|m| !m.iter().any(|m| &m.key == *key)))
            .map(String::as_str)
    }

    /// The baseline series a candidate `subject` is compared with; `None`
    /// without a baseline.
    pub fn baseline_of(&self, subject: &Subject) -> Option<Subject> {
        self.baseline.as_ref()?;
        let attributes = self
            .baseline_keys()
            .filter_map(|key| subject.attributes().iter().find(|(k, _)| k == key).cloned())
            .collect();
        Some(Subject::baseline(attributes))
    }
}

/// What each span-sourced contract makes of a probe's resource, by contract
/// index; contracts that do not select it are left out.
pub fn select_resource(
    resource: &[(String, String)],
    contracts: &[ContractSpec],
) -> Vec<(u32, Selection)> {
    let lookup = |key: &str| {
        resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    contracts
        .iter()
        .enumerate()
        .filter(|(_, c)| c.source == Source::Spans)
        .map(|(i, c)| (i as u32, c.select(lookup)))
        .filter(|(_, selection)| *selection != Selection::None)
        .collect()
}
