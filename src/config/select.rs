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
    /// The current release the contract compares against.
    Baseline,
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
    pub fn select<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Selection {
        if let Some(baseline) = &self.baseline {
            if baseline.matches.iter().all(|m| m.matches(&lookup)) {
                return Selection::Baseline;
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
