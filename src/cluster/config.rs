//! The judged configuration of each pipeline, shared by the instances on
//! one database: what decides which window a sample falls in and which
//! subject it counts for (window size, allowed lateness, each contract's
//! `subject_by`). Instances that differ there would write partials the
//! leader merges into the wrong windows or never judges, so an instance
//! whose pipeline file differs from the running cluster's refuses to
//! start. Contract versions may differ for a while (a rolling upgrade
//! restarts one instance at a time): that is only warned about. The stored
//! configuration is replaced when an instance starts while no other one is
//! alive, so changing the window means stopping every instance and starting
//! them with the new file.

use std::collections::BTreeMap;

use crate::config::PipelineSpec;
use crate::storage::{SqlStore, StoreError};

/// Why an instance may not join.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Its pipeline decides windows differently from the running cluster.
    #[error(
        "pipeline {pipeline}: {differs} differs from the running instances' (written by instance {by}); \
         every instance on one database must run the same window and subject_by; \
         to change them, stop every instance and start them with the new file"
    )]
    Differs {
        /// The pipeline.
        pipeline: String,
        /// `key: here X, cluster Y`, for each key that differs.
        differs: String,
        /// The instance whose configuration is stored.
        by: String,
    },
    /// The database could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `key=value` lines of what decides windows and subjects.
fn judged(p: &PipelineSpec) -> String {
    let mut lines = vec![
        format!("window.size={}", humantime::format_duration(p.window.size)),
        format!(
            "window.allowed_lateness={}",
            humantime::format_duration(p.window.allowed_lateness)
        ),
    ];
    for c in &p.contracts {
        lines.push(format!(
            "contract {} subject_by={}",
            c.name,
            c.subject_by.join(",")
        ));
    }
    lines.join("\n")
}

/// `key=value` lines of the contract versions and of what each contract
/// counts (the resources it matches, where its samples come from): two
/// instances that differ there write partials of other requests for the
/// same key. Like a version, that is a rolling upgrade's normal state for
/// a while, so it is warned about, not refused.
fn versions(p: &PipelineSpec) -> String {
    let mut lines = Vec::new();
    for c in &p.contracts {
        lines.push(format!("contract {} version={}", c.name, c.version));
        let matches: Vec<String> = c
            .matches
            .iter()
            .map(|m| format!("{}:{}", m.key, m.pattern))
            .collect();
        lines.push(format!("contract {} match={}", c.name, matches.join(",")));
        let source = match c.source {
            crate::config::Source::Spans => format!(
                "spans kinds={:?} conversion_attribute={}",
                c.span_kinds, c.conversion_attribute
            ),
            crate::config::Source::Metrics => format!(
                "metrics latency={} conversions={}",
                c.latency_metric, c.conversions_metric
            ),
        };
        lines.push(format!("contract {} source={source}", c.name));
    }
    lines.join("\n")
}

/// The keys whose values differ between two descriptions, each as
/// `key: here X, cluster Y`.
fn differences(ours: &str, theirs: &str) -> Vec<String> {
    let split = |text: &str| -> BTreeMap<String, String> {
        text.lines()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect()
    };
    let (ours, theirs) = (split(ours), split(theirs));
    let mut keys: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or("absent".to_string(), |v| v.clone());
            format!(
                "{k}: here {}, cluster {}",
                show(ours.get(k)),
                show(theirs.get(k))
            )
        })
        .collect()
}

/// Checks (or, for a cluster starting afresh, stores) each pipeline's
/// judged configuration; warns when contract versions differ.
pub async fn check(
    store: &SqlStore,
    instance: &str,
    pipelines: &[PipelineSpec],
) -> Result<(), ConfigError> {
    for p in pipelines {
        let (ours, our_versions) = (judged(p), versions(p));
        let Some((theirs, their_versions, by)) = store
            .pipeline_config(&p.name, instance, [&ours, &our_versions])
            .await?
        else {
            continue;
        };
        let differs = differences(&ours, &theirs);
        if !differs.is_empty() {
            return Err(ConfigError::Differs {
                pipeline: p.name.clone(),
                differs: differs.join("; "),
                by,
            });
        }
        let versions = differences(&our_versions, &their_versions);
        if !versions.is_empty() {
            tracing::warn!(
                pipeline = %p.name,
                differs = %versions.join("; "),
                "Contract versions or what contracts count (match, source) differ from the running instances': fine during a rolling upgrade, but until every instance runs the same file each counts the requests its own file selects and each leader judges with its own versions."
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_key() {
        let ours = "window.size=5s\nwindow.allowed_lateness=1s\ncontract c subject_by=a";
        let theirs = "window.size=10s\nwindow.allowed_lateness=1s\ncontract d subject_by=a";
        assert_eq!(
            differences(ours, theirs),
            [
                "contract c subject_by: here a, cluster absent",
                "contract d subject_by: here absent, cluster a",
                "window.size: here 5s, cluster 10s",
            ]
        );
        assert!(differences(ours, ours).is_empty());
    }
}
