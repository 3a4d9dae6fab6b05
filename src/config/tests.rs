//! Tests of the whole loading path (`load_str`): defaults, bounds, env
//! overrides, key preservation, syntax errors, and the fixture files under
//! `tests/fixtures/config/`.
//!
//! Fixture convention: every `invalid/NAME.yaml` has a sibling
//! `NAME.expected` listing *all* the error lines `load_str` must return, in
//! order, one per line. A line is compared exactly, except a line starting
//! with `~ `, which only has to be contained in the actual line (for messages
//! that embed a third-party text, like YAML syntax errors). Blank lines and
//! lines starting with `#` in `.expected` are ignored. Every `valid/*.yaml`
//! must load without error. Fixtures are loaded with [`fixture_env`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::model::{RunState, Subject};

/// The environment every fixture is loaded with.
fn fixture_env() -> HashMap<String, String> {
    env(&[("VERDICT_FIXTURE_TOKEN", "s3cret")])
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(text: &str) -> Result<ValidatedConfig, ConfigErrors> {
    load_str(text, &HashMap::new())
}

fn ok(text: &str) -> ValidatedConfig {
    match load(text) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

fn err_lines(text: &str) -> Vec<String> {
    err_lines_with(text, &HashMap::new())
}

fn err_lines_with(text: &str, env: &HashMap<String, String>) -> Vec<String> {
    match load_str(text, env) {
        Ok(config) => panic!("expected errors, got a valid config: {config:#?}"),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

/// A valid file with one pipeline around the given contract body.
fn with_contract(body: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols: {{ grpc: }}\nprocessors:\n  contract/checkout:\n{body}\npipelines:\n  checkout:\n    receivers: [otlp]\n    processors: [contract/checkout]\n"
    )
}

const MINIMAL: &str = "
receivers:
  otlp:
    protocols: { grpc: }
processors:
  contract/checkout:
    max_p95_latency_ms: 120
pipelines:
  checkout:
    receivers: [otlp]
    processors: [contract/checkout]
";

#[test]
fn minimal_file_gets_every_default() {
    let config = ok(MINIMAL);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        config,
        ValidatedConfig {
            receivers: vec![ReceiverSpec {
                id: "otlp".into(),
                kind: ReceiverKind::Otlp(Box::new(OtlpReceiverSpec {
                    grpc_endpoint: Some("0.0.0.0:4317".into()),
                    http_endpoint: None,
                    max_request_bytes: 20 * 1024 * 1024,
                    bearer_token: None,
                    grpc_tls: None,
                    http_tls: None,
                    http_cors: None,
                })),
            }],
            exporters: vec![],
            pipelines: vec![PipelineSpec {
                name: "checkout".into(),
                receivers: vec!["otlp".into()],
                window: WindowSpec {
                    size: Duration::from_secs(60),
                    allowed_lateness: Duration::from_secs(10),
                    max_clock_skew: Duration::from_secs(300),
                    shards: cores,
                    shards_per_core: true,
                    queue_size: 4096,
                    max_series: 10_000,
                    max_streams: 10_000,
                    stream_expiry: Duration::from_secs(900),
                },
                contracts: vec![ContractSpec {
                    name: "checkout".into(),
                    version: 1,
                    matches: vec![],
                    subject_by: vec!["service.name".into(), "service.version".into()],
                    source: Source::Spans,
                    span_kinds: vec![2, 5],
                    conversion_attribute: "validation.converted".into(),
                    latency_metric: "http.server.request.duration".into(),
                    conversions_metric: "validation.conversions".into(),
                    thresholds: Thresholds {
                        max_p95_latency_ms: Some(120.0),
                        max_error_rate_percent: None,
                        min_conversion_rate_percent: None,
                        ..Thresholds::default()
                    },
                    min_samples: 1,
                    min_window_samples: 1,
                    pass_windows: 3,
                    fail_windows: 1,
                    max_duration: Some(Duration::from_secs(48 * 3600)),
                    on_timeout: OnTimeout::Rollback,
                    run_idle_timeout: Duration::from_secs(3600),
                    on_idle: OnIdle::Retire,
                    baseline: None,
                    decision: Decision::Sequential,
                    alpha: 0.05,
                    dry_run: false,
                }],
                exporters: vec![],
            }],
            service: ServiceSpec {
                api_endpoint: "127.0.0.1:8686".into(),
                api_token: None,
                api_tls: None,
                public_url: None,
                storage: StorageSpec::Sqlite {
                    url: "sqlite://data/verdict.db".into(),
                    path: "data/verdict.db".into(),
                },
                max_inflight_bytes: 256 * 1024 * 1024,
                checkpoint_interval: Duration::from_secs(10),
                metric_expiry: Duration::from_secs(3600),
            },
        }
    );
}

/// A webhook of `valid/full.yaml`: the design's URL, default timing.
fn webhook(id: &str, action: &str, on: RunState) -> ExporterSpec {
    ExporterSpec {
        id: id.into(),
        kind: ExporterKind::Webhook(WebhookSpec {
            url: format!("http://ci.internal/api/{action}-canary"),
            tls: Default::default(),
            on: vec![on],
            secret: None,
            timeout: Duration::from_secs(5),
            retry: RetrySpec {
                initial_interval: Duration::from_secs(1),
                max_interval: Duration::from_secs(30),
                max_elapsed: Duration::from_secs(3600),
            },
            format: WebhookFormat::Json,
            token: None,
        }),
    }
}

/// A probe receiver with only what it needs gets every default, and
/// `verdict.synthetic` is added to its resource.
#[test]
fn probe_receiver_defaults() {
    let config = ok("
receivers:
  probe:
    url: http://127.0.0.1:3000/health
    resource: { service.name: checkout, service.version: 2 }
    headers: { X-Tenant: blue }
    body: '{\"cart\": 1}'
    method: post
    duration: 30s
    rate: 50
    interval: 10m
processors:
  contract/checkout:
    max_p95_latency_ms: 120
pipelines:
  checkout:
    receivers: [probe]
    processors: [contract/checkout]
");
    let ReceiverKind::Probe(probe) = &config.receivers[0].kind else {
        panic!("not a probe receiver")
    };
    assert_eq!(probe.plan.method, reqwest::Method::POST);
    assert_eq!(probe.plan.headers["x-tenant"], "blue");
    assert_eq!(probe.plan.body.as_deref(), Some(&b"{\"cart\": 1}"[..]));
    assert_eq!(
        probe.plan.amount,
        crate::config::Amount::Duration(Duration::from_secs(30))
    );
    assert_eq!(probe.plan.rate, Some(50.0));
    assert_eq!(probe.plan.concurrency, 10);
    assert_eq!(probe.plan.timeout, Duration::from_secs(5));
    assert_eq!(probe.interval, Some(Duration::from_secs(600)));
    assert_eq!(
        probe.resource.last(),
        Some(&("verdict.synthetic".to_string(), "true".to_string()))
    );
    assert_eq!(probe.resource[1].1, "2");
    assert!(!probe.plan.allow_4xx, "4xx answers are errors by default");
}

#[test]
fn probe_receiver_may_allow_4xx() {
    let probe = |allow: &str| {
        format!(
            "
receivers:
  probe:
    url: http://127.0.0.1:3000/health
    resource: {{ service.name: checkout, service.version: 2 }}
    allow_4xx: {allow}
processors:
  contract/checkout:
    max_p95_latency_ms: 120
pipelines:
  checkout:
    receivers: [probe]
    processors: [contract/checkout]
"
        )
    };
    let config = ok(&probe("true"));
    let ReceiverKind::Probe(spec) = &config.receivers[0].kind else {
        panic!("not a probe receiver")
    };
    assert!(spec.plan.allow_4xx);
    let errors = err_lines(&probe("sometimes"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("receivers.probe.allow_4xx"),
        "{errors:?}"
    );
}

#[test]
fn design_example_loads_with_every_field() {
    let config = ok(&std::fs::read_to_string(fixture_dir().join("valid/full.yaml")).unwrap());
    let ReceiverKind::Otlp(otlp) = &config.receivers[0].kind else {
        panic!("not an OTLP receiver")
    };
    assert_eq!(otlp.grpc_endpoint.as_deref(), Some("0.0.0.0:4317"));
    assert_eq!(otlp.http_endpoint.as_deref(), Some("0.0.0.0:4318"));
    assert_eq!(otlp.max_request_bytes, 20 * 1024 * 1024);
    assert_eq!(otlp.bearer_token, None);
    let ReceiverKind::Probe(probe) = &config.receivers[1].kind else {
        panic!("not a probe receiver")
    };
    assert_eq!(config.receivers[1].id, "probe/baseline");
    assert_eq!(probe.plan.url.as_str(), "http://localhost:3000/api/v1/mvp");
    assert_eq!(probe.plan.amount, crate::config::Amount::Requests(5000));
    assert_eq!(probe.plan.concurrency, 50);
    assert_eq!(probe.plan.timeout, Duration::from_secs(5));
    assert_eq!(
        probe.plan.conversion_header.as_str(),
        "x-validation-converted"
    );
    assert_eq!(probe.interval, None);
    assert_eq!(
        probe.resource,
        [
            ("service.name".to_string(), "checkout".to_string()),
            ("service.version".to_string(), "2.0.0".to_string()),
            ("verdict.synthetic".to_string(), "true".to_string()),
        ]
    );
    let pipeline = &config.pipelines[0];
    assert_eq!(pipeline.receivers, ["otlp", "probe/baseline"]);
    assert_eq!(pipeline.window.size, Duration::from_secs(60));
    assert_eq!(pipeline.window.max_clock_skew, Duration::from_secs(300));
    assert!(pipeline.window.shards >= 1);
    assert_eq!(pipeline.window.queue_size, 4096);
    let contract = &pipeline.contracts[0];
    assert_eq!(contract.name, "checkout");
    assert_eq!(contract.version, 3);
    assert_eq!(
        contract.matches,
        [AttributeMatch::new("service.name", "checkout").unwrap()]
    );
    assert_eq!(
        contract.thresholds,
        Thresholds {
            max_p95_latency_ms: Some(120.0),
            max_error_rate_percent: Some(2.0),
            min_conversion_rate_percent: Some(15.0),
            ..Thresholds::default()
        }
    );
    assert_eq!(contract.min_samples, 5000);
    assert_eq!(contract.max_duration, Some(Duration::from_secs(48 * 3600)));
    let baseline = contract.baseline.as_ref().unwrap();
    assert_eq!(
        baseline.matches,
        [
            AttributeMatch::new("service.name", "checkout").unwrap(),
            AttributeMatch::new("service.version", "1.*").unwrap()
        ]
    );
    assert_eq!(baseline.max_p95_latency_increase_percent, Some(10.0));
    assert_eq!(baseline.max_error_rate_increase_points, Some(0.5));
    let ExporterKind::Unleash(unleash) = &config.exporters[4].kind else {
        panic!("not an unleash exporter: {:?}", config.exporters[4])
    };
    assert_eq!(config.exporters[4].id, "unleash/checkout");
    assert_eq!(unleash.url, "http://unleash.internal:4242");
    assert_eq!(unleash.environment, "production");
    assert_eq!(unleash.project, "default");
    assert_eq!(unleash.flag.as_str(), "checkout-{service.version}");
    assert_eq!(unleash.steps, [5, 10, 25, 50, 100]);
    assert_eq!(
        (unleash.step_windows, unleash.refresh_interval),
        (2, Duration::from_secs(15))
    );
    assert_eq!(
        config.exporters[..4],
        [
            ExporterSpec {
                id: "prometheus".into(),
                kind: ExporterKind::Prometheus {
                    endpoint: "0.0.0.0:9464".into(),
                    tls: None,
                }
            },
            webhook("webhook/promote", "promote", RunState::Promoted),
            webhook("webhook/rollback", "rollback", RunState::RolledBack),
            ExporterSpec {
                id: "log".into(),
                kind: ExporterKind::Log
            }
        ]
    );
    assert_eq!(
        pipeline.exporters,
        [
            "prometheus",
            "webhook/promote",
            "webhook/rollback",
            "log",
            "unleash/checkout"
        ]
    );
    assert_eq!(config.service.api_token, None);
    assert_eq!(
        config.service.storage.to_string(),
        "sqlite://data/verdict.db"
    );
}

#[test]
fn every_contract_field_is_read() {
    let config = ok(&with_contract(
        "    version: 7
    match: { service.name: \"check*\", deployment.environment: prod }
    subject_by: [service.name, k8s.pod.name]
    source: metrics
    span_kinds: [server, SPAN_KIND_CLIENT]
    conversion_attribute: app.converted
    latency_metric: rpc.server.duration
    conversions_metric: app.conversions
    max_p50_latency_ms: 40
    max_p95_latency_ms: 99.5
    max_p99_latency_ms: 300
    max_error_rate_percent: 0
    min_conversion_rate_percent: 100
    min_samples: 5000
    min_window_samples: 50
    pass_windows: 5
    fail_windows: 2
    max_duration: 1h 30m
    on_timeout: promote
    run_idle_timeout: 10m
    on_idle: timeout
    decision: windows
    alpha: 0.01
    dry_run: true",
    ));
    let c = &config.pipelines[0].contracts[0];
    assert_eq!(c.version, 7);
    assert_eq!(c.matches.len(), 2);
    assert_eq!(c.matches[1].key, "deployment.environment");
    assert_eq!(c.subject_by, ["service.name", "k8s.pod.name"]);
    assert_eq!(c.source, Source::Metrics);
    assert_eq!(c.span_kinds, [2, 3]);
    assert_eq!(c.conversion_attribute, "app.converted");
    assert_eq!(c.latency_metric, "rpc.server.duration");
    assert_eq!(c.conversions_metric, "app.conversions");
    assert_eq!(c.thresholds.max_p50_latency_ms, Some(40.0));
    assert_eq!(c.thresholds.max_p95_latency_ms, Some(99.5));
    assert_eq!(c.thresholds.max_p99_latency_ms, Some(300.0));
    assert_eq!(c.thresholds.max_error_rate_percent, Some(0.0));
    assert_eq!(c.thresholds.min_conversion_rate_percent, Some(100.0));
    assert_eq!(c.min_samples, 5000);
    assert_eq!(c.min_window_samples, 50);
    assert_eq!((c.pass_windows, c.fail_windows), (5, 2));
    assert_eq!(c.max_duration, Some(Duration::from_secs(5400)));
    assert_eq!(c.on_timeout, OnTimeout::Promote);
    assert_eq!(c.run_idle_timeout, Duration::from_secs(600));
    assert_eq!(c.on_idle, OnIdle::Timeout);
    assert_eq!(c.decision, Decision::Windows);
    assert_eq!(c.alpha, 0.01);
    assert!(c.dry_run);
}

#[test]
fn window_fields_and_shards() {
    let text = "
receivers: { otlp: { protocols: { http: { endpoint: localhost:4318 } } } }
processors:
  window/fast: { size: 500ms, allowed_lateness: 0s, max_clock_skew: 1m, shards: 3, queue_size: 1, max_series: 1, max_streams: 7, stream_expiry: 2m }
  window: { shards: 0 }
  contract/a: { max_p95_latency_ms: 1 }
  contract/b: { max_p95_latency_ms: 1 }
pipelines:
  a: { receivers: [otlp], processors: [window/fast, contract/a] }
  b: { receivers: [otlp], processors: [contract/b, window] }
";
    let config = ok(text);
    let fast = &config.pipelines[0].window;
    assert_eq!(
        *fast,
        WindowSpec {
            size: Duration::from_millis(500),
            allowed_lateness: Duration::ZERO,
            max_clock_skew: Duration::from_secs(60),
            shards: 3,
            shards_per_core: false,
            queue_size: 1,
            max_series: 1,
            max_streams: 7,
            stream_expiry: Duration::from_secs(120),
        }
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.pipelines[1].window.shards, cores);
    let ReceiverKind::Otlp(otlp) = &config.receivers[0].kind else {
        panic!("not an OTLP receiver")
    };
    assert_eq!(otlp.http_endpoint.as_deref(), Some("localhost:4318"));
    assert_eq!(otlp.grpc_endpoint, None);
}

/// Shards are bounded: five million tasks and queues would take the
/// machine's memory before the server answered anything.
#[test]
fn shards_are_bounded() {
    let text = |shards: &str| {
        format!(
            "
receivers: {{ otlp: {{ protocols: {{ http: {{ endpoint: localhost:4318 }} }} }} }}
processors:
  window: {{ shards: {shards} }}
  contract: {{ max_p95_latency_ms: 1 }}
pipelines:
  a: {{ receivers: [otlp], processors: [window, contract] }}
"
        )
    };
    assert_eq!(ok(&text("1024")).pipelines[0].window.shards, 1024);
    let lines = err_lines(&text("5000000"));
    assert!(
        lines.iter().any(|l| l.contains("processors.window.shards")),
        "{lines:?}"
    );
}

#[test]
fn only_referenced_components_are_kept_in_file_order() {
    let text = "
receivers:
  otlp/unused: { protocols: { grpc: { endpoint: 0.0.0.0:5317 } } }
  otlp/b: { protocols: { grpc: { endpoint: 0.0.0.0:6317 } } }
  otlp/a: { protocols: { grpc: { endpoint: 0.0.0.0:7317 } } }
processors:
  contract/x: { max_p95_latency_ms: 1 }
  contract/unused: { max_p95_latency_ms: 1 }
exporters:
  log/unused:
  prometheus: { endpoint: 0.0.0.0:9999 }
  log:
pipelines:
  p: { receivers: [otlp/a, otlp/b], processors: [contract/x], exporters: [log, prometheus] }
";
    let config = ok(text);
    let ids: Vec<&str> = config.receivers.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["otlp/b", "otlp/a"]);
    let ids: Vec<&str> = config.exporters.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["prometheus", "log"]);
    assert_eq!(config.pipelines[0].receivers, ["otlp/a", "otlp/b"]);
    assert_eq!(config.pipelines[0].exporters, ["log", "prometheus"]);
}

#[test]
fn contracts_keep_pipeline_order_and_names() {
    let text = "
receivers: { otlp: { protocols: { grpc: } } }
processors:
  contract: { max_p95_latency_ms: 1 }
  contract/b: { max_p95_latency_ms: 1 }
pipelines:
  p: { receivers: [otlp], processors: [contract/b, contract] }
";
    let names: Vec<String> = ok(text).pipelines[0]
        .contracts
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["b", "contract"]);
}

#[test]
fn keys_with_dots_slashes_and_upper_case_survive() {
    let text = "
receivers:
  otlp/Edge.EU-1: { protocols: { grpc: } }
processors:
  contract/Check.Out:
    match: { service.name: Checkout, \"K8s.Namespace/Name\": \"prod-*\", host.arch: amd64 }
    subject_by: [service.name, K8s.Namespace/Name]
    max_p95_latency_ms: 1
pipelines:
  Main/Line: { receivers: [otlp/Edge.EU-1], processors: [contract/Check.Out] }
";
    let config = ok(text);
    assert_eq!(config.receivers[0].id, "otlp/Edge.EU-1");
    assert_eq!(config.pipelines[0].name, "Main/Line");
    let c = &config.pipelines[0].contracts[0];
    assert_eq!(c.name, "Check.Out");
    let keys: Vec<(&str, &str)> = c
        .matches
        .iter()
        .map(|m| (m.key.as_str(), m.pattern.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("service.name", "Checkout"),
            ("K8s.Namespace/Name", "prod-*"),
            ("host.arch", "amd64")
        ]
    );
    assert_eq!(c.subject_by, ["service.name", "K8s.Namespace/Name"]);
}

#[test]
fn unknown_key_paths_keep_dots_and_slashes() {
    let lines = err_lines(&with_contract(
        "    max_p95_latency_ms: 1\n    max_p95_latncy_ms: 120\n    baseline: { match: { a: b }, max_p95_latency_increase_percent: 1, oops: 1 }",
    ));
    assert_eq!(
        lines,
        [
            "processors.contract/checkout.max_p95_latncy_ms: unknown key",
            "processors.contract/checkout.baseline.oops: unknown key",
        ]
    );
}

#[test]
fn an_empty_top_level_key_is_named() {
    // Found by the `config` fuzz target: the error had no path at all.
    let lines = err_lines(&format!("\"\": 1\n{MINIMAL}"));
    assert_eq!(lines, ["\"\": unknown key"]);
}

/// Documents why `VERDICT__…` overrides are not done by config-rs's
/// `Environment` source: it cannot address a component id with `/` (the
/// variable becomes a new top-level key) and `try_parsing` turns string
/// values into numbers. If this test starts failing, config-rs changed and
/// `env::apply_overrides` may be reconsidered.
#[test]
fn config_rs_environment_cannot_address_component_ids() {
    let vars: config::Map<String, String> = [
        ("VERDICT__PROCESSORS__CONTRACT/CHECKOUT__MIN_SAMPLES", "5"),
        ("VERDICT__SERVICE__API__TOKEN", "00123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(
            "processors:\n  contract/checkout: { min_samples: 1 }\n",
            config::FileFormat::Yaml,
        ))
        .add_source(
            config::Environment::with_prefix("VERDICT")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars)),
        )
        .build()
        .unwrap();
    let root: config::Map<String, config::Value> = built.try_deserialize().unwrap();
    assert!(root.contains_key("processors.contract/checkout.min_samples"));
    let token = root["service"].clone().into_table().unwrap()["api"]
        .clone()
        .into_table()
        .unwrap()["token"]
        .clone()
        .into_string()
        .unwrap();
    assert_eq!(token, "123");
}

#[test]
fn env_overrides_through_verdict_variables() {
    let vars = env(&[
        ("VERDICT__SERVICE__API__ENDPOINT", "0.0.0.0:9686"),
        ("VERDICT__SERVICE__API__TOKEN", "00123"),
        ("VERDICT__SERVICE__MAX_INFLIGHT_BYTES", "512MiB"),
        ("VERDICT__SERVICE__METRIC_EXPIRY", "2h"),
        (
            "VERDICT__PROCESSORS__CONTRACT/CHECKOUT__MAX_P95_LATENCY_MS",
            "80",
        ),
        ("VERDICT__PROCESSORS__CONTRACT/CHECKOUT__MIN_SAMPLES", "500"),
        ("VERDICT__PROCESSORS__CONTRACT/CHECKOUT__DRY_RUN", "true"),
        (
            "VERDICT__PROCESSORS__CONTRACT/CHECKOUT__SUBJECT_BY",
            "service.name, k8s.pod.name",
        ),
        (
            "VERDICT__PROCESSORS__CONTRACT/CHECKOUT__MATCH__SERVICE.NAME",
            "pay*",
        ),
        (
            "VERDICT__RECEIVERS__OTLP__PROTOCOLS__HTTP__ENDPOINT",
            "127.0.0.1:4000",
        ),
        ("VERDICT__RECEIVERS__OTLP__AUTH__BEARER_TOKEN", "t0k"),
        ("VERDICT__PIPELINES__CHECKOUT__EXPORTERS", "log"),
        ("VERDICT__EXPORTERS__LOG", ""),
    ]);
    let text = "
receivers:
  otlp: { protocols: { grpc: } }
processors:
  contract/checkout:
    match: { service.name: checkout }
    max_p95_latency_ms: 120
pipelines:
  checkout: { receivers: [otlp], processors: [contract/checkout] }
";
    let config = match load_str(text, &vars) {
        Ok(config) => config,
        Err(errors) => panic!("{errors}"),
    };
    assert_eq!(config.service.api_endpoint, "0.0.0.0:9686");
    assert_eq!(config.service.api_token.as_deref(), Some("00123"));
    assert_eq!(config.service.max_inflight_bytes, 512 * 1024 * 1024);
    assert_eq!(config.service.metric_expiry, Duration::from_secs(7200));
    let c = &config.pipelines[0].contracts[0];
    assert_eq!(c.thresholds.max_p95_latency_ms, Some(80.0));
    assert_eq!(c.min_samples, 500);
    assert!(c.dry_run);
    assert_eq!(c.subject_by, ["service.name", "k8s.pod.name"]);
    assert_eq!(c.matches[0].key, "service.name");
    assert_eq!(c.matches[0].pattern, "pay*");
    let ReceiverKind::Otlp(otlp) = &config.receivers[0].kind else {
        panic!("not an OTLP receiver")
    };
    assert_eq!(otlp.http_endpoint.as_deref(), Some("127.0.0.1:4000"));
    assert_eq!(otlp.bearer_token.as_deref(), Some("t0k"));
    assert_eq!(config.exporters[0].kind, ExporterKind::Log);
}

#[test]
fn env_override_values_are_validated_with_paths() {
    let vars = env(&[
        (
            "VERDICT__PROCESSORS__CONTRACT/CHECKOUT__MAX_ERROR_RATE_PERCENT",
            "140",
        ),
        ("VERDICT__SERVICE__CHECKPOINT_INTERVAL", "often"),
        ("VERDICT__SERVICE__API__ENDPOINTS", "x"),
    ]);
    assert_eq!(
        err_lines_with(&with_contract("    max_p95_latency_ms: 1"), &vars),
        [
            "processors.contract/checkout.max_error_rate_percent: \
             VERDICT__PROCESSORS__CONTRACT/CHECKOUT__MAX_ERROR_RATE_PERCENT=140: \
             must be between 0 and 100, got 140",
            "service.api.endpoints: VERDICT__SERVICE__API__ENDPOINTS=x: unknown key",
            "service.checkpoint_interval: VERDICT__SERVICE__CHECKPOINT_INTERVAL=often: \
             invalid duration \"often\": expected number at 0",
        ]
    );
    // A secret value is named, not shown; a URL loses its password.
    let vars = env(&[
        ("VERDICT__SERVICE__API__TOKEN", "bad token"),
        ("VERDICT__SERVICE__STORAGE", "mysql://u:hunter2@db/v"),
    ]);
    let lines = err_lines_with(&with_contract("    max_p95_latency_ms: 1"), &vars);
    assert!(
        lines.contains(
            &"service.api.token: VERDICT__SERVICE__API__TOKEN=<redacted>: \
                          must contain only printable ASCII characters without spaces"
                .to_string()
        ),
        "{lines:?}"
    );
    assert!(!lines.join("\n").contains("hunter2"), "{lines:?}");
}

#[test]
fn env_substitution_feeds_the_config() {
    let vars = env(&[("INGEST", "abc"), ("API", ""), ("P95", "250")]);
    let text = "
receivers:
  otlp:
    protocols: { grpc: { endpoint: \"${env:GRPC:-0.0.0.0:14317}\" } }
    auth: { bearer_token: ${env:INGEST} }
processors:
  contract/checkout: { max_p95_latency_ms: ${env:P95}, match: { service.name: \"$${literal}\" } }
pipelines:
  checkout: { receivers: [otlp], processors: [contract/checkout] }
service:
  api: { token: ${env:API:-} }
";
    let config = load_str(text, &vars).unwrap();
    let ReceiverKind::Otlp(otlp) = &config.receivers[0].kind else {
        panic!("not an OTLP receiver")
    };
    assert_eq!(otlp.grpc_endpoint.as_deref(), Some("0.0.0.0:14317"));
    assert_eq!(otlp.bearer_token.as_deref(), Some("abc"));
    let c = &config.pipelines[0].contracts[0];
    assert_eq!(c.thresholds.max_p95_latency_ms, Some(250.0));
    assert_eq!(c.matches[0].pattern, "${literal}");
    assert_eq!(config.service.api_token, None);
}

#[test]
fn empty_tokens_mean_none() {
    let text = "
receivers: { otlp: { protocols: { grpc: }, auth: { bearer_token: \"\" } } }
processors: { contract: { max_p95_latency_ms: 1 } }
pipelines: { p: { receivers: [otlp], processors: [contract] } }
service: { api: { token: \"\" }, storage: \"\" }
";
    let config = ok(text);
    let ReceiverKind::Otlp(otlp) = &config.receivers[0].kind else {
        panic!("not an OTLP receiver")
    };
    assert_eq!(otlp.bearer_token, None);
    assert_eq!(config.service.api_token, None);
    // Empty storage is the default, an SQLite file.
    assert_eq!(
        config.service.storage.to_string(),
        "sqlite://data/verdict.db"
    );
}

/// A valid file but for its `service.storage`.
fn with_storage(storage: &str) -> String {
    format!(
        "processors: {{ contract: {{ max_p95_latency_ms: 1 }} }}
receivers: {{ otlp: {{ protocols: {{ grpc: }} }} }}
pipelines: {{ p: {{ receivers: [otlp], processors: [contract] }} }}
service: {{ storage: \"{storage}\" }}
"
    )
}

#[test]
fn storage_urls() {
    let with = with_storage;
    assert_eq!(ok(&with("memory:")).service.storage, StorageSpec::Memory);
    assert_eq!(ok(&with("memory")).service.storage, StorageSpec::Memory);
    assert_eq!(
        ok(&with("sqlite:///var/lib/verdict/v.db")).service.storage,
        StorageSpec::Sqlite {
            url: "sqlite:///var/lib/verdict/v.db".into(),
            path: "/var/lib/verdict/v.db".into()
        }
    );
    assert_eq!(
        ok(&with("sqlite://rel/v.db")).service.storage,
        StorageSpec::Sqlite {
            url: "sqlite://rel/v.db".into(),
            path: "rel/v.db".into()
        }
    );
    for bad in [
        "sqlite://",
        "sqlite://x.db?mode=ro",
        "mysql://db",
        "postgres://db",
        "postgres:///v",
        "postgres://db/v?sslmode=require",
        "postgres://db:x/v",
    ] {
        assert!(
            crate::config::load_str(&with(bad), &std::collections::HashMap::new()).is_err(),
            "{bad} accepted"
        );
    }
}

/// A storage URL quoted in an error never shows its password, in the
/// user part or in the query.
#[test]
fn storage_errors_never_quote_a_password() {
    let with = with_storage;
    for (bad, says) in [
        (
            "postgres://v@db:5432/verdict?password=hunter2&sslmode=require",
            "postgres://v@db:5432/verdict?password=***&sslmode=require",
        ),
        (
            "postgres://v:hunter2@db/verdict?sslmode=require",
            "postgres://v:***@db/verdict?sslmode=require",
        ),
        (
            "mysql://v:hunter2@db/verdict?pwd=hunter2",
            "mysql://v:***@db/verdict?pwd=***",
        ),
        ("sqlite://x.db?key=hunter2", "sqlite://x.db?key=***"),
    ] {
        let lines = err_lines(&with(bad));
        let text = lines.join("\n");
        assert!(!text.contains("hunter2"), "{bad}: {text}");
        assert!(text.contains(says), "{bad}: {text}");
    }
}

/// `postgres://` storage and its settings under `service.postgres`:
/// defaults, every setting read, and each problem named by its path.
#[test]
fn postgres_storage_and_its_settings() {
    let with = |service: &str| {
        format!(
            "processors: {{ contract: {{ max_p95_latency_ms: 1 }} }}
receivers: {{ otlp: {{ protocols: {{ grpc: }} }} }}
pipelines: {{ p: {{ receivers: [otlp], processors: [contract] }} }}
service: {service}
"
        )
    };
    let StorageSpec::Postgres(pg) = ok(&with(
        "{ storage: \"postgresql://v:secret@db:5433/verdict\" }",
    ))
    .service
    .storage
    else {
        panic!("not PostgreSQL")
    };
    assert_eq!(pg.pool_size, crate::config::DEFAULT_PG_POOL_SIZE);
    assert_eq!(
        pg.statement_timeout,
        crate::config::DEFAULT_PG_STATEMENT_TIMEOUT
    );
    assert_eq!(pg.tls.mode, PgSslMode::Prefer);
    assert!(!pg.instance.is_empty());
    // The password never shows in messages or logs.
    assert_eq!(
        StorageSpec::Postgres(pg).to_string(),
        "postgresql://v:***@db:5433/verdict"
    );
    let StorageSpec::Postgres(pg) = ok(&with(
        "{ storage: \"postgres://v@db/verdict\", postgres: { pool_size: 3, statement_timeout: 2s, \
         instance: a, grace: 500ms, tls: { mode: verify-full } } }",
    ))
    .service
    .storage
    else {
        panic!("not PostgreSQL")
    };
    assert_eq!(
        (
            pg.pool_size,
            pg.statement_timeout,
            pg.instance.as_str(),
            pg.grace,
            pg.tls.mode
        ),
        (
            3,
            Duration::from_secs(2),
            "a",
            Duration::from_millis(500),
            PgSslMode::VerifyFull
        )
    );
    let lines = err_lines(&with(
        "{ storage: \"postgres://v@db/verdict\", postgres: { pool_size: 1, statement_timeout: 0s, \
         instance: \"\", tls: { mode: always, cert_file: /nonexistent/c.pem } } }",
    ));
    for expected in [
        "service.postgres.pool_size: must be at least 2, got 1",
        "service.postgres.statement_timeout:",
        "service.postgres.instance: must be 1 to 100 printable characters",
        "service.postgres.tls.mode: expected disable, prefer, require, verify-ca or verify-full, got \"always\"",
        "service.postgres.tls.cert_file: cannot read /nonexistent/c.pem",
        "service.postgres.tls.key_file: is required with cert_file",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected} missing in {lines:#?}"
        );
    }
    assert!(err_lines(&with(
        "{ storage: \"postgres://v@db/verdict\", postgres: { statement_timeout: 30d } }"
    ))
    .iter()
    .any(|l| l.starts_with(
        "service.postgres.statement_timeout: must be at most 2147483647ms (about 24.8 days, PostgreSQL's limit), got 2592000000ms"
    )));
    assert!(err_lines(&with(
        "{ storage: \"memory:\", postgres: { pool_size: 4 } }"
    ))
    .iter()
    .any(|l| l.starts_with("service.postgres: is only for postgres:// storage")));
}

#[test]
fn sizes_accept_units_and_integers() {
    for (written, bytes) in [
        ("20MiB", 20 * 1024 * 1024),
        ("100 MB", 100_000_000),
        ("512KiB", 512 * 1024),
        ("1000", 1000),
    ] {
        let text = format!(
            "receivers: {{ otlp: {{ protocols: {{ grpc: }}, max_request_bytes: {written} }} }}\n\
             processors: {{ contract: {{ max_p95_latency_ms: 1 }} }}\n\
             pipelines: {{ p: {{ receivers: [otlp], processors: [contract] }} }}\n"
        );
        let ReceiverKind::Otlp(otlp) = &ok(&text).receivers[0].kind else {
            panic!("not an OTLP receiver")
        };
        assert_eq!(otlp.max_request_bytes, bytes, "{written}");
    }
}

#[test]
fn localhost_and_ipv6_endpoints_are_accepted() {
    let text = "
receivers:
  otlp: { protocols: { grpc: { endpoint: \"localhost:4317\" }, http: { endpoint: \"[::]:4318\" } } }
processors: { contract: { max_p95_latency_ms: 1 } }
exporters: { prometheus: { endpoint: \"metrics.local:9464\" } }
pipelines: { p: { receivers: [otlp], processors: [contract], exporters: [prometheus] } }
service: { api: { endpoint: \"[::1]:8686\" } }
";
    let config = ok(text);
    assert_eq!(config.service.api_endpoint, "[::1]:8686");
}

#[test]
fn port_zero_listeners_never_conflict() {
    let text = "
receivers:
  otlp: { protocols: { grpc: { endpoint: 127.0.0.1:0 }, http: { endpoint: 127.0.0.1:0 } } }
processors: { contract: { max_p95_latency_ms: 1 } }
exporters: { prometheus: { endpoint: 127.0.0.1:0 } }
pipelines: { p: { receivers: [otlp], processors: [contract], exporters: [prometheus] } }
service: { api: { endpoint: 127.0.0.1:0 } }
";
    ok(text);
}

#[test]
fn yaml_syntax_error_keeps_the_line() {
    let lines = err_lines("receivers:\n  otlp:\n    protocols: [grpc\nprocessors: {}\n");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("invalid YAML: "), "{}", lines[0]);
    assert!(lines[0].contains("line 4"), "{}", lines[0]);
    // Substitution does not move lines.
    let vars = env(&[("X", "1")]);
    let lines = err_lines_with("a: ${env:X}\nb: ${env:X}\nc: [\n", &vars);
    assert!(lines[0].contains("line 4"), "{}", lines[0]);
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let lines = err_lines("service: {}\nservice: {}\n");
    assert!(lines[0].contains("duplicated key"), "{}", lines[0]);
    assert!(lines[0].contains("line 2"), "{}", lines[0]);
}

#[test]
fn top_level_must_be_a_map() {
    assert_eq!(
        err_lines("- receivers\n"),
        ["the file must be a YAML map of sections: invalid type: sequence, expected a map"]
    );
}

#[test]
fn empty_file_needs_a_pipeline() {
    assert_eq!(
        err_lines(""),
        ["pipelines: at least one pipeline is required"]
    );
}

#[test]
fn unreadable_file_names_the_file() {
    let errors = load_file(Path::new("/nonexistent/verdict.yaml")).unwrap_err();
    assert_eq!(errors.len(), 1);
    let line = errors.to_string();
    assert!(
        line.starts_with("cannot read /nonexistent/verdict.yaml: "),
        "{line}"
    );
    assert!(line.contains("No such file"), "{line}");
}

#[test]
fn load_file_reads_a_valid_file() {
    let config = load_file(&fixture_dir().join("valid/minimal.yaml")).unwrap();
    assert_eq!(config.pipelines.len(), 1);
}

#[test]
fn bounds_of_each_threshold() {
    let cases: &[(&str, &str)] = &[
        (
            "max_p95_latency_ms: 0",
            "max_p95_latency_ms: must be greater than 0, got 0",
        ),
        (
            "max_p95_latency_ms: -0.5",
            "max_p95_latency_ms: must be greater than 0, got -0.5",
        ),
        (
            "max_p95_latency_ms: \"inf\"",
            "max_p95_latency_ms: must be a finite number, got inf",
        ),
        (
            "max_error_rate_percent: 100.01",
            "max_error_rate_percent: must be between 0 and 100, got 100.01",
        ),
        (
            "max_error_rate_percent: \"NaN\"",
            "max_error_rate_percent: must be a finite number, got NaN",
        ),
        (
            "min_conversion_rate_percent: -3",
            "min_conversion_rate_percent: must be between 0 and 100, got -3",
        ),
    ];
    for (line, expected) in cases {
        let lines = err_lines(&with_contract(&format!("    {line}")));
        assert_eq!(
            lines,
            [format!("processors.contract/checkout.{expected}")],
            "{line}"
        );
    }
    // The edges are allowed.
    ok(&with_contract(
        "    max_error_rate_percent: 0\n    min_conversion_rate_percent: 100\n    max_p95_latency_ms: 0.001",
    ));
}

#[test]
fn bounds_of_counts_and_alpha() {
    let cases: &[(&str, &str)] = &[
        ("min_samples: 0", "min_samples: must be at least 1, got 0"),
        (
            "min_window_samples: 0",
            "min_window_samples: must be at least 1, got 0",
        ),
        ("pass_windows: 0", "pass_windows: must be at least 1, got 0"),
        ("fail_windows: 0", "fail_windows: must be at least 1, got 0"),
        ("version: 0", "version: must be at least 1, got 0"),
        (
            "version: 4294967296",
            "version: must be at most 4294967295, got 4294967296",
        ),
        (
            "alpha: 0",
            "alpha: must be at least 0.000001 and below 0.5, got 0",
        ),
        (
            "alpha: 0.5",
            "alpha: must be at least 0.000001 and below 0.5, got 0.5",
        ),
        (
            "alpha: 0.0000001",
            "alpha: must be at least 0.000001 and below 0.5, got 0.0000001",
        ),
        (
            "alpha: \"NaN\"",
            "alpha: must be at least 0.000001 and below 0.5, got NaN",
        ),
        (
            "min_samples: 2.5",
            "min_samples: expected a whole number, got 2.5",
        ),
        ("max_duration: 0s", "max_duration: must be greater than 0"),
    ];
    for (line, expected) in cases {
        let lines = err_lines(&with_contract(&format!(
            "    max_p95_latency_ms: 1\n    decision: windows\n    {line}"
        )));
        assert_eq!(
            lines,
            [format!("processors.contract/checkout.{expected}")],
            "{line}"
        );
    }
    let config = ok(&with_contract(
        "    max_p95_latency_ms: 1\n    min_samples: 1\n    decision: windows\n    pass_windows: 1\n    fail_windows: 1\n    version: 4294967295\n    alpha: 0.499",
    ));
    assert_eq!(config.pipelines[0].contracts[0].version, u32::MAX);
}

/// Window-rule settings next to sequential decisions (the default, or
/// written out) would be silently ignored: they are refused, by path.
#[test]
fn window_settings_are_refused_with_sequential_decisions() {
    for decision in ["", "\n    decision: sequential"] {
        let lines = err_lines(&with_contract(&format!(
            "    max_p95_latency_ms: 1{decision}\n    pass_windows: 3\n    min_window_samples: 10"
        )));
        assert_eq!(lines.len(), 2, "{lines:?}");
        // In the order the keys appear in the file.
        assert!(
            lines[0].starts_with(
                "processors.contract/checkout.pass_windows: applies to decision: windows only"
            ),
            "{lines:?}"
        );
        assert!(lines[1].starts_with("processors.contract/checkout.min_window_samples: applies to decision: windows only"), "{lines:?}");
        assert!(lines[0].contains("set decision: windows"), "{lines:?}");
    }
    let lines = err_lines(&with_contract(
        "    max_p95_latency_ms: 1\n    decision: bayesian",
    ));
    assert_eq!(
        lines,
        ["processors.contract/checkout.decision: expected windows or sequential, got \"bayesian\""]
    );
}

#[test]
fn bounds_of_window() {
    let base = |window: &str| {
        format!(
            "receivers: {{ otlp: {{ protocols: {{ grpc: }} }} }}\nprocessors:\n  window: {{ {window} }}\n  contract: {{ max_p95_latency_ms: 1 }}\npipelines: {{ p: {{ receivers: [otlp], processors: [window, contract] }} }}\n"
        )
    };
    for (window, expected) in [
        ("size: 0s", "processors.window.size: must be greater than 0"),
        ("shards: -2", "processors.window.shards: must be at least 0, got -2"),
        ("queue_size: 0", "processors.window.queue_size: must be at least 1, got 0"),
        ("max_series: 0", "processors.window.max_series: must be at least 1, got 0"),
        ("max_streams: 0", "processors.window.max_streams: must be at least 1, got 0"),
        ("size: 60", "processors.window.size: invalid duration \"60\": time unit needed, for example 60sec or 60ms"),
    ] {
        assert_eq!(err_lines(&base(window)), [expected], "{window}");
    }
}

#[test]
fn a_contract_may_only_compare_with_its_baseline() {
    let cfg = ok(&with_contract(
        "    baseline: { match: { service.version: \"1.*\" }, max_p95_latency_increase_percent: 10 }",
    ));
    let contract = &cfg.pipelines[0].contracts[0];
    assert_eq!(contract.thresholds, Thresholds::default());
    assert!(contract.baseline.is_some());
}

#[test]
fn contracts_that_can_only_fail_need_min_samples() {
    // Nothing proves an error rate below 0 or a rate below 100 %, so only
    // min_samples could say when such a release is promoted.
    for body in [
        "    max_error_rate_percent: 0",
        "    max_error_rate_percent: 100",
        "    min_conversion_rate_percent: 100",
        "    max_error_rate_percent: 0\n    min_conversion_rate_percent: 0",
        "    baseline: { match: { service.version: \"1.*\" }, max_error_rate_increase_points: 0 }",
        "    baseline: { match: { service.version: \"1.*\" }, max_p95_latency_increase_percent: 0 }",
    ] {
        let lines = err_lines(&with_contract(body));
        assert_eq!(lines.len(), 1, "{body}: {lines:?}");
        assert!(
            lines[0].starts_with("processors.contract/checkout.min_samples: required here"),
            "{body}: {lines:?}"
        );
        ok(&with_contract(&format!("{body}\n    min_samples: 500")));
        ok(&with_contract(&format!("{body}\n    decision: windows")));
    }
    // One check that data can prove passing is enough.
    for body in [
        "    max_error_rate_percent: 0\n    max_p95_latency_ms: 200",
        "    max_error_rate_percent: 0.5",
        "    baseline: { match: { service.version: \"1.*\" }, max_p95_latency_increase_percent: 5 }",
    ] {
        ok(&with_contract(body));
    }
}

#[test]
fn errors_are_deterministic() {
    let text = std::fs::read_to_string(fixture_dir().join("invalid/unknown_keys.yaml")).unwrap();
    let first = err_lines(&text);
    for _ in 0..5 {
        assert_eq!(err_lines(&text), first);
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// Sorted `*.yaml` files of a fixture subdirectory.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Whether `actual` satisfies the `.expected` line `expected`.
fn line_matches(expected: &str, actual: &str) -> bool {
    match expected.strip_prefix("~ ") {
        Some(fragment) => actual.contains(fragment),
        None => expected == actual,
    }
}

#[test]
fn invalid_fixtures_report_exactly_their_expected_errors() {
    let files = yaml_files(&fixture_dir().join("invalid"));
    assert!(files.len() >= 12, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let expected_file = file.with_extension("expected");
        let Ok(expected) = std::fs::read_to_string(&expected_file) else {
            failures.push(format!("{}: no .expected file", file.display()));
            continue;
        };
        let expected: Vec<&str> = expected
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        let text = std::fs::read_to_string(file).unwrap();
        let actual: Vec<String> = match load_str(&text, &fixture_env()) {
            Ok(_) => {
                failures.push(format!("{}: loaded without error", file.display()));
                continue;
            }
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        };
        let matches = expected.len() == actual.len()
            && expected
                .iter()
                .zip(&actual)
                .all(|(e, a)| line_matches(e, a));
        if !matches {
            failures.push(format!(
                "{}:\n  expected:\n    {}\n  actual:\n    {}",
                file.display(),
                expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_expected_file_has_its_yaml() {
    let dir = fixture_dir().join("invalid");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "expected") {
            assert!(
                path.with_extension("yaml").exists(),
                "{} has no .yaml",
                path.display()
            );
        }
    }
}

#[test]
fn valid_fixtures_load() {
    let files = yaml_files(&fixture_dir().join("valid"));
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if let Err(errors) = load_str(&text, &fixture_env()) {
            failures.push(format!("{}:\n{errors}", file.display()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Services sharing a contract each get their own baseline: the baseline is
/// keyed by the `subject_by` attributes `baseline.match` leaves open, and it
/// must also meet the contract's own `match` on the others.
#[test]
fn baselines_are_kept_apart_by_the_attributes_they_leave_open() {
    let cfg = ok(&with_contract(
        "    match: { service.name: \"*\" }\n    max_p95_latency_ms: 100\n    baseline: { match: { service.version: \"1.*\" }, max_p95_latency_increase_percent: 10 }",
    ));
    let c = &cfg.pipelines[0].contracts[0];
    assert_eq!(c.baseline_keys().collect::<Vec<_>>(), ["service.name"]);
    let resource = |name: &'static str, version: &'static str| {
        move |key: &str| match key {
            "service.name" => Some(name),
            "service.version" => Some(version),
            _ => None,
        }
    };
    let payments = Subject::baseline(vec![("service.name".into(), "payments".into())]);
    assert_eq!(
        c.select(resource("payments", "1.4")),
        Selection::Baseline(payments.clone())
    );
    let Selection::Subject(canary) = c.select(resource("checkout", "2.0")) else {
        panic!("a candidate");
    };
    assert_eq!(
        c.baseline_of(&canary),
        Some(Subject::baseline(vec![(
            "service.name".into(),
            "checkout".into()
        )]))
    );

    // Naming every subject attribute gives one baseline per contract; the
    // contract's match still applies to attributes the baseline leaves
    // open.
    let cfg = ok(&with_contract(
        "    match: { service.name: checkout }\n    max_p95_latency_ms: 100\n    baseline: { match: { service.version: \"1.*\" }, max_p95_latency_increase_percent: 10 }",
    ));
    let c = &cfg.pipelines[0].contracts[0];
    assert_eq!(c.select(resource("payments", "1.4")), Selection::None);
    assert!(matches!(
        c.select(resource("checkout", "1.4")),
        Selection::Baseline(_)
    ));
    let mut one = c.clone();
    one.subject_by = vec!["service.version".into()];
    assert_eq!(
        one.select(resource("checkout", "1.4")),
        Selection::Baseline(Subject::baseline(Vec::new()))
    );
}

/// `format`, `token` (substituted like any secret) and `public_url` are
/// read; json stays the default and needs no token.
#[test]
fn webhook_formats_tokens_and_the_public_url() {
    let text = "
receivers:
  otlp: { protocols: { grpc: } }
processors:
  contract/checkout: { max_p95_latency_ms: 120 }
exporters:
  webhook/plain: { url: http://ci.internal/hook }
  webhook/github:
    url: http://127.0.0.1:8088/repos/acme/shop/dispatches
    format: github
    token: ${env:GITHUB_DISPATCH_TOKEN}
  webhook/slack: { url: http://127.0.0.1:8089/services/T0/B0/X, format: slack }
pipelines:
  checkout:
    receivers: [otlp]
    processors: [contract/checkout]
    exporters: [webhook/plain, webhook/github, webhook/slack]
service:
  api: { public_url: \"https://verdict.example.com/ \" }
";
    let config = load_str(text, &env(&[("GITHUB_DISPATCH_TOKEN", "ghp_x")])).expect("valid");
    let webhooks: Vec<(WebhookFormat, Option<&str>)> = config
        .exporters
        .iter()
        .filter_map(|e| match &e.kind {
            ExporterKind::Webhook(w) => Some((w.format, w.token.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        webhooks,
        [
            (WebhookFormat::Json, None),
            (WebhookFormat::Github, Some("ghp_x")),
            (WebhookFormat::Slack, None),
        ]
    );
    assert_eq!(
        config.service.public_url.as_deref(),
        Some("https://verdict.example.com")
    );
}

#[test]
fn tls_blocks_are_checked_with_their_files() {
    let dir = std::env::temp_dir().join(format!("verdict-tls-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let file = |f: &str| dir.join(f).display().to_string();
    let text = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc: {{ tls: {{ cert_file: \"{missing}\", ca_file: x, min_version: \"1.1\" }} }}\n      http: {{ tls: {{ cert_file: \"{bad}\", key_file: \"{bad}\", client_ca_file: \"{bad}\", reload_interval: 0s }} }}\nprocessors:\n  contract/checkout:\n    max_p95_latency_ms: 120\npipelines:\n  checkout:\n    receivers: [otlp]\n    processors: [contract/checkout]\nservice:\n  api: {{ tls: {{ key_file: \"{missing}\" }} }}\n",
        missing = file("missing.pem"),
        bad = not_pem.display(),
    );
    let lines = err_lines(&text);
    let want = [
        "receivers.otlp.protocols.grpc.tls.key_file: required",
        "receivers.otlp.protocols.grpc.tls.ca_file: is for clients",
        "receivers.otlp.protocols.grpc.tls.min_version: must be \"1.2\" or \"1.3\", got \"1.1\"",
        "receivers.otlp.protocols.grpc.tls.cert_file: cannot read",
        "receivers.otlp.protocols.http.tls.reload_interval:",
        "receivers.otlp.protocols.http.tls.cert_file:",
        "receivers.otlp.protocols.http.tls.key_file:",
        "receivers.otlp.protocols.http.tls.client_ca_file:",
        "service.api.tls.cert_file: required",
    ];
    for w in want {
        assert!(
            lines.iter().any(|l| l.starts_with(w)),
            "{w:?} not in {lines:#?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_files_that_do_not_make_a_server_are_refused_by_validation() {
    let dir = std::env::temp_dir().join(format!("verdict-tls-pair-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let other = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let cert_file = write("cert.pem", &cert.pem());
    let good_key = write("key.pem", &key.serialize_pem());
    let wrong_key = write("other.pem", &other.serialize_pem());
    let encrypted = write(
        "enc.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let file = |key: &str| {
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc: {{ tls: {{ cert_file: \"{cert_file}\", key_file: \"{key}\" }} }}\nprocessors:\n  contract/checkout:\n    max_p95_latency_ms: 120\npipelines:\n  checkout:\n    receivers: [otlp]\n    processors: [contract/checkout]\n"
        )
    };
    ok(&file(&good_key));
    let lines = err_lines(&file(&wrong_key));
    let mismatch = format!(
        "receivers.otlp.protocols.grpc.tls.key_file: does not make a TLS server with cert_file: \
         {wrong_key} is not the private key of the certificate in {cert_file} (a key of another \
         pair, or a tampered file)"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&mismatch)),
        "{mismatch:?} not in {lines:#?}"
    );
    let lines = err_lines(&file(&encrypted));
    assert!(
        lines.iter().any(|l| l.contains("encrypted private key")),
        "{lines:#?}"
    );
    // A chain with the listener's certificate second: the order is wrong,
    // not the key.
    let first = rcgen::CertificateParams::new(vec!["ca".to_string()])
        .expect("params")
        .self_signed(&other)
        .expect("cert");
    let reversed = write("reversed.pem", &format!("{}{}", first.pem(), cert.pem()));
    let lines = err_lines(&file(&good_key).replace(&cert_file, &reversed));
    let order = format!(
        "receivers.otlp.protocols.grpc.tls.key_file: does not make a TLS server with cert_file: \
         the listener's certificate must come first in {reversed}: {good_key} is the key of its \
         certificate 2 of 2"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&order)),
        "{order:?} not in {lines:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn with_http_listener(listener: &str) -> String {
    MINIMAL.replace(
        "protocols: { grpc: }",
        &format!("protocols: {{ grpc: , http: {listener} }}"),
    )
}

#[test]
fn cors_is_read_with_lower_case_origins_and_headers() {
    let config = ok(&with_http_listener(
        "{ cors: { allowed_origins: [\"https://App.example.com\", \"https://*.example.org\", \"*\"], \
         allowed_headers: [X-Tenant, \"*\"], max_age: 7200 } }",
    ));
    let ReceiverKind::Otlp(otlp) = &config.receivers[0].kind else {
        panic!("an OTLP receiver");
    };
    assert_eq!(
        otlp.http_cors,
        Some(CorsSpec {
            allowed_origins: vec![
                "https://app.example.com".into(),
                "https://*.example.org".into(),
                "*".into()
            ],
            allowed_headers: vec!["x-tenant".into(), "*".into()],
            max_age: Some(Duration::from_secs(7200)),
        })
    );
    let single = ok(&with_http_listener(
        "{ cors: { allowed_origins: \"http://localhost:*\" } }",
    ));
    let ReceiverKind::Otlp(otlp) = &single.receivers[0].kind else {
        panic!("an OTLP receiver");
    };
    let cors = otlp.http_cors.as_ref().expect("cors");
    assert_eq!(cors.allowed_headers, Vec::<String>::new());
    assert_eq!(cors.max_age, None);
    assert!(ok(MINIMAL).receivers.iter().all(|r| match &r.kind {
        ReceiverKind::Otlp(o) => o.http_cors.is_none(),
        _ => true,
    }));
}

#[test]
fn cors_problems_are_reported_with_their_paths() {
    let lines = err_lines(&with_http_listener(
        "{ cors: { allowed_origins: [\"example.com\", \"https://a.example.com/\", \"https://*.*.example\", \"https://ok.example\"], \
         allowed_headers: [\"bad header\"], max_age: -1, allowd: 1 } }",
    ));
    let at = "receivers.otlp.protocols.http.cors";
    for (path, words) in [
        (format!("{at}.allowed_origins[0]"), "is not an origin"),
        (format!("{at}.allowed_origins[1]"), "no path"),
        (format!("{at}.allowed_origins[2]"), "more than one *"),
        (format!("{at}.allowed_headers[0]"), "is not a header name"),
        (format!("{at}.max_age"), ""),
        (format!("{at}.allowd"), ""),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&path) && l.contains(words)),
            "{path} {words:?} in {lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("allowed_origins[3]")),
        "{lines:#?}"
    );
    let lines = err_lines(&with_http_listener("{ cors: { max_age: 60 } }"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{at}.allowed_origins")) && l.contains("required")),
        "{lines:#?}"
    );
    let lines = err_lines(&MINIMAL.replace(
        "protocols: { grpc: }",
        "protocols: { grpc: { cors: { allowed_origins: [\"*\"] } } }",
    ));
    assert!(
        lines.iter().any(|l| l.starts_with("receivers.otlp.protocols.grpc.cors") && l.contains("OTLP/HTTP")),
        "{lines:#?}"
    );
}

#[test]
fn pipeline_files_are_read_up_to_a_bound() {
    let dir = std::env::temp_dir().join(format!("verdict-bound-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.yaml");
    let mut text = String::from("# ");
    text.push_str(&"x".repeat(super::MAX_CONFIG_BYTES as usize));
    std::fs::write(&big, &text).unwrap();
    let e = super::load_file(&big).unwrap_err().to_string();
    assert!(e.contains("larger than 4 MiB"), "{e}");
    // A device that never ends is cut at the bound, not read for ever.
    let zero = std::path::Path::new("/dev/zero");
    if zero.exists() {
        let e = super::load_file(zero).unwrap_err().to_string();
        assert!(e.contains("larger than 4 MiB"), "{e}");
    }
    let latin1 = dir.join("latin1.yaml");
    std::fs::write(&latin1, b"receivers: \xff\n").unwrap();
    let e = super::load_file(&latin1).unwrap_err().to_string();
    assert!(e.contains("not UTF-8"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `.` and `..` are dot segments in a URL: a run of `contract/..` could
/// not be opened, so they are refused as names.
#[test]
fn dot_names_are_refused() {
    for name in [".", ".."] {
        let text = with_contract("    max_p95_latency_ms: 100")
            .replace("contract/checkout", &format!("contract/{name}"));
        let errors = err_lines(&text);
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("\"{name}\" cannot be a name"))),
            "{errors:?}"
        );
    }
    ok(&with_contract("    max_p95_latency_ms: 100").replace("contract/checkout", "contract/v1.2"));
}
