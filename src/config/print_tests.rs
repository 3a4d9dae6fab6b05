use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::summary::{summary, PipelineSummary};
use crate::config::{load_str, ValidatedConfig};

fn load(text: &str, env: &HashMap<String, String>) -> ValidatedConfig {
    match load_str(text, env) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\n---\n{text}"),
    }
}

/// Prints `config`, loads the output again, and checks it is the same
/// configuration (secrets redacted); returns the output.
fn round_trip(config: &ValidatedConfig, what: &str) -> String {
    let printed = to_yaml(config, &["a header".to_string()]);
    let again = match load_str(&printed, &HashMap::new()) {
        Ok(c) => c,
        Err(e) => panic!("{what}: the printed configuration does not load:\n{e}\n---\n{printed}"),
    };
    assert_eq!(again, redacted(config), "{what}:\n{printed}");
    // Printing is stable: the printed file prints as itself.
    assert_eq!(
        to_yaml(&again, &["a header".to_string()]),
        printed,
        "{what}"
    );
    printed
}

/// The shipped default pipeline's text.
fn default_pipeline() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/default.yaml"))
        .expect("read")
}

/// An environment of `(name, value)` pairs.
fn env_of(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_and_valid_fixture_file_round_trips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = yaml_files(&root.join("pipelines"));
    files.extend(yaml_files(&root.join("tests/fixtures/config/valid")));
    assert!(files.len() >= 8, "{files:?}");
    let env = env_of(&[("FIXTURE_TOKEN", "t0k"), ("VERDICT_API_TOKEN", "")]);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let config = match load_str(&text, &env) {
            Ok(c) => c,
            // A fixture that needs variables of its own is covered by the
            // config tests; here only what loads as shipped.
            Err(_) => continue,
        };
        round_trip(&config, &file.display().to_string());
    }
}

const EVERYTHING: &str = r#"
receivers:
  otlp/edge:
    protocols:
      grpc: { endpoint: "127.0.0.1:4317" }
      http:
        cors:
          allowed_origins: ["https://app.example.com", "https://*.example.org"]
          allowed_headers: [Authorization]
          max_age: 600
    max_request_bytes: 1000
    auth: { bearer_token: ingest-secret }
  probe/synthetic:
    url: "https://user:pass@probe.example:8443/health?x=1"
    method: POST
    headers: { Authorization: "Bearer probe-secret", X-Api-Key: k3y, Accept: "text/plain" }
    body: "{\"a\": 1, \"price\": \"$$5\", \"template\": \"$${env:HOME}\"}"
    duration: 90s
    concurrency: 3
    timeout: 1500ms
    rate: 12.5
    interval: 10m
    allow_4xx: true
    resource: { service.name: checkout, service.version: "2.0.0", "on": "yes" }
processors:
  window/fast: { size: 5s, allowed_lateness: 1s, shards: 3, max_streams: 7 }
  window/slow: { size: 2m }
  contract/checkout:
    version: 4
    match: { service.name: "check*" }
    subject_by: [service.name, service.version]
    max_p95_latency_ms: 120.5
    max_error_rate_percent: 2
    min_conversion_rate_percent: 15
    min_samples: 40
    decision: windows
    pass_windows: 4
    fail_windows: 2
    min_window_samples: 9
    max_duration: 36h
    on_timeout: promote
    run_idle_timeout: 30m
    on_idle: timeout
    dry_run: true
    baseline:
      match: { service.version: "1.*" }
      max_p95_latency_increase_percent: 10
      max_error_rate_increase_points: 0.5
  contract/metrics:
    source: metrics
    span_kinds: [SERVER, INTERNAL]
    latency_metric: my.latency
    max_p99_latency_ms: 900
    alpha: 0.01
exporters:
  prometheus: { endpoint: "127.0.0.1:9999" }
  log: {}
  webhook/deploy:
    url: "https://ci:hunter2@ci.example/hook"
    on: [VALIDATING, ROLLED_BACK]
    secret: hmac-secret
    token: bearer-secret
    retry: { initial_interval: 2s, max_interval: 1m, max_elapsed: 2h }
  webhook/team:
    url: "https://hooks.slack.com/services/T000/B000/XXXX"
    format: slack
  webhook/gh:
    url: "https://api.github.com/repos/acme/shop/dispatches"
    format: github
    token: github-secret
  unleash/flags:
    url: "https://unleash.example:4242"
    token: unleash-secret
    environment: production
    flag: "checkout-{service.version}"
    steps: [10, 50, 100]
    on_rollback: disable
pipelines:
  edge:
    receivers: [otlp/edge, probe/synthetic]
    processors: [window/fast, contract/checkout]
    exporters: [prometheus, log, webhook/deploy, webhook/team, webhook/gh, unleash/flags]
  synthetic:
    receivers: [otlp/edge]
    processors: [window/slow, contract/metrics]
    exporters: [log]
service:
  api: { endpoint: "127.0.0.1:8687", token: api-secret, public_url: "https://verdict.example" }
  storage: "memory:"
  max_inflight_bytes: 64MiB
  checkpoint_interval: 1s 500ms
  metric_expiry: 2h
"#;

#[test]
fn every_kind_of_setting_round_trips_with_its_secrets_redacted() {
    let config = load(EVERYTHING, &HashMap::new());
    let printed = round_trip(&config, "EVERYTHING");
    for secret in [
        "ingest-secret",
        "probe-secret",
        "k3y",
        "pass@",
        "hunter2",
        "hmac-secret",
        "bearer-secret",
        "T000/B000/XXXX",
        "github-secret",
        "unleash-secret",
        "api-secret",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    for kept in [
        "\"https://user:redacted@probe.example:8443/health?x=1\"",
        "\"https://ci:redacted@ci.example/hook\"",
        "\"https://hooks.slack.com/redacted\"",
        "accept: \"text/plain\"",
        "allowed_origins: [\"https://app.example.com\", \"https://*.example.org\"]",
        "max_age: 600",
        "token: \"<redacted>\"",
        "secret: \"<redacted>\"",
        "bearer_token: \"<redacted>\"",
        // Defaults are written out.
        "max_clock_skew: \"5m\"",
        "run_idle_timeout: \"30m\"",
        "pass_windows: 4",
        // `shards` as written: 3, and 0 (one per core) for the default.
        "shards: 3\n",
        "shards: 0\n",
        "window/2:",
        "processors: [\"window/2\", \"contract/metrics\"]",
    ] {
        assert!(printed.contains(kept), "{kept} missing:\n{printed}");
    }
    // Sequential contracts get no streak settings, which validation
    // would refuse next to them.
    let metrics = &printed[printed.find("contract/metrics:").expect("contract")..];
    let metrics = &metrics[..metrics.find("exporters:").expect("section")];
    assert!(!metrics.contains("pass_windows"), "{metrics}");
}

#[test]
fn overrides_and_defaults_show_in_the_printed_configuration() {
    let text = default_pipeline();
    let env = env_of(&[
        ("VERDICT__PROCESSORS__WINDOW__SIZE", "5s"),
        ("VERDICT__PROCESSORS__CONTRACT_DEFAULT__MIN_SAMPLES", "77"),
        ("VERDICT_API_TOKEN", "from-env"),
    ]);
    let config = load(&text, &env);
    let printed = round_trip(&config, "default.yaml with overrides");
    assert!(printed.contains("    size: \"5s\"\n"), "{printed}");
    assert!(printed.contains("    min_samples: 77\n"), "{printed}");
    assert!(!printed.contains("from-env"), "{printed}");
    // A default the file does not state.
    assert!(printed.contains("stream_expiry: \"15m\""), "{printed}");
}

/// Substitution runs on the printed text too: a value whose effective text
/// holds `${…}` or `$` (an environment override is not substituted) is
/// printed with `$$` and reads back as itself, not as the variable.
#[test]
fn dollars_in_effective_values_read_back_as_themselves() {
    let text = default_pipeline();
    let env = env_of(&[
        (
            "VERDICT__PROCESSORS__CONTRACT_DEFAULT__MATCH__SERVICE_NAME",
            "${env:HOME}",
        ),
        (
            "VERDICT__SERVICE__API__PUBLIC_URL",
            "https://ops.example/$$/",
        ),
        ("HOME", "/root"),
    ]);
    let config = load(&text, &env);
    let printed = round_trip(&config, "default.yaml with dollars");
    assert!(printed.contains("\"$${env:HOME}\""), "{printed}");
    assert!(printed.contains("https://ops.example/$$$$\""), "{printed}");
}

#[test]
fn keys_that_yaml_would_read_otherwise_are_quoted() {
    assert_eq!(scalar("service.name"), "service.name");
    assert_eq!(scalar("contract/a-b"), "contract/a-b");
    for key in [
        "on", "yes", "No", "null", "1.0", "-x", "a b", "a:b", "", "#x",
    ] {
        assert!(scalar(key).starts_with('"'), "{key}");
    }
    assert_eq!(quoted("a\"b\\c\n"), r#""a\"b\\c\n""#);
}

#[test]
fn the_start_up_summary_names_windows_and_contracts() {
    let text = default_pipeline();
    let env = env_of(&[("VERDICT__PROCESSORS__WINDOW__SIZE", "5s")]);
    let lines = summary(&load(&text, &env));
    assert_eq!(
        lines,
        [PipelineSummary {
            pipeline: "default".into(),
            window: "5s windows, judged 10s after they end".into(),
            contracts: vec![
                "contract/default v1 (spans, subject service.name/service.version, sequential alpha 0.05): p95 <= 500ms, errors <= 1%, min_samples 300".into()
            ],
        }]
    );
    let everything = summary(&load(EVERYTHING, &HashMap::new()));
    assert_eq!(
        everything[0].contracts[0],
        "contract/checkout v4 (spans, subject service.name/service.version, windows: pass 4 / fail 2, dry run): p95 <= 120.5ms, errors <= 2%, conversions >= 15%, baseline service.version=1.* (p95 +10%, errors +0.5 points), min_samples 40"
    );
}

#[test]
fn postgres_storage_round_trips_with_its_password_redacted() {
    let text = "receivers:\n  otlp:\n    protocols:\n      http: {}\nprocessors:\n  contract/c:\n    max_p95_latency_ms: 100\npipelines:\n  p:\n    receivers: [otlp]\n    processors: [contract/c]\nservice:\n  storage: \"postgres://verdict:pg-secret@db.example:5433/verdict\"\n  postgres: { pool_size: 4, statement_timeout: 5s, instance: one, grace: 3s, tls: { mode: require } }\n".to_string();
    let config = load(&text, &HashMap::new());
    let printed = round_trip(&config, "postgres");
    assert!(!printed.contains("pg-secret"), "{printed}");
    for kept in [
        "  storage: \"postgres://verdict:redacted@db.example:5433/verdict\"\n",
        "    pool_size: 4\n",
        "    instance: \"one\"\n",
        "      mode: \"require\"\n",
    ] {
        assert!(printed.contains(kept), "{kept} missing:\n{printed}");
    }
    // Defaults of service.postgres are written out too.
    let text = text.replace(
        "  postgres: { pool_size: 4, statement_timeout: 5s, instance: one, grace: 3s, tls: { mode: require } }\n",
        "",
    );
    let printed = round_trip(&load(&text, &HashMap::new()), "postgres defaults");
    assert!(
        printed.contains("    statement_timeout: \"30s\"\n"),
        "{printed}"
    );
}

#[test]
fn credentials_in_user_names_query_parameters_and_public_urls_are_redacted() {
    let text = r#"
receivers:
  otlp:
    protocols:
      http: {}
  probe/p:
    url: "https://probe.example/health?api_key=PROBEKEY&x=1"
    resource: { service.name: s, service.version: v }
processors:
  contract/c:
    max_p95_latency_ms: 100
exporters:
  webhook/gh:
    url: "https://GHUSERTOKEN@api.github.com/repos/acme/shop/dispatches"
    format: github
    token: t
  webhook/q:
    url: "https://ci.example/hook?token=QUERYTOKEN&keep=yes"
  webhook/slack-as-json:
    url: "https://hooks.slack.com/services/T1/B1/SLACKPATH"
pipelines:
  p:
    receivers: [otlp, probe/p]
    processors: [contract/c]
    exporters: [webhook/gh, webhook/q, webhook/slack-as-json]
service:
  api: { public_url: "https://apiuser:PUBLICPASS@verdict.example" }
"#;
    let printed = round_trip(&load(text, &HashMap::new()), "credentials");
    for secret in [
        "PROBEKEY",
        "GHUSERTOKEN",
        "QUERYTOKEN",
        "SLACKPATH",
        "PUBLICPASS",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    for kept in [
        "\"https://probe.example/health?api_key=redacted&x=1\"",
        "\"https://redacted@api.github.com/repos/acme/shop/dispatches\"",
        "\"https://ci.example/hook?token=redacted&keep=yes\"",
        "\"https://hooks.slack.com/redacted\"",
        "\"https://apiuser:redacted@verdict.example\"",
    ] {
        assert!(printed.contains(kept), "{kept} missing:\n{printed}");
    }
}
