//! Parsed tree → [`ValidatedConfig`]: reads each component with the raw
//! serde types, checks ids, types, bounds and references, fills in the
//! defaults, and collects every problem instead of stopping at the first.
//!
//! Each section and each component is deserialized on its own (unknown keys
//! through `serde_ignored`, type errors with their path through
//! `serde_path_to_error`), so one broken component cannot hide the problems
//! of another. Errors are reported grouped by top-level section in the order
//! the sections appear in the file, then in the order they were found
//! (components in file order, their fields in declaration order, cross-checks
//! last).

mod cors;
mod cross;
mod exporters;
mod fields;
mod pipelines;
mod processors;
mod receivers;
mod service;
pub(crate) mod tls;
mod values;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use config::{Map, Value, ValueKind};
use indexmap::IndexMap;
use serde::de::DeserializeOwned;

use super::error::{ConfigError, ConfigErrors};
use super::probe_plan::SYNTHETIC_ATTRIBUTE;
use super::raw::{
    ByteSize, Checked, Field, HumanDuration, Int, MapOnly, Matches, Num, RawBaseline, RawContract,
    RawCors, RawListener, RawLog, RawOtlpReceiver, RawPipeline, RawPostgres, RawPostgresTls,
    RawProbeReceiver, RawPrometheus, RawRetry, RawService, RawTls, RawUnleash, RawWebhook,
    RawWindow, StringList, StringMap,
};
use super::select::{select_resource, AttributeMatch, Selection};
use super::validated::{
    redact_password, BaselineSpec, ContractSpec, CorsSpec, Decision, ExporterKind, ExporterSpec,
    OnIdle, OnRollback, OnTimeout, OtlpReceiverSpec, PgSslMode, PipelineSpec, PostgresSpec,
    PostgresTls, ProbeReceiverSpec, ReceiverKind, ReceiverSpec, RetrySpec, ServiceSpec, Source,
    StorageSpec, Thresholds, UnleashSpec, ValidatedConfig, WebhookFormat, WebhookSpec, WindowSpec,
};
use crate::model::rollout::is_unleash_name;
use crate::model::{FlagTemplate, RunState};

use self::cors::*;
use self::cross::*;
use self::exporters::*;
use self::fields::*;
use self::pipelines::*;
use self::processors::*;
use self::receivers::*;
use self::service::*;
use self::tls::*;
use self::values::*;
use super::defaults::*;
use super::probe_plan::{self, Amount, ProbePlan};

/// The top-level keys of a pipeline file, in their conventional order.
pub(super) const SECTIONS: [&str; 5] = [
    "receivers",
    "processors",
    "exporters",
    "pipelines",
    "service",
];

/// A processor component after validation.
pub(super) enum Processor {
    Window(WindowSpec),
    Contract(Box<ContractSpec>),
}

/// Components of one section by full id, in file order: `Some` when valid,
/// `None` when defined but invalid (already reported; references to it are
/// not reported again).
pub(super) type Defined<T> = IndexMap<String, Option<T>>;

/// Validates the parsed (substituted, overridden) tree of a pipeline file.
pub(crate) fn validate(root: Map<String, Value>) -> Result<ValidatedConfig, ConfigErrors> {
    let mut errors = Errors::default();
    let file_order: Vec<String> = root.keys().cloned().collect();

    let mut sections: HashMap<&'static str, Value> = HashMap::new();
    for (key, value) in root {
        match SECTIONS.iter().find(|s| **s == key) {
            Some(section) => {
                sections.insert(section, value);
            }
            // An empty key still gets a path a person can find (`""`).
            None if key.is_empty() => errors.push("\"\"".to_string(), "unknown key"),
            None => errors.push(key, "unknown key"),
        }
    }

    let receivers = receivers(sections.remove("receivers"), &mut errors);
    let processors = processors(sections.remove("processors"), &mut errors);
    let exporters = exporters(sections.remove("exporters"), &mut errors);
    let service = service(sections.remove("service"), &mut errors);
    let wiring = pipelines(
        sections.remove("pipelines"),
        &receivers,
        &processors,
        &exporters,
        &mut errors,
    );

    let used_receivers: Vec<ReceiverSpec> = receivers
        .iter()
        .filter(|(id, _)| wiring.used_receivers.contains(id.as_str()))
        .filter_map(|(_, spec)| spec.clone())
        .collect();
    let used_exporters: Vec<ExporterSpec> = exporters
        .iter()
        .filter(|(id, _)| wiring.used_exporters.contains(id.as_str()))
        .filter_map(|(_, spec)| spec.clone())
        .collect();

    check_listeners(
        &used_receivers,
        &used_exporters,
        service.as_ref(),
        &mut errors,
    );
    if let Some(service) = &service {
        check_request_budget(&used_receivers, service, &mut errors);
    }
    check_probe_targets(&used_receivers, &wiring.pipelines, &mut errors);
    check_flag_templates(&used_exporters, &wiring.pipelines, &mut errors);

    match (errors.0.is_empty(), service) {
        (true, Some(service)) => Ok(ValidatedConfig {
            receivers: used_receivers,
            exporters: used_exporters,
            pipelines: wiring.pipelines,
            service,
        }),
        _ => Err(ConfigErrors(sort_by_section(errors.0, &file_order))),
    }
}

/// Orders errors by the position of their top-level section in the file
/// (file-level errors first, sections absent from the file last), keeping
/// the order of discovery within a section.
pub(super) fn sort_by_section(
    mut errors: Vec<ConfigError>,
    file_order: &[String],
) -> Vec<ConfigError> {
    let rank = |path: &str| -> usize {
        if path.is_empty() {
            return 0;
        }
        if let Some(i) = file_order.iter().position(|k| k == path) {
            return i + 1;
        }
        let under = |k: &str| {
            path.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        };
        if let Some(i) = file_order.iter().position(|k| under(k)) {
            return i + 1;
        }
        let absent = SECTIONS.iter().position(|k| under(k) || *k == path);
        file_order.len() + 1 + absent.unwrap_or(SECTIONS.len())
    };
    errors.sort_by_cached_key(|e| rank(&e.path));
    errors
}
