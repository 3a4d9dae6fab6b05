//! `dashboards/verdict.json` against a real Prometheus (Debian's
//! `prometheus`) scraping a live verdict: every panel's query must be valid
//! PromQL, and every metric it names must be one verdict really exposes
//! (scraped and stored by Prometheus), so the dashboard cannot silently
//! show "No data" after a metric is renamed.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::durable::free_port;
use crate::{eventually, TempDir};

const DASHBOARD: &str = include_str!("../../dashboards/verdict.json");

/// A Prometheus server, stopped when dropped.
pub(crate) struct Prometheus {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` (or `PROMETHEUS`) scraping each `(job, target)`
    /// every second.
    pub(crate) fn scraping(dir: &TempDir, jobs: &[(&str, &str)]) -> Prometheus {
        let port = free_port();
        let config = dir.0.join("prometheus.yml");
        let mut yaml = String::from(
            "global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n",
        );
        for (job, target) in jobs {
            yaml.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ));
        }
        std::fs::write(&config, yaml).expect("write prometheus.yml");
        let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {binary} ({e}): install it with `apt-get install prometheus` \
                     (.ci/run does), or point PROMETHEUS at a Prometheus binary"
                )
            });
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits (up to 60 s) until `promql` has at least one series.
    pub(crate) async fn wait_for(&self, promql: &str, what: &str) {
        eventually(Duration::from_secs(60), what, || async {
            let answer = self.query(promql).await;
            answer["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
                .then_some(())
        })
        .await;
    }

    /// An instant query: Prometheus' whole answer.
    pub(crate) async fn query(&self, promql: &str) -> Value {
        let encoded: String = promql
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let resp = reqwest::get(format!("{}/api/v1/query?query={encoded}", self.url)).await;
        match resp {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(e) => serde_json::json!({"status": "unreachable", "error": e.to_string()}),
        }
    }
}

/// Every PromQL expression of the dashboard: its panels' targets and its
/// query variables, with their titles.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            out.push((title, t["expr"].as_str().unwrap_or("").to_string()));
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = v["query"]["query"].as_str() {
            // label_values(SELECTOR, LABEL): the selector is the query.
            let selector = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map_or(q, |(s, _)| s);
            out.push((format!("variable {}", v["name"]), selector.to_string()));
        }
    }
    out
}

/// The expression as Grafana would send it, with every variable at "All".
fn substituted(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$contract", ".*")
        .replace("$subject", ".*")
}

/// The metric names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("verdict_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(expr[start..end].to_string());
        i = end;
    }
    names
}

#[test]
fn the_dashboard_is_importable() {
    let d: Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    assert_eq!(d["uid"], "verdict");
    let vars = d["templating"]["list"].as_array().expect("variables");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "a Prometheus data-source variable"
    );
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate id in {p}"
        );
        assert!(p["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24), "{p}");
        if p["type"] == "row" {
            continue;
        }
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}");
            assert!(!metric_names(t["expr"].as_str().unwrap_or("")).is_empty());
        }
    }
}

/// A gauge that reads the same on every instance (from the shared tables
/// or the shared configuration): a run's, a window's, a contract's.
fn shared_gauge(name: &str) -> bool {
    (name.starts_with("verdict_run_") || name.starts_with("verdict_window_"))
        && !name.ends_with("_total")
        || name == "verdict_contract_threshold"
}

/// Every run, window and contract gauge is read through `max by (...)`:
/// several instances (or an HA pair) each expose it, so a `sum`, or no
/// aggregation at all, would count a run once per instance — a VALIDATING
/// run (2) summed over two instances reads as ROLLED_BACK (4).
#[test]
fn no_panel_sums_a_run_or_window_gauge_across_instances() {
    let d: Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let mut checked = 0;
    for (title, expr) in expressions(&d) {
        if title.starts_with("variable") {
            continue;
        }
        let mut at = 0;
        while let Some(found) = expr[at..].find("verdict_") {
            let start = at + found;
            let name: String = expr[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            at = start + name.len();
            if !shared_gauge(&name) {
                continue;
            }
            checked += 1;
            // `max by (LABELS) (` right before the metric.
            let before = expr[..start].trim_end();
            let wrapped = before
                .strip_suffix('(')
                .map(str::trim_end)
                .and_then(|b| b.strip_suffix(')'))
                .and_then(|b| b.rsplit_once('('))
                .is_some_and(|(agg, labels)| {
                    agg.split(|c: char| c.is_whitespace() || c == '(')
                        .filter(|t| !t.is_empty())
                        .rev()
                        .take(2)
                        .eq(["by", "max"])
                        && labels
                            .split(',')
                            .all(|l| !l.trim().is_empty() && l.trim() != "instance")
                });
            assert!(
                wrapped,
                "panel {title:?} reads {name} without `max by (...)`: {expr}"
            );
        }
    }
    assert!(checked >= 10, "{checked} shared gauges read");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_panel_query_runs_against_a_real_prometheus_scraping_verdict() {
    let dir = TempDir::new("dashboard");
    // Data for every family: runs and windows, a decision (and its
    // webhook), a refused request and a rejected span.
    let (v, _receiver) = crate::exposition::busy(&dir).await;

    // The same verdict under two jobs: what two instances sharing one
    // database look like to the run gauges.
    let target = v.prometheus.to_string();
    let alias = format!("localhost:{}", v.prometheus.port());
    let prometheus = Prometheus::scraping(&dir, &[("verdict", &target), ("verdict-b", &alias)]);
    let d: Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let exprs = expressions(&d);
    let names: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    // Every metric the dashboard reads has been scraped from verdict.
    for name in &names {
        let promql = format!("count({{__name__=\"{name}\"}})");
        prometheus
            .wait_for(
                &promql,
                &format!("Prometheus to hold {name} scraped from verdict"),
            )
            .await;
    }
    // Every query is valid PromQL, as Grafana sends it.
    for (title, expr) in &exprs {
        let answer = prometheus.query(&substituted(expr)).await;
        assert_eq!(
            answer["status"], "success",
            "panel {title:?}: {expr}\n{answer}"
        );
        assert!(
            answer.get("warnings").is_none(),
            "panel {title:?}: {answer}"
        );
    }
    // Each run is counted once, whatever the number of instances.
    prometheus
        .wait_for(
            "count(count by (job) (verdict_run_state)) == 2",
            "both jobs to hold the run gauges",
        )
        .await;
    let panel = |title: &str| {
        exprs
            .iter()
            .find(|(t, _)| t == title)
            .map(|(_, e)| substituted(e))
            .expect("panel")
    };
    let (_, runs) = crate::get_json(&format!("http://{}/api/v1/runs/checkout", v.api)).await;
    let runs = runs["runs"].as_array().cloned().unwrap_or_default();
    let by_state = prometheus.query(&panel("Runs by state")).await;
    let counted: f64 = by_state["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, runs.len() as f64, "{by_state}\n{runs:?}");
    let states = prometheus.query(&panel("Run state by subject")).await;
    let codes: Vec<(String, String)> = states["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["metric"]["subject"].as_str().unwrap_or("").to_string(),
                r["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(codes.len(), runs.len(), "{states}");
    // 1.0 was rolled back (4); every value is one of the four states.
    assert!(codes.contains(&("1.0".into(), "4".into())), "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|(_, c)| ["1", "2", "3", "4"].contains(&c.as_str())),
        "{codes:?}"
    );
    // The thresholds are drawn from verdict's own gauge.
    let answer = prometheus
        .query("verdict_contract_threshold{threshold=\"max_p95_latency_seconds\"}")
        .await;
    assert_eq!(answer["data"]["result"][0]["value"][1], "0.1", "{answer}");
}
