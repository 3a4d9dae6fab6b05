//! The newcomer's path: what a new user meets on a fresh clone, tried as
//! they would: the API read with curl (`?pretty`), and the commands and
//! files the README points them at.

use crate::{config, start};

/// `?pretty` indents the JSON of every API endpoint, errors included;
/// without it the answer stays one compact line. The status page (HTML)
/// is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_indents_the_api_json_and_the_default_stays_compact() {
    let server = start(&config("    max_p95_latency_ms: 100", "size: 1s")).await;
    let api = server.api;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("http://{api}{path}"))
                .send()
                .await
                .expect("GET");
            let status = resp.status().as_u16();
            let kind = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default();
            (status, kind, resp.text().await.expect("body"))
        }
    };
    for (path, status) in [
        ("/api/v1/runs", 200),
        ("/api/v1/runs/checkout/checkout/2.0.0", 200),
        ("/api/v1/deliveries", 200),
        ("/api/v1/runs/nope", 404),
        ("/healthz", 200),
    ] {
        let (got, kind, compact) = get(path.to_string()).await;
        assert_eq!(got, status, "{path}: {compact}");
        assert!(kind.starts_with("application/json"), "{path}: {kind}");
        assert_eq!(compact.lines().count(), 1, "{path} is compact: {compact}");
        let sep = if path.contains('?') { '&' } else { '?' };
        for flag in ["pretty", "pretty=true", "pretty=1"] {
            let (got, kind, indented) = get(format!("{path}{sep}{flag}")).await;
            assert_eq!(got, status, "{path}?{flag}");
            assert!(
                kind.starts_with("application/json"),
                "{path}?{flag}: {kind}"
            );
            assert!(
                indented.lines().count() > 2 && indented.contains("\n  \""),
                "{path}?{flag} is indented: {indented}"
            );
            let a: serde_json::Value = serde_json::from_str(&compact).expect("JSON");
            let b: serde_json::Value = serde_json::from_str(&indented).expect("JSON");
            // The same answer, but for the clock it reads.
            if a.get("as_of").is_none() {
                assert_eq!(a, b, "{path}?{flag}");
            }
        }
        for flag in ["pretty=false", "pretty=0", "pretty=FALSE", "pretty=False"] {
            let (_, _, off) = get(format!("{path}{sep}{flag}")).await;
            assert_eq!(off.lines().count(), 1, "{path}?{flag}: {off}");
        }
    }
    // Query parameters of the endpoint still apply next to it.
    let (status, _, body) = get("/api/v1/runs?limit=x&pretty".to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\n  \"error\""), "{body}");
    // HTML is not JSON: untouched.
    let (status, kind, page) = get("/?pretty".to_string()).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(page.contains("<html"), "{page}");
    server
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .expect("stops");
}

/// `verdict validate --print-config` prints the effective configuration —
/// overrides (in the exportable spelling too) and defaults in, secrets out
/// — as a file that `verdict validate` accepts again; `verdict run` logs
/// the same windows and contracts when it starts.
#[test]
fn print_config_shows_overrides_and_defaults_and_validates_again() {
    let dir = crate::TempDir::new("print-config");
    let out =
        crate::verdict_command(["validate", "-c", "pipelines/default.yaml", "--print-config"])
            .env("VERDICT__PROCESSORS__WINDOW__SIZE", "5s")
            .env("VERDICT__PROCESSORS__CONTRACT_DEFAULT__MIN_SAMPLES", "42")
            .env("VERDICT__SERVICE__API__TOKEN", "s3cret-api-token")
            // A new key with `/` and `.`: a name only `env` (not a shell's
            // `export`) can pass, spelled as the README says.
            .env(
                "VERDICT__PROCESSORS__CONTRACT/DEFAULT__MATCH__DEPLOYMENT.ENVIRONMENT",
                "prod",
            )
            .output()
            .expect("verdict validate runs");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.starts_with("# pipelines/default.yaml: valid (1 pipeline(s), 1 contract(s))\n"),
        "{printed}"
    );
    for expected in [
        "    size: \"5s\"\n",
        "    min_samples: 42\n",
        "    token: \"<redacted>\"\n",
        "    stream_expiry: \"15m\"\n",
        "  contract/default:\n",
        "      deployment.environment: \"prod\"\n",
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} missing:\n{printed}"
        );
    }
    assert!(!printed.contains("s3cret-api-token"), "{printed}");

    let file = dir.0.join("effective.yaml");
    std::fs::write(&file, &printed).expect("write");
    let again = crate::verdict_command(["validate", "-c"])
        .arg(&file)
        .env_remove("VERDICT__PROCESSORS__WINDOW__SIZE")
        .output()
        .expect("verdict validate runs");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let reprinted = crate::verdict_command(["validate", "--print-config", "-c"])
        .arg(&file)
        .output()
        .expect("verdict validate runs");
    let reprinted = String::from_utf8_lossy(&reprinted.stdout);
    // The same configuration, but for the header naming the file.
    let body = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&reprinted), body(&printed));
}

/// The start-up log names the effective windows and contracts.
#[test]
fn run_logs_the_effective_windows_and_contracts() {
    let dir = crate::TempDir::new("startup-log");
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(
        &file,
        crate::durable::pipeline("memory:", &[], "    max_error_rate_percent: 2"),
    )
    .expect("write");
    let verdict = crate::durable::Verdict::start_with(
        &file,
        &[("VERDICT__PROCESSORS__CONTRACT_CHECKOUT__VERSION", "3")],
    );
    let lines = verdict.stderr.lock().expect("lock").clone();
    let configured: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "Pipeline configured.")
        .collect();
    assert_eq!(configured.len(), 1, "{lines:#?}");
    let line = &configured[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["fields"]["pipeline"], "checkout", "{line}");
    assert_eq!(
        line["fields"]["window"], "1s windows, judged 200ms after they end",
        "{line}"
    );
    assert_eq!(
        line["fields"]["contracts"],
        "contract/checkout v3 (spans, subject service.version, sequential alpha 0.05): p95 <= 100ms, errors <= 2%, min_samples 1",
        "{line}"
    );
    verdict.terminate();
}

/// The shipped default pipeline on loopback port 0, in memory, with 1 s
/// windows: the walkthrough's server, made fit for a test.
fn default_pipeline_for_tests() -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/default.yaml"),
    )
    .expect("read");
    let replaced = text
        .replace("0.0.0.0:4317", "127.0.0.1:0")
        .replace("0.0.0.0:4318", "127.0.0.1:0")
        .replace("0.0.0.0:9464", "127.0.0.1:0")
        .replace("127.0.0.1:8686", "127.0.0.1:0")
        .replace("storage: sqlite://data/verdict.db", "storage: \"memory:\"")
        .replace("size: 60s", "size: 1s")
        .replace("allowed_lateness: 10s", "allowed_lateness: 300ms");
    for gone in ["0.0.0.0", "8686", "sqlite://", "60s"] {
        assert!(!replaced.contains(gone), "{gone} left in:\n{replaced}");
    }
    replaced
}

/// `verdict demo` speaks OTLP/HTTP to a real `verdict run` of the default
/// pipeline: the current release and a good canary are PROMOTED, a bad
/// canary is ROLLED_BACK — with nothing but the server binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_traffic_gets_a_good_canary_promoted_and_a_bad_one_rolled_back() {
    let dir = crate::TempDir::new("demo");
    let file = dir.0.join("default.yaml");
    std::fs::write(&file, default_pipeline_for_tests()).expect("write");
    let verdict = crate::durable::Verdict::start(&file);
    let endpoint = format!("http://{}", verdict.http);
    let demo = |canary: &str, version: &str| {
        crate::verdict_command([
            "demo",
            "--canary",
            canary,
            "--canary-version",
            version,
            "--endpoint",
            &endpoint,
            "--rate",
            "200",
            "--duration",
            "40s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("verdict demo starts")
    };
    let mut good = demo("good", "2.1.0");
    let mut bad = demo("bad", "2.2.0");
    let api = verdict.api;
    let canary = crate::final_run_default(api, "checkout/2.2.0").await;
    assert_eq!(canary["state"], "ROLLED_BACK", "{canary}");
    let reason = canary["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("p95 latency") || reason.contains("error rate"),
        "{reason}"
    );
    for subject in ["checkout/2.1.0", "checkout/2.0.0"] {
        let run = crate::final_run_default(api, subject).await;
        assert_eq!(run["state"], "PROMOTED", "{subject}: {run}");
    }
    for child in [&mut good, &mut bad] {
        let _ = child.kill();
        let _ = child.wait();
    }
    verdict.terminate();
}

/// `verdict demo` against nothing says where it tried and what to check.
#[test]
fn demo_without_a_server_says_so() {
    let port = crate::durable::free_port();
    let out = crate::verdict_command([
        "demo",
        "--endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--duration",
        "5s",
    ])
    .output()
    .expect("verdict demo runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot send to http://127.0.0.1:{port}/v1/traces"))
            && stderr.contains("is `verdict run` listening there?"),
        "{stderr}"
    );
}

/// A YAML file as JSON (through the YAML reader verdict itself uses).
fn yaml(path: &std::path::Path) -> serde_json::Value {
    use config::Source as _;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let map = config::File::from_str(&text, config::FileFormat::Yaml)
        .collect()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    config::Value::from(map)
        .try_deserialize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `deploy/compose.yaml`'s wiring (no image can be pulled here, so the
/// stack is not started; `promtool` checks the Prometheus configuration):
/// every file a service mounts exists, verdict listens on the ports it
/// publishes and Prometheus scrapes, Grafana's data source points at the
/// Prometheus service and its dashboard provider at the mounted
/// `dashboards/verdict.json`, and verdict's data volume is where its
/// default storage lands in the image.
#[test]
fn compose_file_wires_verdict_prometheus_and_grafana() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let deploy = root.join("deploy");
    let compose = yaml(&deploy.join("compose.yaml"));
    let services = &compose["services"];
    for service in ["verdict", "prometheus", "grafana"] {
        assert!(
            services[service].is_object(),
            "no service {service}: {compose}"
        );
    }
    // Each bind mount's source exists; named volumes are declared.
    let mut mounts: std::collections::HashMap<String, std::path::PathBuf> = Default::default();
    for (name, service) in services.as_object().expect("services") {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume.as_str().expect("short volume syntax");
            let parts: Vec<&str> = spec.split(':').collect();
            let (source, target) = (parts[0], parts[1]);
            if source.starts_with('.') {
                let path = deploy.join(source);
                assert!(
                    path.exists(),
                    "{name} mounts {source}, which does not exist"
                );
                mounts.insert(format!("{name}:{target}"), path);
            } else {
                assert!(
                    compose["volumes"].get(source).is_some(),
                    "{name} mounts the undeclared volume {source}"
                );
            }
        }
    }
    let ports = |service: &str| -> Vec<String> {
        services[service]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.as_str().expect("port").to_string())
            .collect()
    };

    // verdict: the mounted pipeline, with the compose environment, is
    // valid and listens on what is published and scraped.
    let verdict = &services["verdict"];
    let command: Vec<&str> = verdict["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|c| c.as_str().expect("arg"))
        .collect();
    assert_eq!(command[..2], ["run", "-c"]);
    let pipeline = &mounts[&format!("verdict:{}", command[2])];
    let env: std::collections::HashMap<String, String> = verdict["environment"]
        .as_object()
        .expect("environment")
        .iter()
        .map(|(k, v)| {
            // `${VAR:-}` defaults of the compose file: empty here.
            let value = v.as_str().expect("value");
            let value = if value.starts_with("${") { "" } else { value };
            (k.clone(), value.to_string())
        })
        .collect();
    let text = std::fs::read_to_string(pipeline).expect("pipeline");
    let cfg = verdict::config::load_str(&text, &env).expect("the mounted pipeline is valid");
    let port_of = |endpoint: &str| endpoint.rsplit(':').next().expect("port").to_string();
    let mut listening = vec![port_of(&cfg.service.api_endpoint)];
    assert!(
        cfg.service.api_endpoint.starts_with("0.0.0.0:"),
        "the API must be reachable"
    );
    for r in &cfg.receivers {
        if let verdict::config::ReceiverKind::Otlp(otlp) = &r.kind {
            listening.extend(otlp.grpc_endpoint.iter().map(|e| port_of(e)));
            listening.extend(otlp.http_endpoint.iter().map(|e| port_of(e)));
        }
    }
    let mut metrics_port = None;
    for e in &cfg.exporters {
        if let verdict::config::ExporterKind::Prometheus { endpoint, .. } = &e.kind {
            metrics_port = Some(port_of(endpoint));
            listening.push(port_of(endpoint));
        }
    }
    for published in ports("verdict") {
        let (host, container) = published.split_once(':').expect("HOST:CONTAINER");
        assert_eq!(host, container, "{published}");
        assert!(
            listening.contains(&container.to_string()),
            "{published} is not a verdict port ({listening:?})"
        );
    }
    assert_eq!(
        ports("verdict").len(),
        listening.len(),
        "every port published"
    );
    // The data volume is where sqlite://data/verdict.db lands in the image.
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("WORKDIR /var/lib/verdict"),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains("install -d -o verdict -g verdict /var/lib/verdict/data"),
        "the data directory must belong to the verdict user"
    );
    assert!(verdict["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .any(|v| v
            .as_str()
            .is_some_and(|v| v.ends_with(":/var/lib/verdict/data"))));
    assert_eq!(cfg.service.storage.to_string(), "sqlite://data/verdict.db");

    // Prometheus scrapes verdict's metrics port, and promtool accepts it.
    let prometheus_yml = &mounts["prometheus:/etc/prometheus/prometheus.yml"];
    let scrape = yaml(prometheus_yml);
    let targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"].to_string();
    assert!(
        targets.contains(&format!(
            "verdict:{}",
            metrics_port.expect("prometheus exporter")
        )),
        "{targets}"
    );
    let check = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(prometheus_yml)
        .output()
        .expect("promtool runs (Debian package prometheus)");
    assert!(check.status.success(), "{check:?}");
    assert!(ports("prometheus").contains(&"9090:9090".to_string()));

    // Grafana: the data source is the Prometheus service, and the
    // dashboard provider reads the mounted dashboards.
    let provisioning = &mounts["grafana:/etc/grafana/provisioning"];
    let datasources = yaml(&provisioning.join("datasources/prometheus.yaml"));
    let source = &datasources["datasources"][0];
    assert_eq!(source["type"], "prometheus");
    assert_eq!(source["url"], "http://prometheus:9090");
    let providers = yaml(&provisioning.join("dashboards/verdict.yaml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let dashboards = &mounts[&format!("grafana:{path}")];
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dashboards.join("verdict.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
    assert_eq!(dashboard["templating"]["list"][0]["query"], "prometheus");
    let home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .expect("home dashboard");
    assert_eq!(home, format!("{path}/verdict.json"));
}

/// The README's send-spans examples, run against a live server: each
/// sends SERVER spans of its own release, and the run counts them all.
mod send_spans_examples {
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use crate::{config, eventually, get_json, start};

    fn example(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/otlp")
            .join(name)
    }

    /// Runs `command` (with the server's OTLP/HTTP address as
    /// `OTLP_ENDPOINT`) and waits until the run of `version` has counted
    /// `spans` samples.
    async fn sends(mut command: Command, version: &str, spans: u64) {
        // A lateness of seconds: the examples stamp their spans "now"
        // before the interpreter and the exporter start, which takes a
        // while on a busy machine.
        let server = start(&config(
            "    max_p95_latency_ms: 1000",
            "size: 1s, allowed_lateness: 5s",
        ))
        .await;
        let out = command
            .env("OTLP_ENDPOINT", format!("http://{}", server.http[0].1))
            .env("SERVICE_VERSION", version)
            .env("SPANS", spans.to_string())
            .output()
            .expect("the example runs");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let url = format!(
            "http://{}/api/v1/runs/checkout/checkout/{version}",
            server.api
        );
        let run = eventually(Duration::from_secs(30), "the spans to be counted", || {
            let url = url.clone();
            async move {
                let (_, body) = get_json(&url).await;
                (body["run"]["samples"] == spans).then_some(body)
            }
        })
        .await;
        assert_eq!(run["state"], "VALIDATING", "{run}");
        server
            .shutdown(Duration::from_secs(5))
            .await
            .expect("stops");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn curl_with_otlp_json() {
        let mut command = Command::new("bash");
        command.arg(example("send_span.sh"));
        sends(command, "2.1.0", 1).await;
    }

    /// Needs `opentelemetry-sdk` and `opentelemetry-exporter-otlp-proto-http`
    /// (installed by `.ci/run`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn python_opentelemetry_sdk() {
        let mut command = Command::new("python3");
        command.arg(example("send_spans.py"));
        sends(command, "3.0.0", 60).await;
    }

    /// The OpenTelemetry JS SDK of `tests/unleash` (`npm ci` there, as
    /// `.ci/run` does).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn node_opentelemetry_sdk() {
        let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/unleash/node_modules");
        assert!(
            modules.join("@opentelemetry/sdk-trace-base").exists(),
            "run `npm ci` in tests/unleash first (as .ci/run does)"
        );
        let mut command = Command::new("node");
        command
            .arg(example("send_spans.cjs"))
            .env("NODE_PATH", modules);
        sends(command, "4.0.0", 40).await;
    }
}

/// The README renders and points at what exists: every table is one block
/// of rows with the same number of cells under a header and a delimiter
/// row (a blank line inside a table turns the rows after it into one
/// paragraph), every repository file it names in backticks or links
/// exists, and every `verdict` subcommand its shell blocks run is one the
/// binary has.
#[test]
fn readme_tables_render_and_its_files_and_commands_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let lines: Vec<&str> = readme.lines().collect();
    let cells = |line: &str| -> usize {
        let row = line.trim().replace("\\|", "");
        let row = row.strip_prefix('|').unwrap_or(&row);
        let row = row.strip_suffix('|').unwrap_or(row);
        row.split('|').count()
    };
    let is_row = |line: &str| line.trim_start().starts_with('|');
    let mut fenced = false;
    let mut tables = 0;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !is_row(lines[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && is_row(lines[i]) {
            i += 1;
        }
        let block = &lines[start..i];
        tables += 1;
        assert!(
            block.len() >= 2
                && block[1]
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .all(|c| c.trim().trim_matches(':').chars().all(|ch| ch == '-')
                        && !c.trim().is_empty()),
            "README line {}: a table row without a header and delimiter above it (a blank line inside a table?): {}",
            start + 1,
            block[0]
        );
        let width = cells(block[0]);
        for (n, row) in block.iter().enumerate() {
            assert_eq!(
                cells(row),
                width,
                "README line {}: {} cells where the header has {width}: {row}",
                start + n + 1,
                cells(row)
            );
        }
    }
    assert!(tables >= 9, "{tables} tables");

    // Files it names.
    let mut named = Vec::new();
    for piece in readme.split(['`', '(', ')', ' ', '\n', '"']) {
        for dir in [
            "examples/",
            "deploy/",
            "pipelines/",
            "dashboards/",
            "tests/it/",
            "docs/",
        ] {
            if piece.starts_with(dir) && !piece.contains('*') && !piece.contains('…') {
                named.push(piece.trim_end_matches([',', '.', ':', ';']).to_string());
            }
        }
    }
    assert!(
        named.iter().any(|n| n == "deploy/compose.yaml"),
        "{named:?}"
    );
    for path in &named {
        let path = path.split(':').next().unwrap_or(path);
        assert!(
            root.join(path).exists(),
            "README names {path}, which does not exist"
        );
    }

    // Subcommands its shell blocks run.
    let mut subcommands = std::collections::BTreeSet::new();
    let mut in_sh = false;
    for line in &lines {
        let t = line.trim_start();
        if t.starts_with("```") {
            in_sh = t == "```sh";
            continue;
        }
        if in_sh {
            for (at, _) in line.match_indices("verdict ") {
                let before = line[..at].chars().last();
                if before.is_some_and(|c| {
                    c.is_alphanumeric() || c == '/' || c == '-' || c == '_' || c == '.'
                }) {
                    continue;
                }
                if let Some(word) = line[at + 8..].split_whitespace().next() {
                    if word.chars().all(|c| c.is_ascii_lowercase()) {
                        subcommands.insert(word.to_string());
                    }
                }
            }
        }
    }
    for expected in ["run", "demo", "probe", "simulate"] {
        assert!(subcommands.contains(expected), "{subcommands:?}");
    }
    for sub in &subcommands {
        let out = crate::verdict_command([sub.as_str(), "--help"])
            .output()
            .expect("verdict runs");
        assert!(
            out.status.success(),
            "README runs `verdict {sub}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The API answers JSON for every path under `/api/v1/`: an unknown
/// endpoint is a 404 with an `error`, and a path segment that is not UTF-8
/// a 400 with one, not an empty body or axum's plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_paths_and_bad_segments_answer_json_errors() {
    let server = start(&config("    max_p95_latency_ms: 100", "size: 1s")).await;
    let api = server.api;
    let client = reqwest::Client::new();
    for (method, path, status) in [
        ("GET", "/api/v1/nope", 404),
        ("GET", "/api/v1/", 404),
        ("POST", "/api/v1/flagger/checkout", 404),
        ("GET", "/api/v1/runs/checkout/%FF/x", 400),
        ("GET", "/api/v1/runs/%FF", 400),
        ("POST", "/api/v1/promote/checkout/%FF", 400),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = client
            .request(method, format!("http://{api}{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let kind = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        assert!(kind.starts_with("application/json"), "{path}: {kind}");
        let body: serde_json::Value =
            serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    server
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .expect("stops");
}
