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

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use config::{Map, Value, ValueKind};
use indexmap::IndexMap;
use serde::de::DeserializeOwned;

use super::error::{ConfigError, ConfigErrors};
use super::raw::{
    ByteSize, Checked, Field, HumanDuration, Int, MapOnly, Matches, Num, RawBaseline, RawContract,
    RawListener, RawLog, RawOtlpReceiver, RawPipeline, RawProbeReceiver, RawPrometheus, RawRetry,
    RawService, RawWebhook, RawWindow, StringList, StringMap,
};
use super::validated::{
    AttributeMatch, BaselineSpec, ContractSpec, Decision, ExporterKind, ExporterSpec, OnTimeout,
    OtlpReceiverSpec, PipelineSpec, ProbeReceiverSpec, ReceiverKind, ReceiverSpec, RetrySpec,
    ServiceSpec, Source, Thresholds, ValidatedConfig, WebhookSpec, WindowSpec,
};
use crate::contracts::{CompiledContract, Selection};
use crate::model::RunState;
use crate::probe::plan::{self as probe_plan, Amount, ProbePlan};
use crate::receivers::probe::{self as probe_receiver, SYNTHETIC_ATTRIBUTE};
use crate::storage::StorageSpec;

/// The top-level keys of a pipeline file, in their conventional order.
const SECTIONS: [&str; 5] = [
    "receivers",
    "processors",
    "exporters",
    "pipelines",
    "service",
];

/// Default OTLP/gRPC listen address.
pub(crate) const DEFAULT_GRPC_ENDPOINT: &str = "0.0.0.0:4317";
/// Default OTLP/HTTP listen address.
pub(crate) const DEFAULT_HTTP_ENDPOINT: &str = "0.0.0.0:4318";
/// Default Prometheus exporter listen address.
pub(crate) const DEFAULT_PROMETHEUS_ENDPOINT: &str = "0.0.0.0:9464";
/// Default HTTP API listen address.
pub(crate) const DEFAULT_API_ENDPOINT: &str = "127.0.0.1:8686";
/// Default `service.storage`: an SQLite file under the working directory.
pub(crate) const DEFAULT_STORAGE: &str = "sqlite://data/verdict.db";
/// Default webhook `timeout`.
pub(crate) const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default webhook `retry.initial_interval`.
pub(crate) const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Default webhook `retry.max_interval`.
pub(crate) const DEFAULT_RETRY_MAX_INTERVAL: Duration = Duration::from_secs(30);
/// Default webhook `retry.max_elapsed`.
pub(crate) const DEFAULT_RETRY_MAX_ELAPSED: Duration = Duration::from_secs(3600);
/// Default `max_request_bytes` of an OTLP receiver: 20 MiB.
pub(crate) const DEFAULT_MAX_REQUEST_BYTES: u64 = 20 * 1024 * 1024;
/// Default `service.max_inflight_bytes`: 256 MiB.
pub(crate) const DEFAULT_MAX_INFLIGHT_BYTES: u64 = 256 * 1024 * 1024;
/// Default `service.checkpoint_interval`.
pub(crate) const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// Default `service.metric_expiry`.
pub(crate) const DEFAULT_METRIC_EXPIRY: Duration = Duration::from_secs(3600);
/// Default window `size`.
pub(crate) const DEFAULT_WINDOW_SIZE: Duration = Duration::from_secs(60);
/// Default window `allowed_lateness`.
pub(crate) const DEFAULT_ALLOWED_LATENESS: Duration = Duration::from_secs(10);
/// Default window `max_clock_skew`.
pub(crate) const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Default window `queue_size`, in batches per shard.
pub(crate) const DEFAULT_QUEUE_SIZE: usize = 4096;
/// Default window `max_series`.
pub(crate) const DEFAULT_MAX_SERIES: usize = 10_000;
/// Default window `max_streams`.
pub(crate) const DEFAULT_MAX_STREAMS: usize = 10_000;
/// Default window `stream_expiry`: several export intervals of a typical SDK.
pub(crate) const DEFAULT_STREAM_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// Default contract `subject_by`.
pub(crate) const DEFAULT_SUBJECT_BY: [&str; 2] = ["service.name", "service.version"];
/// OTLP span kinds by config name, with their enum numbers.
const SPAN_KINDS: [(&str, i32); 5] = [
    ("INTERNAL", 1),
    ("SERVER", 2),
    ("CLIENT", 3),
    ("PRODUCER", 4),
    ("CONSUMER", 5),
];
/// Default contract `span_kinds`: SERVER and CONSUMER.
pub(crate) const DEFAULT_SPAN_KINDS: [i32; 2] = [2, 5];
/// Default contract `conversion_attribute`.
pub(crate) const DEFAULT_CONVERSION_ATTRIBUTE: &str = "validation.converted";
/// Default contract `latency_metric`.
pub(crate) const DEFAULT_LATENCY_METRIC: &str = "http.server.request.duration";
/// Default contract `conversions_metric`.
pub(crate) const DEFAULT_CONVERSIONS_METRIC: &str = "validation.conversions";
/// Default contract `pass_windows`.
pub(crate) const DEFAULT_PASS_WINDOWS: u32 = 3;
/// Default sequential-test `alpha`.
pub(crate) const DEFAULT_ALPHA: f64 = 0.05;

/// Exporter types the design names that this build does not have yet.
const UNAVAILABLE_EXPORTERS: [&str; 1] = ["unleash"];

/// The problems found so far.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Puts the errors found since `mark` about the map at `prefix` in the
    /// order its `keys` appear in the file (stable; errors about the map as
    /// a whole, or about keys it does not have, go last).
    fn file_order_since(&mut self, mark: usize, prefix: &str, keys: &[String]) {
        let rank = |path: &str| -> usize {
            let field = path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest));
            field
                .and_then(|field| keys.iter().position(|k| k == field))
                .unwrap_or(keys.len())
        };
        self.0[mark..].sort_by_cached_key(|e| rank(&e.path));
    }
}

/// The keys of a map value, in file order (empty for anything else).
fn table_keys(value: &Value) -> Vec<String> {
    match &value.kind {
        ValueKind::Table(table) => table.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `prefix.key`, or `key` when `prefix` is empty.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The value of a field: `None` when absent; a value that could not be read
/// is reported at `path` and also gives `None`.
fn take<T>(field: Field<T>, path: &str, errors: &mut Errors) -> Option<T> {
    match field? {
        Checked(Ok(value)) => Some(value),
        Checked(Err(message)) => {
            errors.push(path, message);
            None
        }
    }
}

/// A processor component after validation.
enum Processor {
    Window(WindowSpec),
    Contract(Box<ContractSpec>),
}

/// Components of one section by full id, in file order: `Some` when valid,
/// `None` when defined but invalid (already reported; references to it are
/// not reported again).
type Defined<T> = IndexMap<String, Option<T>>;

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
fn sort_by_section(mut errors: Vec<ConfigError>, file_order: &[String]) -> Vec<ConfigError> {
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

/// The entries of a section that maps ids (or names) to settings.
fn section_entries(
    section: &str,
    value: Option<Value>,
    errors: &mut Errors,
) -> Vec<(String, Value)> {
    let Some(value) = value else {
        return Vec::new();
    };
    match value.kind {
        ValueKind::Table(table) => table.into_iter().collect(),
        ValueKind::Nil => Vec::new(),
        ValueKind::String(s) if s.is_empty() => Vec::new(),
        other => {
            errors.push(section, format!("expected a map, got {}", describe(&other)));
            Vec::new()
        }
    }
}

/// "a string", "a list", … for messages about the wrong kind of value.
fn describe(kind: &ValueKind) -> &'static str {
    match kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "an integer"
        }
        ValueKind::Float(_) => "a number",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a map",
        ValueKind::Array(_) => "a list",
    }
}

/// Deserializes `value` (a component, a pipeline, the service section) into
/// `T`, reporting every unknown key with its path under `path`. Bad field
/// values do not fail here (they are kept in `Checked` fields, see `raw`), so
/// the only error `serde_path_to_error` can see is a value that is not a map
/// at all, before anything was read. A key written with no value counts as
/// an empty map.
fn deserialize<T: DeserializeOwned>(value: Value, path: &str, errors: &mut Errors) -> Option<T> {
    let value = match &value.kind {
        ValueKind::Nil => Value::new(None, ValueKind::Table(Map::new())),
        ValueKind::String(s) if s.is_empty() => Value::new(None, ValueKind::Table(Map::new())),
        _ => value,
    };
    let mut unknown = Vec::new();
    let mut on_ignored =
        |ignored: serde_ignored::Path<'_>| unknown.push(join(path, &ignored_path(&ignored)));
    let result: Result<MapOnly<T>, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut on_ignored));
    for key in unknown {
        errors.push(key, "unknown key");
    }
    match result {
        Ok(MapOnly(value)) => Some(value),
        Err(error) => {
            errors.push(
                error_path(path, error.path()),
                config_error_message(error.inner()),
            );
            None
        }
    }
}

/// Dotted rendering of a `serde_ignored` path (`a.b[0].c`).
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => join(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// `prefix` followed by a `serde_path_to_error` path (`a.b[0].c`).
fn error_path(prefix: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = prefix.to_string();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } => out = join(&out, key),
            Segment::Enum { variant } => out = join(&out, variant),
            Segment::Unknown => out = join(&out, "?"),
        }
    }
    out
}

/// A config-rs deserialization error without the ` for key …` suffix that
/// config-rs adds (the path is reported separately).
fn config_error_message(error: &config::ConfigError) -> String {
    match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}"),
        config::ConfigError::At { error, .. } => config_error_message(error),
        other => other.to_string(),
    }
}

/// A component id split into its type and optional name.
struct ComponentId<'a> {
    kind: &'a str,
    name: Option<&'a str>,
}

/// Parses `type` or `type/name`. Names may contain letters, digits, `_`,
/// `-` and `.` (they appear in API paths and metric labels).
fn parse_id(id: &str) -> Result<ComponentId<'_>, String> {
    let (kind, name) = match id.split_once('/') {
        Some((kind, name)) => (kind, Some(name)),
        None => (id, None),
    };
    if kind.is_empty() {
        return Err(format!(
            "invalid component id {id:?}: expected type or type/name"
        ));
    }
    if let Some(name) = name {
        if name.is_empty() {
            return Err(format!(
                "invalid component id {id:?}: the name after \"/\" is empty"
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "invalid component id {id:?}: a name may contain only letters, digits, \"_\", \"-\" and \".\""
            ));
        }
    }
    Ok(ComponentId { kind, name })
}

// ---------------------------------------------------------------- receivers

fn receivers(section: Option<Value>, errors: &mut Errors) -> Defined<ReceiverSpec> {
    let mut defined = Defined::new();
    for (id, value) in section_entries("receivers", section, errors) {
        let path = join("receivers", &id);
        let (mark, keys) = (errors.len(), table_keys(&value));
        let spec = match parse_id(&id) {
            Err(message) => {
                errors.push(&path, message);
                None
            }
            Ok(cid) => match cid.kind {
                "otlp" => deserialize::<RawOtlpReceiver>(value, &path, errors)
                    .and_then(|raw| otlp_receiver(raw, &path, errors))
                    .map(|otlp| ReceiverSpec {
                        id: id.clone(),
                        kind: ReceiverKind::Otlp(otlp),
                    }),
                "probe" => deserialize::<RawProbeReceiver>(value, &path, errors)
                    .and_then(|raw| probe(raw, &path, errors))
                    .map(|probe| ReceiverSpec {
                        id: id.clone(),
                        kind: ReceiverKind::Probe(Box::new(probe)),
                    }),
                kind => {
                    errors.push(&path, format!("unknown receiver type {kind:?}"));
                    None
                }
            },
        };
        errors.file_order_since(mark, &path, &keys);
        defined.insert(id, spec);
    }
    defined
}

fn otlp_receiver(
    raw: RawOtlpReceiver,
    path: &str,
    errors: &mut Errors,
) -> Option<OtlpReceiverSpec> {
    let before = errors.len();
    let protocols_path = join(path, "protocols");
    let (mut grpc_endpoint, mut http_endpoint) = (None, None);
    let protocols_given = raw.protocols.is_some();
    if let Some(MapOnly(protocols)) = take(raw.protocols, &protocols_path, errors)
        .or_else(|| (!protocols_given).then(Default::default))
    {
        if protocols.grpc.is_none() && protocols.http.is_none() {
            errors.push(&protocols_path, "at least one of grpc or http is required");
        }
        let mut listener =
            |listener: Field<MapOnly<RawListener>>, protocol: &str, default: &str| {
                let at = join(&protocols_path, protocol);
                take(listener, &at, errors)
                    .map(|MapOnly(l)| endpoint(l.endpoint, default, &join(&at, "endpoint"), errors))
            };
        grpc_endpoint = listener(protocols.grpc, "grpc", DEFAULT_GRPC_ENDPOINT);
        http_endpoint = listener(protocols.http, "http", DEFAULT_HTTP_ENDPOINT);
    }
    let max_request_bytes = byte_size(
        raw.max_request_bytes,
        DEFAULT_MAX_REQUEST_BYTES,
        &join(path, "max_request_bytes"),
        errors,
    );
    let bearer_token = take(raw.auth, &join(path, "auth"), errors).and_then(|MapOnly(auth)| {
        token(auth.bearer_token, &join(path, "auth.bearer_token"), errors)
    });
    (errors.len() == before).then_some(OtlpReceiverSpec {
        grpc_endpoint,
        http_endpoint,
        max_request_bytes,
        bearer_token,
    })
}

fn probe(raw: RawProbeReceiver, path: &str, errors: &mut Errors) -> Option<ProbeReceiverSpec> {
    let before = errors.len();
    let at = |key: &str| join(path, key);

    let url = match take(raw.url, &at("url"), errors) {
        Some(text) => parsed(probe_plan::parse_url(&text), &at("url"), errors),
        None => {
            errors.push(at("url"), "required: the URL to send requests to");
            None
        }
    };
    let method = take(raw.method, &at("method"), errors)
        .and_then(|m| parsed(probe_plan::parse_method(&m), &at("method"), errors));
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in string_map(raw.headers, &at("headers"), errors) {
        let header_path = join(&at("headers"), &name);
        if let Some((name, value)) = parsed(probe_plan::header(&name, &value), &header_path, errors)
        {
            headers.append(name, value);
        }
    }
    let body = take(raw.body, &at("body"), errors);

    let requests_given = raw.requests.is_some();
    let requests = int_in(
        raw.requests,
        probe_plan::DEFAULT_REQUESTS as i64,
        1,
        i64::MAX,
        &at("requests"),
        errors,
    );
    let duration = optional_positive_duration(raw.duration, &at("duration"), errors);
    if requests_given && duration.is_some() {
        errors.push(path, "set requests or duration, not both");
    }
    let concurrency = int_in(
        raw.concurrency,
        probe_plan::DEFAULT_CONCURRENCY as i64,
        1,
        probe_plan::MAX_CONCURRENCY as i64,
        &at("concurrency"),
        errors,
    );
    let timeout = positive_duration(
        raw.timeout,
        probe_plan::DEFAULT_TIMEOUT,
        &at("timeout"),
        errors,
    );
    let rate = finite(raw.rate, &at("rate"), errors)
        .and_then(|r| parsed(probe_plan::check_rate(r).map(|()| r), &at("rate"), errors));
    let interval = optional_positive_duration(raw.interval, &at("interval"), errors);
    let conversion_header =
        take(raw.conversion_header, &at("conversion_header"), errors).and_then(|h| {
            parsed(
                probe_plan::parse_header_name(&h),
                &at("conversion_header"),
                errors,
            )
        });

    let resource_given = raw.resource.is_some();
    let mut resource = string_map(raw.resource, &at("resource"), errors);
    if resource.is_empty() && !resource_given {
        errors.push(
            at("resource"),
            "required: the resource attributes its requests count for (e.g. service.name, service.version)",
        );
    }
    match resource.iter().find(|(k, _)| k == SYNTHETIC_ATTRIBUTE) {
        Some((_, v)) if v != "true" => errors.push(
            join(&at("resource"), SYNTHETIC_ATTRIBUTE),
            format!("must be \"true\" (probe traffic is synthetic), got {v:?}"),
        ),
        Some(_) => {}
        None => resource.push((SYNTHETIC_ATTRIBUTE.to_string(), "true".to_string())),
    }

    if errors.len() != before {
        return None;
    }
    let mut plan = ProbePlan::new(url?);
    if let Some(method) = method {
        plan.method = method;
    }
    plan.headers = headers;
    plan.body = body.map(bytes::Bytes::from);
    plan.amount = match duration {
        Some(d) => Amount::Duration(d),
        None => Amount::Requests(u64::try_from(requests).unwrap_or(probe_plan::DEFAULT_REQUESTS)),
    };
    plan.concurrency = usize::try_from(concurrency).unwrap_or(probe_plan::DEFAULT_CONCURRENCY);
    plan.timeout = timeout;
    plan.rate = rate;
    if let Some(header) = conversion_header {
        plan.conversion_header = header;
    }
    Some(ProbeReceiverSpec {
        plan,
        interval,
        resource,
    })
}

/// The value of a parse, or `None` with its message reported at `path`.
fn parsed<T>(result: Result<T, String>, path: &str, errors: &mut Errors) -> Option<T> {
    result.map_err(|message| errors.push(path, message)).ok()
}

/// A map of strings (headers, resource attributes), in file order; a value
/// that is not a string, or an empty key, is reported and left out.
fn string_map(raw: Field<StringMap>, path: &str, errors: &mut Errors) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for (key, value) in take(raw, path, errors).unwrap_or_default() {
        if key.trim().is_empty() {
            errors.push(path, "keys must not be empty");
            continue;
        }
        if let Some(value) = take(Some(value), &join(path, &key), errors) {
            entries.push((key, value.0));
        }
    }
    entries
}

// --------------------------------------------------------------- processors

fn processors(section: Option<Value>, errors: &mut Errors) -> Defined<Processor> {
    let mut defined = Defined::new();
    for (id, value) in section_entries("processors", section, errors) {
        let path = join("processors", &id);
        let (mark, keys) = (errors.len(), table_keys(&value));
        let spec = match parse_id(&id) {
            Err(message) => {
                errors.push(&path, message);
                None
            }
            Ok(cid) => match cid.kind {
                "window" => deserialize::<RawWindow>(value, &path, errors)
                    .and_then(|raw| window(raw, &path, errors))
                    .map(Processor::Window),
                "contract" => deserialize::<RawContract>(value, &path, errors)
                    .and_then(|raw| contract(raw, cid.name.unwrap_or("contract"), &path, errors))
                    .map(|spec| Processor::Contract(Box::new(spec))),
                kind => {
                    errors.push(&path, format!("unknown processor type {kind:?}"));
                    None
                }
            },
        };
        errors.file_order_since(mark, &path, &keys);
        defined.insert(id, spec);
    }
    defined
}

/// Number of shards for `shards: 0`: one per core (1 if unknown).
fn shards_per_core() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The window settings a pipeline gets when it lists no window processor.
pub(crate) fn default_window() -> WindowSpec {
    WindowSpec {
        size: DEFAULT_WINDOW_SIZE,
        allowed_lateness: DEFAULT_ALLOWED_LATENESS,
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        shards: shards_per_core(),
        queue_size: DEFAULT_QUEUE_SIZE,
        max_series: DEFAULT_MAX_SERIES,
        max_streams: DEFAULT_MAX_STREAMS,
        stream_expiry: DEFAULT_STREAM_EXPIRY,
    }
}

/// `usize::MAX` as an `i64` bound.
const USIZE_MAX: i64 = if (usize::MAX as u128) > (i64::MAX as u128) {
    i64::MAX
} else {
    usize::MAX as i64
};

fn window(raw: RawWindow, path: &str, errors: &mut Errors) -> Option<WindowSpec> {
    let before = errors.len();
    let size = positive_duration(raw.size, DEFAULT_WINDOW_SIZE, &join(path, "size"), errors);
    let allowed_lateness = take(
        raw.allowed_lateness,
        &join(path, "allowed_lateness"),
        errors,
    )
    .map_or(DEFAULT_ALLOWED_LATENESS, |d| d.0);
    let max_clock_skew = take(raw.max_clock_skew, &join(path, "max_clock_skew"), errors)
        .map_or(DEFAULT_MAX_CLOCK_SKEW, |d| d.0);
    let shards = int_in(raw.shards, 0, 0, USIZE_MAX, &join(path, "shards"), errors);
    let queue_size = int_in(
        raw.queue_size,
        DEFAULT_QUEUE_SIZE as i64,
        1,
        USIZE_MAX,
        &join(path, "queue_size"),
        errors,
    );
    let max_series = int_in(
        raw.max_series,
        DEFAULT_MAX_SERIES as i64,
        1,
        USIZE_MAX,
        &join(path, "max_series"),
        errors,
    );
    let max_streams = int_in(
        raw.max_streams,
        DEFAULT_MAX_STREAMS as i64,
        1,
        USIZE_MAX,
        &join(path, "max_streams"),
        errors,
    );
    let stream_expiry = positive_duration(
        raw.stream_expiry,
        DEFAULT_STREAM_EXPIRY,
        &join(path, "stream_expiry"),
        errors,
    );
    (errors.len() == before).then(|| WindowSpec {
        size,
        allowed_lateness,
        max_clock_skew,
        shards: match usize::try_from(shards) {
            Ok(0) | Err(_) => shards_per_core(),
            Ok(n) => n,
        },
        queue_size: usize::try_from(queue_size).unwrap_or(DEFAULT_QUEUE_SIZE),
        max_series: usize::try_from(max_series).unwrap_or(DEFAULT_MAX_SERIES),
        max_streams: usize::try_from(max_streams).unwrap_or(DEFAULT_MAX_STREAMS),
        stream_expiry,
    })
}

fn contract(raw: RawContract, name: &str, path: &str, errors: &mut Errors) -> Option<ContractSpec> {
    let before = errors.len();
    let at = |key: &str| join(path, key);

    let version = int_in(raw.version, 1, 1, u32::MAX.into(), &at("version"), errors);
    let matches = attribute_matches(raw.matches, &at("match"), errors);
    let subject_by = subject_by(raw.subject_by, &at("subject_by"), errors);
    let source = one_of(
        raw.source,
        &[("spans", Source::Spans), ("metrics", Source::Metrics)],
        Source::Spans,
        &at("source"),
        errors,
    );
    let span_kinds = span_kinds(raw.span_kinds, &at("span_kinds"), errors);
    let conversion_attribute = name_or_default(
        raw.conversion_attribute,
        DEFAULT_CONVERSION_ATTRIBUTE,
        &at("conversion_attribute"),
        errors,
    );
    let latency_metric = name_or_default(
        raw.latency_metric,
        DEFAULT_LATENCY_METRIC,
        &at("latency_metric"),
        errors,
    );
    let conversions_metric = name_or_default(
        raw.conversions_metric,
        DEFAULT_CONVERSIONS_METRIC,
        &at("conversions_metric"),
        errors,
    );

    let has_threshold = raw.max_p95_latency_ms.is_some()
        || raw.max_error_rate_percent.is_some()
        || raw.min_conversion_rate_percent.is_some();
    let thresholds = Thresholds {
        max_p95_latency_ms: positive(raw.max_p95_latency_ms, &at("max_p95_latency_ms"), errors),
        max_error_rate_percent: percent(
            raw.max_error_rate_percent,
            &at("max_error_rate_percent"),
            errors,
        ),
        min_conversion_rate_percent: percent(
            raw.min_conversion_rate_percent,
            &at("min_conversion_rate_percent"),
            errors,
        ),
    };
    if !has_threshold {
        errors.push(
            path,
            "no threshold set; set at least one of max_p95_latency_ms, max_error_rate_percent or min_conversion_rate_percent",
        );
    }

    let min_samples = int_in(raw.min_samples, 1, 1, i64::MAX, &at("min_samples"), errors);
    let min_window_samples = int_in(
        raw.min_window_samples,
        1,
        1,
        i64::MAX,
        &at("min_window_samples"),
        errors,
    );
    let pass_windows = int_in(
        raw.pass_windows,
        DEFAULT_PASS_WINDOWS.into(),
        1,
        u32::MAX.into(),
        &at("pass_windows"),
        errors,
    );
    let fail_windows = int_in(
        raw.fail_windows,
        1,
        1,
        u32::MAX.into(),
        &at("fail_windows"),
        errors,
    );
    let max_duration = optional_positive_duration(raw.max_duration, &at("max_duration"), errors);
    let on_timeout = one_of(
        raw.on_timeout,
        &[
            ("rollback", OnTimeout::Rollback),
            ("promote", OnTimeout::Promote),
        ],
        OnTimeout::Rollback,
        &at("on_timeout"),
        errors,
    );
    let baseline = take(raw.baseline, &at("baseline"), errors)
        .and_then(|b| baseline(b.0, &at("baseline"), errors));
    let decision = one_of(
        raw.decision,
        &[
            ("windows", Decision::Windows),
            ("sequential", Decision::Sequential),
        ],
        Decision::Windows,
        &at("decision"),
        errors,
    );
    let alpha = alpha(raw.alpha, &at("alpha"), errors);
    let dry_run = take(raw.dry_run, &at("dry_run"), errors).unwrap_or(false);

    (errors.len() == before).then(|| ContractSpec {
        name: name.to_string(),
        version: u32::try_from(version).unwrap_or(1),
        matches,
        subject_by,
        source,
        span_kinds,
        conversion_attribute,
        latency_metric,
        conversions_metric,
        thresholds,
        min_samples: u64::try_from(min_samples).unwrap_or(1),
        min_window_samples: u64::try_from(min_window_samples).unwrap_or(1),
        pass_windows: u32::try_from(pass_windows).unwrap_or(DEFAULT_PASS_WINDOWS),
        fail_windows: u32::try_from(fail_windows).unwrap_or(1),
        max_duration,
        on_timeout,
        baseline,
        decision,
        alpha,
        dry_run,
    })
}

fn baseline(raw: RawBaseline, path: &str, errors: &mut Errors) -> Option<BaselineSpec> {
    let before = errors.len();
    let match_path = join(path, "match");
    let match_given = raw.matches.is_some();
    let matches = attribute_matches(raw.matches, &match_path, errors);
    if matches.is_empty() && !match_given {
        errors.push(
            &match_path,
            "required: at least one resource attribute that selects the baseline release",
        );
    }
    let has_threshold = raw.max_p95_latency_increase_percent.is_some()
        || raw.max_error_rate_increase_points.is_some();
    let spec = BaselineSpec {
        matches,
        max_p95_latency_increase_percent: non_negative(
            raw.max_p95_latency_increase_percent,
            &join(path, "max_p95_latency_increase_percent"),
            errors,
        ),
        max_error_rate_increase_points: percent(
            raw.max_error_rate_increase_points,
            &join(path, "max_error_rate_increase_points"),
            errors,
        ),
    };
    if !has_threshold {
        errors.push(
            path,
            "no threshold set; set max_p95_latency_increase_percent and/or max_error_rate_increase_points",
        );
    }
    (errors.len() == before).then_some(spec)
}

/// `match:` entries, each glob checked to compile.
fn attribute_matches(raw: Field<Matches>, path: &str, errors: &mut Errors) -> Vec<AttributeMatch> {
    let mut matches = Vec::new();
    for (key, pattern) in take(raw, path, errors).unwrap_or_default() {
        if key.trim().is_empty() {
            errors.push(path, "attribute keys must not be empty");
            continue;
        }
        let Some(pattern) = take(Some(pattern), &join(path, &key), errors) else {
            continue;
        };
        let pattern = pattern.0;
        match globset::Glob::new(&pattern) {
            Ok(_) => matches.push(AttributeMatch { key, pattern }),
            Err(e) => errors.push(
                join(path, &key),
                format!("invalid glob {pattern:?}: {}", e.kind()),
            ),
        }
    }
    matches
}

fn subject_by(raw: Field<StringList>, path: &str, errors: &mut Errors) -> Vec<String> {
    let Some(items) = list_items(raw, path, errors) else {
        return DEFAULT_SUBJECT_BY.iter().map(|s| s.to_string()).collect();
    };
    if items.is_empty() {
        errors.push(path, "must list at least one attribute");
    }
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if item.is_empty() {
            errors.push(format!("{path}[{i}]"), "must not be empty");
        } else if !seen.insert(item.as_str()) {
            errors.push(path, format!("lists {item:?} more than once"));
        }
    }
    items
}

fn span_kinds(raw: Field<StringList>, path: &str, errors: &mut Errors) -> Vec<i32> {
    let Some(items) = list_items(raw, path, errors) else {
        return DEFAULT_SPAN_KINDS.to_vec();
    };
    if items.is_empty() {
        errors.push(path, "must list at least one span kind");
    }
    let mut kinds = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let upper = item.to_ascii_uppercase();
        let bare = upper.strip_prefix("SPAN_KIND_").unwrap_or(&upper);
        match SPAN_KINDS.iter().find(|(name, _)| *name == bare) {
            Some((name, number)) if kinds.contains(number) => {
                errors.push(path, format!("lists {name} more than once"));
            }
            Some((_, number)) => kinds.push(*number),
            None => errors.push(
                format!("{path}[{i}]"),
                format!(
                    "unknown span kind {item:?}, expected INTERNAL, SERVER, CLIENT, PRODUCER or CONSUMER"
                ),
            ),
        }
    }
    kinds
}

/// The items of a list field (`None` when absent or unreadable); an item
/// that is not a string is reported at `path[i]` and left out.
fn list_items(raw: Field<StringList>, path: &str, errors: &mut Errors) -> Option<Vec<String>> {
    let StringList(items) = take(raw, path, errors)?;
    let mut strings = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Ok(item) => strings.push(item),
            Err(message) => errors.push(format!("{path}[{i}]"), message),
        }
    }
    Some(strings)
}

/// A keyword field: one of `choices` (exact, lower case), or `default`.
fn one_of<T: Copy>(
    raw: Field<String>,
    choices: &[(&str, T)],
    default: T,
    path: &str,
    errors: &mut Errors,
) -> T {
    let Some(raw) = take(raw, path, errors) else {
        return default;
    };
    match choices.iter().find(|(name, _)| *name == raw) {
        Some((_, value)) => *value,
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            errors.push(
                path,
                format!("expected {}, got {raw:?}", names.join(" or ")),
            );
            default
        }
    }
}

/// An attribute or metric name: `default` when absent, never empty.
fn name_or_default(raw: Field<String>, default: &str, path: &str, errors: &mut Errors) -> String {
    match take(raw, path, errors) {
        None => default.to_string(),
        Some(name) if name.trim().is_empty() => {
            errors.push(path, "must not be empty");
            default.to_string()
        }
        Some(name) => name,
    }
}

fn alpha(raw: Field<Num>, path: &str, errors: &mut Errors) -> f64 {
    let Some(Num(v)) = take(raw, path, errors) else {
        return DEFAULT_ALPHA;
    };
    if !(v > 0.0 && v < 1.0) {
        errors.push(
            path,
            format!("must be between 0 and 1 (exclusive), got {v}"),
        );
    }
    v
}

// ---------------------------------------------------------------- exporters

fn exporters(section: Option<Value>, errors: &mut Errors) -> Defined<ExporterSpec> {
    let mut defined = Defined::new();
    for (id, value) in section_entries("exporters", section, errors) {
        let path = join("exporters", &id);
        let (mark, keys) = (errors.len(), table_keys(&value));
        let kind = match parse_id(&id) {
            Err(message) => {
                errors.push(&path, message);
                None
            }
            Ok(cid) => match cid.kind {
                "prometheus" => {
                    deserialize::<RawPrometheus>(value, &path, errors).and_then(|raw| {
                        let before = errors.len();
                        let endpoint = endpoint(
                            raw.endpoint,
                            DEFAULT_PROMETHEUS_ENDPOINT,
                            &join(&path, "endpoint"),
                            errors,
                        );
                        (errors.len() == before).then_some(ExporterKind::Prometheus { endpoint })
                    })
                }
                "log" => deserialize::<RawLog>(value, &path, errors).map(|_| ExporterKind::Log),
                "webhook" => deserialize::<RawWebhook>(value, &path, errors)
                    .and_then(|raw| webhook(raw, &path, errors)),
                kind if UNAVAILABLE_EXPORTERS.contains(&kind) => {
                    errors.push(
                        &path,
                        format!("exporter type {kind:?} is not available in this build"),
                    );
                    None
                }
                kind => {
                    errors.push(&path, format!("unknown exporter type {kind:?}"));
                    None
                }
            },
        };
        let spec = kind.map(|kind| ExporterSpec {
            id: id.clone(),
            kind,
        });
        errors.file_order_since(mark, &path, &keys);
        defined.insert(id, spec);
    }
    defined
}

/// A webhook exporter; `None` when it has problems (reported).
fn webhook(raw: RawWebhook, path: &str, errors: &mut Errors) -> Option<ExporterKind> {
    let before = errors.len();
    let url_path = join(path, "url");
    let url = match take(raw.url, &url_path, errors) {
        None => {
            errors.push(&url_path, "is required");
            String::new()
        }
        Some(url) => {
            if let Err(why) = check_url(&url) {
                errors.push(&url_path, why);
            }
            url
        }
    };
    let on_path = join(path, "on");
    let on = match list_items(raw.on, &on_path, errors) {
        None => vec![RunState::Promoted, RunState::RolledBack],
        Some(items) if items.is_empty() => {
            errors.push(&on_path, "must list at least one state");
            Vec::new()
        }
        Some(items) => {
            let mut states = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let found = [
                    RunState::Validating,
                    RunState::Promoted,
                    RunState::RolledBack,
                ]
                .into_iter()
                .find(|s| s.as_str() == item);
                match found {
                    Some(s) if !states.contains(&s) => states.push(s),
                    Some(_) => errors.push(&on_path, format!("lists {item:?} more than once")),
                    None => errors.push(
                        format!("{on_path}[{i}]"),
                        format!("expected VALIDATING, PROMOTED or ROLLED_BACK, got {item:?}"),
                    ),
                }
            }
            states
        }
    };
    let secret = take(raw.secret, &join(path, "secret"), errors).filter(|s| !s.is_empty());
    let timeout = positive_duration(
        raw.timeout,
        DEFAULT_WEBHOOK_TIMEOUT,
        &join(path, "timeout"),
        errors,
    );
    let retry_path = join(path, "retry");
    let MapOnly(retry) = take(raw.retry, &retry_path, errors).unwrap_or_default();
    let retry = retry_spec(retry, &retry_path, errors);
    (errors.len() == before).then_some(ExporterKind::Webhook(WebhookSpec {
        url,
        on,
        secret,
        timeout,
        retry,
    }))
}

fn retry_spec(raw: RawRetry, path: &str, errors: &mut Errors) -> RetrySpec {
    let initial_interval = positive_duration(
        raw.initial_interval,
        DEFAULT_RETRY_INITIAL,
        &join(path, "initial_interval"),
        errors,
    );
    let max_interval = positive_duration(
        raw.max_interval,
        DEFAULT_RETRY_MAX_INTERVAL.max(initial_interval),
        &join(path, "max_interval"),
        errors,
    );
    if max_interval < initial_interval {
        errors.push(
            join(path, "max_interval"),
            format!(
                "must be at least initial_interval ({}), got {}",
                humantime::format_duration(initial_interval),
                humantime::format_duration(max_interval)
            ),
        );
    }
    let max_elapsed = positive_duration(
        raw.max_elapsed,
        DEFAULT_RETRY_MAX_ELAPSED,
        &join(path, "max_elapsed"),
        errors,
    );
    RetrySpec {
        initial_interval,
        max_interval,
        max_elapsed,
    }
}

/// A client URL: `http` or `https` with a host.
fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("must be an http:// or https:// URL, got {url:?}")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("must name a host, got {url:?}"));
    }
    Ok(())
}

/// Reads `service.storage`.
fn storage(raw: Option<String>, errors: &mut Errors) -> StorageSpec {
    const PATH: &str = "service.storage";
    let url = raw
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_STORAGE.to_string());
    // `memory` and `memory://` too: an unquoted `storage: memory:` is a YAML
    // syntax error, so the colon is easy to drop.
    if matches!(url.as_str(), "memory" | "memory:" | "memory://") {
        return StorageSpec::Memory;
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            errors.push(PATH, format!("{url:?} names no file; write sqlite://data/verdict.db or sqlite:///var/lib/verdict/verdict.db"));
        } else if path.contains(['?', '#']) {
            errors.push(
                PATH,
                format!("{url:?}: options (?…) are not supported; verdict sets them itself"),
            );
        } else if path.ends_with('/') {
            errors.push(
                PATH,
                format!("{url:?} names a directory, not a database file"),
            );
        }
        return StorageSpec::Sqlite {
            path: std::path::PathBuf::from(path),
            url,
        };
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        errors.push(
            PATH,
            format!("{url:?}: PostgreSQL storage is not available in this build; use sqlite://PATH or memory:"),
        );
    } else {
        errors.push(
            PATH,
            format!("unsupported storage {url:?}: expected sqlite://PATH (sqlite:///abs/path for an absolute path) or memory:"),
        );
    }
    StorageSpec::Memory
}

// ------------------------------------------------------------------ service

/// The `service` section with its defaults; `None` when it has problems.
fn service(section: Option<Value>, errors: &mut Errors) -> Option<ServiceSpec> {
    let mark = errors.len();
    let keys = section.as_ref().map(table_keys).unwrap_or_default();
    let spec = service_spec(section, errors);
    errors.file_order_since(mark, "service", &keys);
    spec
}

fn service_spec(section: Option<Value>, errors: &mut Errors) -> Option<ServiceSpec> {
    let raw = match section {
        None => RawService::default(),
        Some(value) => deserialize::<RawService>(value, "service", errors)?,
    };
    let before = errors.len();
    let MapOnly(api) = take(raw.api, "service.api", errors).unwrap_or_default();
    let api_endpoint = endpoint(
        api.endpoint,
        DEFAULT_API_ENDPOINT,
        "service.api.endpoint",
        errors,
    );
    let api_token = token(api.token, "service.api.token", errors);
    let storage = storage(take(raw.storage, "service.storage", errors), errors);
    let max_inflight_bytes = byte_size(
        raw.max_inflight_bytes,
        DEFAULT_MAX_INFLIGHT_BYTES,
        "service.max_inflight_bytes",
        errors,
    );
    let checkpoint_interval = positive_duration(
        raw.checkpoint_interval,
        DEFAULT_CHECKPOINT_INTERVAL,
        "service.checkpoint_interval",
        errors,
    );
    let metric_expiry = take(raw.metric_expiry, "service.metric_expiry", errors)
        .map_or(DEFAULT_METRIC_EXPIRY, |d| d.0);
    (errors.len() == before).then_some(ServiceSpec {
        api_endpoint,
        api_token,
        storage,
        max_inflight_bytes,
        checkpoint_interval,
        metric_expiry,
    })
}

// ---------------------------------------------------------------- pipelines

/// What the pipelines section resolved to.
struct Wiring {
    pipelines: Vec<PipelineSpec>,
    used_receivers: HashSet<String>,
    used_exporters: HashSet<String>,
}

fn pipelines(
    section: Option<Value>,
    receivers: &Defined<ReceiverSpec>,
    processors: &Defined<Processor>,
    exporters: &Defined<ExporterSpec>,
    errors: &mut Errors,
) -> Wiring {
    let mut wiring = Wiring {
        pipelines: Vec::new(),
        used_receivers: HashSet::new(),
        used_exporters: HashSet::new(),
    };
    let entries = section_entries("pipelines", section, errors);
    if entries.is_empty() {
        errors.push("pipelines", "at least one pipeline is required");
        return wiring;
    }
    // Contract id → the pipeline that uses it; contract name → its id.
    let mut contract_owner: HashMap<String, String> = HashMap::new();
    let mut contract_names: HashMap<String, String> = HashMap::new();

    for (name, value) in entries {
        let path = join("pipelines", &name);
        let (mark, keys) = (errors.len(), table_keys(&value));
        if name.trim().is_empty() {
            errors.push("pipelines", "pipeline names must not be empty");
            continue;
        }
        let Some(raw) = deserialize::<RawPipeline>(value, &path, errors) else {
            continue;
        };
        let before = errors.len();

        let receivers_path = join(&path, "receivers");
        let receiver_ids = references(
            raw.receivers,
            "receiver",
            receivers,
            &receivers_path,
            errors,
        );
        if receiver_ids.is_empty() && errors.len() == before {
            errors.push(&receivers_path, "must list at least one receiver");
        }

        let processors_path = join(&path, "processors");
        // Whether a contract is listed at all, defined or not (an undefined
        // one is reported as such, not also as "no contract").
        let lists_contract = match &raw.processors {
            Some(Checked(Ok(StringList(ids)))) => ids.iter().any(|id| {
                id.as_deref()
                    .is_ok_and(|id| parse_id(id).is_ok_and(|cid| cid.kind == "contract"))
            }),
            // Absent: reported below; unreadable: reported by `references`.
            Some(Checked(Err(_))) => true,
            None => false,
        };
        let processor_ids = references(
            raw.processors,
            "processor",
            processors,
            &processors_path,
            errors,
        );
        let of_kind = |kind: &str| -> Vec<&String> {
            processor_ids
                .iter()
                .filter(|id| parse_id(id).is_ok_and(|cid| cid.kind == kind))
                .collect()
        };
        let window_ids = of_kind("window");
        let contract_ids = of_kind("contract");
        if window_ids.len() > 1 {
            let listed: Vec<String> = window_ids.iter().map(|id| format!("{id:?}")).collect();
            errors.push(
                &processors_path,
                format!(
                    "lists more than one window processor ({})",
                    listed.join(", ")
                ),
            );
        }
        if !lists_contract {
            errors.push(&processors_path, "must list at least one contract");
        }
        for id in &contract_ids {
            match contract_owner.get(id.as_str()) {
                Some(owner) => errors.push(
                    &processors_path,
                    format!("contract {id:?} is already used by pipeline {owner:?}"),
                ),
                None => {
                    contract_owner.insert(id.to_string(), name.clone());
                }
            }
            let contract_name = parse_id(id)
                .ok()
                .and_then(|cid| cid.name)
                .unwrap_or("contract")
                .to_string();
            match contract_names.get(&contract_name) {
                Some(other) if other != *id => errors.push(
                    &processors_path,
                    format!("contracts {other:?} and {id:?} have the same name {contract_name:?}"),
                ),
                Some(_) => {}
                None => {
                    contract_names.insert(contract_name, id.to_string());
                }
            }
        }

        let exporter_ids = references(
            raw.exporters,
            "exporter",
            exporters,
            &join(&path, "exporters"),
            errors,
        );

        wiring.used_receivers.extend(receiver_ids.iter().cloned());
        wiring.used_exporters.extend(exporter_ids.iter().cloned());
        errors.file_order_since(mark, &path, &keys);
        if errors.len() != before {
            continue;
        }
        // Every referenced component exists; `None` ones were reported
        // already, so a pipeline using one is simply not built.
        let window = match window_ids.first() {
            None => Some(default_window()),
            Some(id) => match processors.get(id.as_str()) {
                Some(Some(Processor::Window(spec))) => Some(spec.clone()),
                _ => None,
            },
        };
        let contracts: Option<Vec<ContractSpec>> = contract_ids
            .iter()
            .map(|id| match processors.get(id.as_str()) {
                Some(Some(Processor::Contract(spec))) => Some(ContractSpec::clone(spec)),
                _ => None,
            })
            .collect();
        if let (Some(window), Some(contracts)) = (window, contracts) {
            wiring.pipelines.push(PipelineSpec {
                name,
                receivers: receiver_ids,
                window,
                contracts,
                exporters: exporter_ids,
            });
        }
    }
    wiring
}

/// The ids a pipeline lists for one kind of component, each checked to be
/// defined and listed once. Returns the defined ids, in the listed order.
fn references<T>(
    raw: Field<StringList>,
    what: &str,
    defined: &Defined<T>,
    path: &str,
    errors: &mut Errors,
) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let listed = list_items(raw, path, errors).unwrap_or_default();
    for (i, id) in listed.into_iter().enumerate() {
        if id.is_empty() {
            errors.push(format!("{path}[{i}]"), "must not be empty");
        } else if ids.contains(&id) {
            errors.push(path, format!("lists {what} {id:?} more than once"));
        } else if !defined.contains_key(&id) {
            errors.push(
                path,
                format!("references {what} {id:?} which is not defined"),
            );
        } else {
            ids.push(id);
        }
    }
    ids
}

// ------------------------------------------------------------ cross-checks

/// A listen address as compared for conflicts.
struct Listen {
    host: String,
    port: u16,
    wildcard: bool,
}

impl Listen {
    fn parse(endpoint: &str) -> Option<Self> {
        if let Ok(addr) = endpoint.parse::<SocketAddr>() {
            return Some(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
                wildcard: addr.ip().is_unspecified(),
            });
        }
        let (host, port) = endpoint.rsplit_once(':')?;
        let host = host.to_ascii_lowercase();
        Some(Self {
            host: if host == "localhost" {
                "127.0.0.1".to_string()
            } else {
                host
            },
            port: port.parse().ok()?,
            wildcard: false,
        })
    }

    /// Whether binding both would fail: same port (not 0 = any) and the same
    /// host, or either on every interface.
    fn conflicts(&self, other: &Self) -> bool {
        self.port != 0
            && self.port == other.port
            && (self.host == other.host || self.wildcard || other.wildcard)
    }
}

/// Two listeners (receivers in use, exporters in use, the API) on one address.
fn check_listeners(
    receivers: &[ReceiverSpec],
    exporters: &[ExporterSpec],
    service: Option<&ServiceSpec>,
    errors: &mut Errors,
) {
    let mut listeners: Vec<(String, &str)> = Vec::new();
    for receiver in receivers {
        let ReceiverKind::Otlp(otlp) = &receiver.kind else {
            continue;
        };
        let base = format!("receivers.{}.protocols", receiver.id);
        if let Some(endpoint) = &otlp.grpc_endpoint {
            listeners.push((format!("{base}.grpc.endpoint"), endpoint));
        }
        if let Some(endpoint) = &otlp.http_endpoint {
            listeners.push((format!("{base}.http.endpoint"), endpoint));
        }
    }
    for exporter in exporters {
        if let ExporterKind::Prometheus { endpoint } = &exporter.kind {
            listeners.push((format!("exporters.{}.endpoint", exporter.id), endpoint));
        }
    }
    if let Some(service) = service {
        listeners.push(("service.api.endpoint".to_string(), &service.api_endpoint));
    }
    let parsed: Vec<Option<Listen>> = listeners.iter().map(|(_, e)| Listen::parse(e)).collect();
    for (i, (path, endpoint)) in listeners.iter().enumerate() {
        let Some(mine) = &parsed[i] else { continue };
        let earlier = listeners[..i]
            .iter()
            .zip(&parsed[..i])
            .find(|(_, theirs)| theirs.as_ref().is_some_and(|t| mine.conflicts(t)));
        if let Some(((other_path, other_endpoint), _)) = earlier {
            let also = if endpoint == other_endpoint {
                String::new()
            } else {
                format!(" ({other_endpoint})")
            };
            errors.push(
                path.as_str(),
                format!("{endpoint} is already used by {other_path}{also}"),
            );
        }
    }
}

/// A request larger than the whole in-flight budget could never be accepted:
/// clients would retry it forever.
fn check_request_budget(receivers: &[ReceiverSpec], service: &ServiceSpec, errors: &mut Errors) {
    for receiver in receivers {
        let ReceiverKind::Otlp(otlp) = &receiver.kind else {
            continue;
        };
        if otlp.max_request_bytes > service.max_inflight_bytes {
            errors.push(
                format!("receivers.{}.max_request_bytes", receiver.id),
                format!(
                    "must not exceed service.max_inflight_bytes ({}), got {}: such a request could never be accepted",
                    human_bytes(service.max_inflight_bytes),
                    human_bytes(otlp.max_request_bytes)
                ),
            );
        }
    }
}

/// A probe whose resource no contract of its pipeline selects, or that lacks
/// an attribute a selecting contract names its runs by, would send traffic
/// that counts for nothing.
fn check_probe_targets(
    receivers: &[ReceiverSpec],
    pipelines: &[PipelineSpec],
    errors: &mut Errors,
) {
    for pipeline in pipelines {
        let contracts: Vec<CompiledContract> = pipeline
            .contracts
            .iter()
            .cloned()
            .map(CompiledContract::new)
            .collect();
        for receiver in receivers
            .iter()
            .filter(|r| pipeline.receivers.contains(&r.id))
        {
            let ReceiverKind::Probe(probe) = &receiver.kind else {
                continue;
            };
            let path = format!("receivers.{}.resource", receiver.id);
            let selections = probe_receiver::select(&probe.resource, &contracts);
            for (contract, selection) in &selections {
                if let Selection::MissingAttribute(key) = selection {
                    errors.push(
                        &path,
                        format!(
                            "lacks {key:?}, which contract {:?} of pipeline {:?} names its runs by (subject_by)",
                            contracts[*contract as usize].spec.name, pipeline.name
                        ),
                    );
                }
            }
            if selections.is_empty() {
                errors.push(
                    &path,
                    format!(
                        "matches no contract of pipeline {:?}: its requests would count for nothing",
                        pipeline.name
                    ),
                );
            }
        }
    }
}

/// `256MiB`, `1GiB`, `1500B`: the largest binary unit that divides exactly.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    UNITS
        .iter()
        .find(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        .map_or_else(
            || format!("{bytes}B"),
            |(unit, size)| format!("{}{unit}", bytes / size),
        )
}

// ------------------------------------------------------------- value checks

/// A listen address: `default` when absent or empty, else checked to be
/// `host:port` (an IP address, `[v6]`, or a host name; port 0–65535).
fn endpoint(raw: Field<String>, default: &str, path: &str, errors: &mut Errors) -> String {
    let endpoint = match take(raw, path, errors) {
        Some(e) if !e.trim().is_empty() => e,
        _ => return default.to_string(),
    };
    if let Err(reason) = check_endpoint(&endpoint) {
        errors.push(path, format!("invalid endpoint {endpoint:?}: {reason}"));
    }
    endpoint
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected host:port, e.g. 0.0.0.0:4317";
    if endpoint.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(EXPECTED.to_string());
    };
    if port.parse::<u16>().is_err() {
        return Err(
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                "the port must be between 0 and 65535".to_string()
            } else {
                EXPECTED.to_string()
            },
        );
    }
    if host.is_empty() {
        return Err("the host is missing (0.0.0.0 listens on every interface)".to_string());
    }
    if host.starts_with('[') || host.contains(':') {
        return Err("invalid IPv6 address (written [addr]:port)".to_string());
    }
    if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
        return Err(format!("{host:?} is not an IP address or host name"));
    }
    Ok(())
}

/// RFC 1123 host name: dot-separated labels of letters, digits and `-`, not
/// all numeric (that would be a malformed IPv4 address).
fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    host.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !labels
            .iter()
            .all(|label| label.bytes().all(|b| b.is_ascii_digit()))
}

/// A bearer token: `None` when absent or empty; else it must be sendable in
/// an `Authorization` header.
fn token(raw: Field<String>, path: &str, errors: &mut Errors) -> Option<String> {
    let token = take(raw, path, errors).filter(|t| !t.is_empty())?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        errors.push(
            path,
            "must contain only printable ASCII characters without spaces",
        );
    }
    Some(token)
}

/// An integer field: `default` when absent; reported when outside
/// `[min, max]`.
fn int_in(
    raw: Field<Int>,
    default: i64,
    min: i64,
    max: i64,
    path: &str,
    errors: &mut Errors,
) -> i64 {
    let Some(Int(v)) = take(raw, path, errors) else {
        return default;
    };
    if v < min {
        errors.push(path, format!("must be at least {min}, got {v}"));
    } else if v > max {
        errors.push(path, format!("must be at most {max}, got {v}"));
    }
    v
}

/// `Some(v)` for a finite number; reports NaN and infinities.
fn finite(raw: Field<Num>, path: &str, errors: &mut Errors) -> Option<f64> {
    let Num(v) = take(raw, path, errors)?;
    if v.is_finite() {
        Some(v)
    } else {
        errors.push(path, format!("must be a finite number, got {v}"));
        None
    }
}

/// A threshold that must be > 0 (latencies).
fn positive(raw: Field<Num>, path: &str, errors: &mut Errors) -> Option<f64> {
    let v = finite(raw, path, errors)?;
    if v > 0.0 {
        Some(v)
    } else {
        errors.push(path, format!("must be greater than 0, got {v}"));
        None
    }
}

/// A threshold that must be ≥ 0 (increases in percent).
fn non_negative(raw: Field<Num>, path: &str, errors: &mut Errors) -> Option<f64> {
    let v = finite(raw, path, errors)?;
    if v >= 0.0 {
        Some(v)
    } else {
        errors.push(path, format!("must be at least 0, got {v}"));
        None
    }
}

/// A percentage in [0, 100].
fn percent(raw: Field<Num>, path: &str, errors: &mut Errors) -> Option<f64> {
    let v = finite(raw, path, errors)?;
    if (0.0..=100.0).contains(&v) {
        Some(v)
    } else {
        errors.push(path, format!("must be between 0 and 100, got {v}"));
        None
    }
}

/// A byte size that must be > 0; `default` when absent.
fn byte_size(raw: Field<ByteSize>, default: u64, path: &str, errors: &mut Errors) -> u64 {
    let Some(ByteSize(v)) = take(raw, path, errors) else {
        return default;
    };
    if v == 0 {
        errors.push(path, "must be greater than 0");
    }
    v
}

/// A duration that must be > 0; `default` when absent.
fn positive_duration(
    raw: Field<HumanDuration>,
    default: Duration,
    path: &str,
    errors: &mut Errors,
) -> Duration {
    optional_positive_duration(raw, path, errors).unwrap_or(default)
}

/// A duration that must be > 0; `None` when absent.
fn optional_positive_duration(
    raw: Field<HumanDuration>,
    path: &str,
    errors: &mut Errors,
) -> Option<Duration> {
    let HumanDuration(d) = take(raw, path, errors)?;
    if d.is_zero() {
        errors.push(path, "must be greater than 0");
    }
    Some(d)
}
