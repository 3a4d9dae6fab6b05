//! `verdict validate --print-config`: the effective configuration — the
//! file after `${env:…}` substitution, `VERDICT__…` overrides and every
//! default — written back as a pipeline file that `verdict validate`
//! accepts again and that loads to the same [`ValidatedConfig`] (with its
//! secrets replaced, see [`redacted`]).
//!
//! Why from the validated configuration and not the parsed tree: the
//! question a person asks is "what is verdict running with?", and only
//! the validated form has the defaults, the overrides and the resolved
//! values (the shard count of `shards: 0`) in it.
//!
//! Secrets never leave the process: bearer and API tokens, webhook secrets
//! and tokens, Unleash tokens, probe headers that carry credentials, the
//! passwords of URLs and the path of a Slack webhook URL (which is its
//! secret) are written as [`REDACTED`].

use std::fmt::Write as _;
use std::time::Duration;

use super::defaults::SPAN_KINDS;
use super::probe_plan::Amount;
use super::validated::*;

/// What a secret is written as.
pub const REDACTED: &str = "<redacted>";

/// What a secret inside a URL (a password, a Slack webhook's path) is
/// written as: URL-safe, so the URL still parses.
const REDACTED_IN_URL: &str = "redacted";

/// `config` with every secret replaced by [`REDACTED`]: what
/// [`to_yaml`] prints, and what loading its output gives back.
pub fn redacted(config: &ValidatedConfig) -> ValidatedConfig {
    let mut config = config.clone();
    let hide = |s: &mut Option<String>| {
        if s.is_some() {
            *s = Some(REDACTED.to_string());
        }
    };
    for receiver in &mut config.receivers {
        match &mut receiver.kind {
            ReceiverKind::Otlp(otlp) => hide(&mut otlp.bearer_token),
            ReceiverKind::Probe(probe) => {
                redact_url(&mut probe.plan.url);
                let names: Vec<_> = probe
                    .plan
                    .headers
                    .keys()
                    .filter(|name| is_secret_header(name.as_str()))
                    .cloned()
                    .collect();
                for name in names {
                    probe
                        .plan
                        .headers
                        .insert(name, reqwest::header::HeaderValue::from_static(REDACTED));
                }
            }
        }
    }
    for exporter in &mut config.exporters {
        match &mut exporter.kind {
            ExporterKind::Webhook(webhook) => {
                hide(&mut webhook.secret);
                hide(&mut webhook.token);
                webhook.url = redact_url_text(&webhook.url, webhook.format == WebhookFormat::Slack);
            }
            ExporterKind::Unleash(unleash) => {
                unleash.token = REDACTED.to_string();
                unleash.url = redact_url_text(&unleash.url, false);
            }
            ExporterKind::Prometheus { .. } | ExporterKind::Log => {}
        }
    }
    hide(&mut config.service.api_token);
    if let Some(url) = &mut config.service.public_url {
        *url = redact_url_text(url, false);
    }
    if let StorageSpec::Postgres(pg) = &mut config.service.storage {
        pg.url = redact_url_text(&pg.url, false);
    }
    config
}

/// Headers whose values are credentials: `Authorization`, cookies, and
/// any whose name speaks of a token, key, secret or password.
fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || name == "proxy-authorization"
        || name == "cookie"
        || ["token", "key", "secret", "password", "auth"]
            .iter()
            .any(|word| name.contains(word))
}

/// A URL with its credentials (see [`redact_url`]) and, for a URL that is
/// itself the secret, its path and query replaced.
fn redact_url_text(text: &str, whole_path: bool) -> String {
    let Ok(mut url) = reqwest::Url::parse(text) else {
        return text.to_string();
    };
    let original = url.clone();
    // A Slack incoming-webhook URL carries its secret in the path, whatever
    // `format` the exporter sends in.
    let whole_path = whole_path || url.host_str() == Some("hooks.slack.com");
    let secret_path = whole_path && (url.path() != "/" || url.query().is_some());
    redact_url(&mut url);
    if url == original && !secret_path {
        // Nothing to hide: kept exactly as validated.
        return text.to_string();
    }
    if secret_path {
        url.set_path(REDACTED_IN_URL);
        url.set_query(None);
    }
    // The parser writes an empty path as `/`; keep the URL as it was written.
    let written = url.to_string();
    match written.strip_suffix('/') {
        Some(bare) if !text.ends_with('/') && url.path() == "/" => bare.to_string(),
        _ => written,
    }
}

/// Hides the credentials a URL carries: its password; its user name when
/// it has no password (`https://TOKEN@host/`, a token in user position);
/// and the value of every query parameter whose name speaks of a secret
/// (`?token=`, `?api_key=`, `?password=`, `?sig=`).
fn redact_url(url: &mut reqwest::Url) {
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED_IN_URL));
    } else if !url.username().is_empty() {
        let _ = url.set_username(REDACTED_IN_URL);
    }
    if url.query().is_none() {
        return;
    }
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if !pairs.iter().any(|(name, _)| is_secret_param(name)) {
        return;
    }
    let mut query = url.query_pairs_mut();
    query.clear();
    for (name, value) in &pairs {
        match is_secret_param(name) {
            true => query.append_pair(name, REDACTED_IN_URL),
            false => query.append_pair(name, value),
        };
    }
}

/// Query parameters whose values are credentials.
pub(super) fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    is_secret_header(&name)
        || ["pass", "pwd", "sig", "credential", "session"]
            .iter()
            .any(|word| name.contains(word))
}

/// A YAML value: maps keep their order, so the output reads like the
/// shipped pipeline files (sections in their usual order, components in
/// file order).
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Map(Vec<(String, Node)>),
    /// A flow list of scalars (`[a, b]`).
    List(Vec<Node>),
    Str(String),
    /// A number or boolean, written as it is.
    Plain(String),
}

impl Node {
    fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }
    fn num(n: impl std::fmt::Display) -> Node {
        Node::Plain(n.to_string())
    }
    fn duration(d: Duration) -> Node {
        // Whole hours as hours (`48h`, not humantime's `2days`).
        match d.as_secs() {
            s if s >= 3600 && s % 3600 == 0 && d.subsec_nanos() == 0 => {
                Node::Str(format!("{}h", s / 3600))
            }
            _ => Node::Str(humantime::format_duration(d).to_string()),
        }
    }
    fn bytes(n: u64) -> Node {
        const MIB: u64 = 1024 * 1024;
        match n {
            0 => Node::num(0),
            n if n % MIB == 0 => Node::str(format!("{}MiB", n / MIB)),
            n if n % 1024 == 0 => Node::str(format!("{}KiB", n / 1024)),
            n => Node::num(n),
        }
    }
    fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Node {
        Node::List(items.into_iter().map(Node::str).collect())
    }
}

/// A map under construction.
#[derive(Default)]
struct MapBuilder(Vec<(String, Node)>);

impl MapBuilder {
    fn set(mut self, key: &str, value: Node) -> Self {
        self.0.push((key.to_string(), value));
        self
    }
    fn opt(self, key: &str, value: Option<Node>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }
    fn node(self) -> Node {
        Node::Map(self.0)
    }
}

/// The effective configuration as a pipeline file, secrets redacted.
/// `header` lines are written first as comments.
pub fn to_yaml(config: &ValidatedConfig, header: &[String]) -> String {
    let config = redacted(config);
    let mut out = String::new();
    for line in header {
        let _ = writeln!(out, "# {line}");
    }
    if let Node::Map(sections) = tree(&config) {
        for (key, value) in sections {
            write_entry(&mut out, 0, &key, &value);
        }
    }
    out
}

fn tree(config: &ValidatedConfig) -> Node {
    let windows = window_ids(&config.pipelines);
    let mut processors = MapBuilder::default();
    let mut written: Vec<&str> = Vec::new();
    for (pipeline, window_id) in config.pipelines.iter().zip(&windows) {
        if !written.contains(&window_id.as_str()) {
            written.push(window_id);
            processors = processors.set(window_id, window(&pipeline.window));
        }
        for contract_spec in &pipeline.contracts {
            processors = processors.set(&contract_id(contract_spec), contract(contract_spec));
        }
    }
    let mut pipelines = MapBuilder::default();
    for (pipeline, window_id) in config.pipelines.iter().zip(&windows) {
        let mut ids = vec![window_id.as_str()];
        let contract_ids: Vec<String> = pipeline.contracts.iter().map(contract_id).collect();
        ids.extend(contract_ids.iter().map(String::as_str));
        pipelines = pipelines.set(
            &pipeline.name,
            MapBuilder::default()
                .set(
                    "receivers",
                    Node::strings(pipeline.receivers.iter().map(String::as_str)),
                )
                .set("processors", Node::strings(ids))
                .set(
                    "exporters",
                    Node::strings(pipeline.exporters.iter().map(String::as_str)),
                )
                .node(),
        );
    }
    let mut receivers = MapBuilder::default();
    for r in &config.receivers {
        receivers = receivers.set(&r.id, receiver(&r.kind));
    }
    let mut exporters = MapBuilder::default();
    for e in &config.exporters {
        exporters = exporters.set(&e.id, exporter(&e.kind));
    }
    MapBuilder::default()
        .set("receivers", receivers.node())
        .set("processors", processors.node())
        .set("exporters", exporters.node())
        .set("pipelines", pipelines.node())
        .set("service", service(&config.service))
        .node()
}

/// The window processor id of each pipeline: `window` when every pipeline
/// has the same settings, else one id per distinct setting (`window`,
/// `window/2`, …), shared by the pipelines that have it. (The validated
/// configuration keeps a pipeline's window settings, not the id the file
/// gave them; the id means nothing at run time.)
fn window_ids(pipelines: &[PipelineSpec]) -> Vec<String> {
    let mut distinct: Vec<&WindowSpec> = Vec::new();
    pipelines
        .iter()
        .map(|p| {
            let index = match distinct.iter().position(|w| **w == p.window) {
                Some(i) => i,
                None => {
                    distinct.push(&p.window);
                    distinct.len() - 1
                }
            };
            match index {
                0 => "window".to_string(),
                i => format!("window/{}", i + 1),
            }
        })
        .collect()
}

pub(super) fn contract_id(spec: &ContractSpec) -> String {
    format!("contract/{}", spec.name)
}

fn listener_tls(tls: &ListenerTls) -> Node {
    MapBuilder::default()
        .set("cert_file", Node::str(tls.cert_file.display().to_string()))
        .set("key_file", Node::str(tls.key_file.display().to_string()))
        .opt(
            "client_ca_file",
            tls.client_ca_file
                .as_ref()
                .map(|p| Node::str(p.display().to_string())),
        )
        .set("min_version", tls_version(tls.min_version))
        .set("reload_interval", Node::duration(tls.reload_interval))
        .node()
}

fn client_tls(tls: &ClientTls) -> Option<Node> {
    if *tls == ClientTls::default() {
        return None;
    }
    let mut map = MapBuilder::default().opt(
        "ca_file",
        tls.ca_file
            .as_ref()
            .map(|p| Node::str(p.display().to_string())),
    );
    if let Some((cert, key)) = &tls.identity {
        map = map
            .set("cert_file", Node::str(cert.display().to_string()))
            .set("key_file", Node::str(key.display().to_string()));
    }
    Some(map.set("min_version", tls_version(tls.min_version)).node())
}

fn tls_version(v: TlsVersion) -> Node {
    Node::str(match v {
        TlsVersion::V1_2 => "1.2",
        TlsVersion::V1_3 => "1.3",
    })
}

fn listener(endpoint: &str, tls: Option<&ListenerTls>) -> Node {
    listener_entries(endpoint, tls).node()
}

fn listener_entries(endpoint: &str, tls: Option<&ListenerTls>) -> MapBuilder {
    MapBuilder::default()
        .set("endpoint", Node::str(endpoint))
        .opt("tls", tls.map(listener_tls))
}

fn cors(c: &CorsSpec) -> Node {
    MapBuilder::default()
        .set(
            "allowed_origins",
            Node::strings(c.allowed_origins.iter().map(String::as_str)),
        )
        .opt(
            "allowed_headers",
            (!c.allowed_headers.is_empty())
                .then(|| Node::strings(c.allowed_headers.iter().map(String::as_str))),
        )
        .opt("max_age", c.max_age.map(|d| Node::num(d.as_secs())))
        .node()
}

fn receiver(kind: &ReceiverKind) -> Node {
    match kind {
        ReceiverKind::Otlp(otlp) => {
            let mut protocols = MapBuilder::default();
            if let Some(endpoint) = &otlp.grpc_endpoint {
                protocols = protocols.set("grpc", listener(endpoint, otlp.grpc_tls.as_ref()));
            }
            if let Some(endpoint) = &otlp.http_endpoint {
                let http = listener_entries(endpoint, otlp.http_tls.as_ref())
                    .opt("cors", otlp.http_cors.as_ref().map(cors));
                protocols = protocols.set("http", http.node());
            }
            MapBuilder::default()
                .set("protocols", protocols.node())
                .set("max_request_bytes", Node::bytes(otlp.max_request_bytes))
                .opt(
                    "auth",
                    otlp.bearer_token.as_ref().map(|t| {
                        MapBuilder::default()
                            .set("bearer_token", Node::str(t.as_str()))
                            .node()
                    }),
                )
                .node()
        }
        ReceiverKind::Probe(probe) => {
            let plan = &probe.plan;
            let headers: Vec<(String, Node)> = plan
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        Node::str(String::from_utf8_lossy(value.as_bytes())),
                    )
                })
                .collect();
            let (requests, duration) = match plan.amount {
                Amount::Requests(n) => (Some(Node::num(n)), None),
                Amount::Duration(d) => (None, Some(Node::duration(d))),
            };
            MapBuilder::default()
                .set("url", Node::str(plan.url.as_str()))
                .opt("tls", client_tls(&plan.tls))
                .set("method", Node::str(plan.method.as_str()))
                .opt(
                    "headers",
                    (!headers.is_empty()).then_some(Node::Map(headers)),
                )
                .opt(
                    "body",
                    plan.body
                        .as_ref()
                        .map(|b| Node::str(String::from_utf8_lossy(b))),
                )
                .opt("requests", requests)
                .opt("duration", duration)
                .set("concurrency", Node::num(plan.concurrency))
                .set("timeout", Node::duration(plan.timeout))
                .opt("rate", plan.rate.map(Node::num))
                .opt("interval", probe.interval.map(Node::duration))
                .set(
                    "conversion_header",
                    Node::str(plan.conversion_header.as_str()),
                )
                .set("allow_4xx", Node::num(plan.allow_4xx))
                .set(
                    "resource",
                    Node::Map(
                        probe
                            .resource
                            .iter()
                            .map(|(k, v)| (k.clone(), Node::str(v.as_str())))
                            .collect(),
                    ),
                )
                .node()
        }
    }
}

fn window(w: &WindowSpec) -> Node {
    MapBuilder::default()
        .set("size", Node::duration(w.size))
        .set("allowed_lateness", Node::duration(w.allowed_lateness))
        .set("max_clock_skew", Node::duration(w.max_clock_skew))
        .set(
            "shards",
            Node::num(if w.shards_per_core { 0 } else { w.shards }),
        )
        .set("queue_size", Node::num(w.queue_size))
        .set("max_series", Node::num(w.max_series))
        .set("max_streams", Node::num(w.max_streams))
        .set("stream_expiry", Node::duration(w.stream_expiry))
        .node()
}

fn matches(list: &[super::AttributeMatch]) -> Node {
    Node::Map(
        list.iter()
            .map(|m| (m.key.clone(), Node::str(m.pattern.as_str())))
            .collect(),
    )
}

fn contract(c: &ContractSpec) -> Node {
    let t = &c.thresholds;
    let span_kinds: Vec<&str> = c
        .span_kinds
        .iter()
        .filter_map(|k| {
            SPAN_KINDS
                .iter()
                .find(|(_, n)| n == k)
                .map(|(name, _)| *name)
        })
        .collect();
    let mut map = MapBuilder::default()
        .set("version", Node::num(c.version))
        .set("match", matches(&c.matches))
        .set(
            "subject_by",
            Node::strings(c.subject_by.iter().map(String::as_str)),
        )
        .set(
            "source",
            Node::str(match c.source {
                Source::Spans => "spans",
                Source::Metrics => "metrics",
            }),
        )
        .set("span_kinds", Node::strings(span_kinds))
        .set(
            "conversion_attribute",
            Node::str(c.conversion_attribute.as_str()),
        )
        .set("latency_metric", Node::str(c.latency_metric.as_str()))
        .set(
            "conversions_metric",
            Node::str(c.conversions_metric.as_str()),
        )
        .opt("max_p50_latency_ms", t.max_p50_latency_ms.map(Node::num))
        .opt("max_p95_latency_ms", t.max_p95_latency_ms.map(Node::num))
        .opt("max_p99_latency_ms", t.max_p99_latency_ms.map(Node::num))
        .opt(
            "max_error_rate_percent",
            t.max_error_rate_percent.map(Node::num),
        )
        .opt(
            "min_conversion_rate_percent",
            t.min_conversion_rate_percent.map(Node::num),
        )
        .set("min_samples", Node::num(c.min_samples))
        .set(
            "decision",
            Node::str(match c.decision {
                Decision::Sequential => "sequential",
                Decision::Windows => "windows",
            }),
        );
    // Validation refuses the streak settings next to sequential decisions
    // (they would be silently ignored), so they are written only where
    // they apply.
    if c.decision == Decision::Windows {
        map = map
            .set("min_window_samples", Node::num(c.min_window_samples))
            .set("pass_windows", Node::num(c.pass_windows))
            .set("fail_windows", Node::num(c.fail_windows));
    }
    map.set("alpha", Node::num(c.alpha))
        .opt("max_duration", c.max_duration.map(Node::duration))
        .set(
            "on_timeout",
            Node::str(match c.on_timeout {
                OnTimeout::Rollback => "rollback",
                OnTimeout::Promote => "promote",
            }),
        )
        .set("run_idle_timeout", Node::duration(c.run_idle_timeout))
        .set(
            "on_idle",
            Node::str(match c.on_idle {
                OnIdle::Retire => "retire",
                OnIdle::Timeout => "timeout",
            }),
        )
        .opt(
            "baseline",
            c.baseline.as_ref().map(|b| {
                MapBuilder::default()
                    .set("match", matches(&b.matches))
                    .opt(
                        "max_p95_latency_increase_percent",
                        b.max_p95_latency_increase_percent.map(Node::num),
                    )
                    .opt(
                        "max_error_rate_increase_points",
                        b.max_error_rate_increase_points.map(Node::num),
                    )
                    .node()
            }),
        )
        .set("dry_run", Node::num(c.dry_run))
        .node()
}

fn exporter(kind: &ExporterKind) -> Node {
    match kind {
        ExporterKind::Prometheus { endpoint, tls } => listener(endpoint, tls.as_ref()),
        ExporterKind::Log => Node::Map(Vec::new()),
        ExporterKind::Webhook(w) => MapBuilder::default()
            .set("url", Node::str(w.url.as_str()))
            .opt("tls", client_tls(&w.tls))
            .set("on", Node::strings(w.on.iter().map(|s| s.as_str())))
            .opt("secret", w.secret.as_deref().map(Node::str))
            .set("timeout", Node::duration(w.timeout))
            .set(
                "retry",
                MapBuilder::default()
                    .set("initial_interval", Node::duration(w.retry.initial_interval))
                    .set("max_interval", Node::duration(w.retry.max_interval))
                    .set("max_elapsed", Node::duration(w.retry.max_elapsed))
                    .node(),
            )
            .set("format", Node::str(w.format.as_str()))
            .opt("token", w.token.as_deref().map(Node::str))
            .node(),
        ExporterKind::Unleash(u) => MapBuilder::default()
            .set("url", Node::str(u.url.as_str()))
            .opt("tls", client_tls(&u.tls))
            .set("token", Node::str(u.token.as_str()))
            .set("project", Node::str(u.project.as_str()))
            .set("environment", Node::str(u.environment.as_str()))
            .set("flag", Node::str(u.flag.as_str()))
            .opt("strategy_id", u.strategy_id.as_deref().map(Node::str))
            .set("steps", Node::List(u.steps.iter().map(Node::num).collect()))
            .set("step_windows", Node::num(u.step_windows))
            .set("refresh_interval", Node::duration(u.refresh_interval))
            .set("on_rollback", Node::str(u.on_rollback.as_str()))
            .set("timeout", Node::duration(u.timeout))
            .set(
                "retry",
                MapBuilder::default()
                    .set("initial_interval", Node::duration(u.retry.initial))
                    .set("max_interval", Node::duration(u.retry.max))
                    .node(),
            )
            .node(),
    }
}

fn service(s: &ServiceSpec) -> Node {
    let api = MapBuilder::default()
        .set("endpoint", Node::str(s.api_endpoint.as_str()))
        .opt("token", s.api_token.as_deref().map(Node::str))
        .opt("public_url", s.public_url.as_deref().map(Node::str))
        .opt("tls", s.api_tls.as_ref().map(listener_tls))
        .node();
    // The URL as configured (its password already redacted): the
    // `Display` of a storage hides the password in a way that does not
    // read back as the same URL.
    let storage = match &s.storage {
        StorageSpec::Postgres(pg) => pg.url.clone(),
        other => other.to_string(),
    };
    MapBuilder::default()
        .set("api", api)
        .set("storage", Node::str(storage))
        .opt("postgres", postgres(&s.storage))
        .set("max_inflight_bytes", Node::bytes(s.max_inflight_bytes))
        .set("checkpoint_interval", Node::duration(s.checkpoint_interval))
        .set("metric_expiry", Node::duration(s.metric_expiry))
        .node()
}

/// `service.postgres`, for `postgres://` storage only (validation refuses
/// it next to any other).
fn postgres(storage: &StorageSpec) -> Option<Node> {
    let StorageSpec::Postgres(pg) = storage else {
        return None;
    };
    let mut tls = MapBuilder::default()
        .set("mode", Node::str(pg.tls.mode.as_str()))
        .opt(
            "ca_file",
            pg.tls
                .ca_file
                .as_ref()
                .map(|p| Node::str(p.display().to_string())),
        );
    if let Some((cert, key)) = &pg.tls.identity {
        tls = tls
            .set("cert_file", Node::str(cert.display().to_string()))
            .set("key_file", Node::str(key.display().to_string()));
    }
    Some(
        MapBuilder::default()
            .set("pool_size", Node::num(pg.pool_size))
            .set("statement_timeout", Node::duration(pg.statement_timeout))
            .set("instance", Node::str(pg.instance.as_str()))
            .set("grace", Node::duration(pg.grace))
            .set("tls", tls.node())
            .node(),
    )
}

/// Writes `key: value` at `indent` (block maps, flow lists).
fn write_entry(out: &mut String, indent: usize, key: &str, value: &Node) {
    let pad = " ".repeat(indent);
    let key = scalar(key);
    match value {
        Node::Map(entries) if entries.is_empty() => {
            let _ = writeln!(out, "{pad}{key}: {{}}");
        }
        Node::Map(entries) => {
            let _ = writeln!(out, "{pad}{key}:");
            for (k, v) in entries {
                write_entry(out, indent + 2, k, v);
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{key}: {}", inline(other));
        }
    }
}

/// A scalar or flow list on one line.
fn inline(node: &Node) -> String {
    match node {
        Node::Str(s) => quoted(s),
        Node::Plain(p) => p.clone(),
        Node::List(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Node::Map(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {}", scalar(k), inline(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// A map key: plain when YAML reads it back as the same string (letters,
/// digits and `_ - . /`, not starting with a sign or digit that could make
/// it a number), else double-quoted.
fn scalar(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        key.to_string()
    } else {
        quoted(key)
    }
}

/// A double-quoted YAML string: JSON's escapes are YAML's. `$` is written
/// `$$`: the file's text goes through `${env:…}` substitution before it is
/// read, so an effective value holding `${…}` or `$$` (an environment
/// override, a `$$` in the file) reads back as itself.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string())
        .to_string()
        .replace('$', "$$")
}

#[cfg(test)]
#[path = "print_tests.rs"]
mod tests;
