//! Resource selection: a contract's `match` globs decide whether a resource's
//! spans count for it, and its `subject_by` attributes name the run they count
//! for. Done once per resource, not per span.

use globset::{Glob, GlobMatcher};

use crate::config::{AttributeMatch, ContractSpec};
use crate::model::Subject;

/// A contract ready to select resources.
#[derive(Debug, Clone)]
pub struct CompiledContract {
    /// The validated spec.
    pub spec: ContractSpec,
    matches: Vec<(String, Option<GlobMatcher>)>,
    baseline: Option<Vec<(String, Option<GlobMatcher>)>>,
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

fn compile(matches: &[AttributeMatch]) -> Vec<(String, Option<GlobMatcher>)> {
    matches
        .iter()
        .map(|m| {
            // Validation compiled every pattern already; should one still
            // fail, it matches nothing rather than everything.
            let matcher = Glob::new(&m.pattern).ok().map(|g| g.compile_matcher());
            (m.key.clone(), matcher)
        })
        .collect()
}

fn all_match<'a>(
    matches: &[(String, Option<GlobMatcher>)],
    lookup: &impl Fn(&str) -> Option<&'a str>,
) -> bool {
    matches.iter().all(|(key, glob)| {
        glob.as_ref()
            .is_some_and(|g| lookup(key).is_some_and(|v| g.is_match(v)))
    })
}

impl CompiledContract {
    /// Compiles the spec's globs.
    pub fn new(spec: ContractSpec) -> CompiledContract {
        let matches = compile(&spec.matches);
        let baseline = spec.baseline.as_ref().map(|b| compile(&b.matches));
        CompiledContract {
            spec,
            matches,
            baseline,
        }
    }

    /// Decides what this contract makes of a resource, given a lookup of its
    /// attributes as strings.
    ///
    /// A resource that matches the baseline is the baseline only, even when
    /// it also matches the contract: the current release is what candidates
    /// are compared with, not a candidate itself.
    pub fn select<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Selection {
        if let Some(baseline) = &self.baseline {
            if all_match(baseline, &lookup) {
                return Selection::Baseline;
            }
        }
        if !all_match(&self.matches, &lookup) {
            return Selection::None;
        }
        let mut attributes = Vec::with_capacity(self.spec.subject_by.len());
        for key in &self.spec.subject_by {
            match lookup(key) {
                Some(v) => attributes.push((key.clone(), v.to_string())),
                None => return Selection::MissingAttribute(key.clone()),
            }
        }
        Selection::Subject(Subject::new(attributes))
    }
}
