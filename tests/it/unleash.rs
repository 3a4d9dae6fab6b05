//! The `unleash` exporter against the real unleash-server (npm, started by
//! the test on PostgreSQL at 127.0.0.1:5432 in a database of its own), with
//! the real Unleash client SDK routing synthetic users to the stable or the
//! canary release and the OpenTelemetry SDK sending their spans to the real
//! verdict binary (`tests/unleash/`: `server.mjs`, `traffic.mjs`).
//!
//! Needs Node.js 20+ and the packages of `tests/unleash/package-lock.json`
//! (`npm ci` there; the test runs it when `node_modules` is missing).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::durable::Verdict;
use crate::{eventually, get_json, now_ns, TempDir};

pub(crate) const ADMIN_TOKEN: &str = "*:*.verdict-admin-secret";
pub(crate) const CLIENT_TOKEN: &str = "default:production.verdict-client-secret";
pub(crate) const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
pub(crate) const WAIT: Duration = Duration::from_secs(120);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/unleash")
}

/// `npm ci` once per test binary when the packages are not installed.
fn node_modules() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if dir().join("node_modules/unleash-server").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir())
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in tests/unleash failed");
    });
}

/// The test's own PostgreSQL database, dropped at the end.
pub(crate) struct Database(String);

impl Database {
    /// The database's name.
    pub(crate) fn name(&self) -> &str {
        &self.0
    }

    pub(crate) fn new(tag: &str) -> Database {
        Database(format!(
            "unleash_{tag}_{}_{}",
            std::process::id(),
            now_ns() % 1_000_000_000
        ))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("node")
            .arg("server.mjs")
            .current_dir(dir())
            .env("DATABASE_ADMIN_URL", PG)
            .env("DATABASE_NAME", &self.0)
            .env("DROP", "1")
            .status();
    }
}

/// A running unleash-server.
pub(crate) struct UnleashServer {
    child: Child,
    pub(crate) port: u16,
}

impl UnleashServer {
    /// Starts it on `port` (0: any) over `db`; waits until it serves.
    pub(crate) fn launch(db: &Database, port: u16) -> UnleashServer {
        node_modules();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(dir())
            .env("DATABASE_ADMIN_URL", PG)
            .env("DATABASE_NAME", &db.0)
            .env("PORT", port.to_string())
            .env("INIT_ADMIN_API_TOKENS", ADMIN_TOKEN)
            .env("INIT_BACKEND_API_TOKENS", CLIENT_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(p) = v["listening"].as_u64() {
                    let _ = tx.send(p as u16);
                }
            }
        });
        let port = rx.recv_timeout(WAIT).expect("unleash-server listens");
        UnleashServer { child, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (the process, by its id) and waits for the exit.
    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// An Admin API request.
    pub(crate) async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/api/admin{path}", self.url()))
            .header("authorization", ADMIN_TOKEN);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("admin API answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Creates `flag` (off) with one flexibleRollout strategy at 0 % in
    /// production.
    pub(crate) async fn create_flag(&self, flag: &str) {
        self.create_bare_flag(flag).await;
        self.add_strategy(flag).await;
    }

    /// Creates `flag` (off) with no strategy.
    pub(crate) async fn create_bare_flag(&self, flag: &str) {
        let (s, b) = self
            .admin(
                reqwest::Method::POST,
                "/projects/default/features",
                Some(json!({"name": flag, "type": "release"})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }

    /// Adds a flexibleRollout strategy at 0 % to `flag` in production.
    pub(crate) async fn add_strategy(&self, flag: &str) {
        let (s, b) = self
            .admin(
                reqwest::Method::POST,
                &format!("/projects/default/features/{flag}/environments/production/strategies"),
                Some(json!({"name": "flexibleRollout", "parameters": {"rollout": "0", "stickiness": "default", "groupId": flag}})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }

    /// The flag's rollout percentage and whether it is on in production.
    pub(crate) async fn flag(&self, flag: &str) -> (String, bool) {
        let (s, b) = self
            .admin(
                reqwest::Method::GET,
                &format!("/projects/default/features/{flag}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let env = b["environments"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["name"] == "production"))
            .cloned()
            .unwrap_or_default();
        let rollout = env["strategies"][0]["parameters"]["rollout"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (rollout, env["enabled"].as_bool().unwrap_or(false))
    }
}

impl Drop for UnleashServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One second of routed traffic: `(unix second, requests, to the canary)`.
type Second = (u64, u64, u64);

/// The traffic script for one flag, its per-second counts collected.
struct Traffic {
    child: Child,
    seconds: Arc<Mutex<Vec<Second>>>,
}

impl Traffic {
    fn start(
        unleash: &UnleashServer,
        verdict: &Verdict,
        flag: &str,
        canary: &str,
        canary_latency_ms: u64,
    ) -> Traffic {
        let mut child = Command::new("node")
            .arg("traffic.mjs")
            .current_dir(dir())
            .env("UNLEASH_URL", unleash.url())
            .env("UNLEASH_TOKEN", CLIENT_TOKEN)
            .env("FLAG", flag)
            .env("OTLP_URL", format!("http://{}/v1/traces", verdict.http))
            .env("STABLE_VERSION", "1.0.0")
            .env("CANARY_VERSION", canary)
            .env("CANARY_LATENCY_MS", canary_latency_ms.to_string())
            .env("PROBE_LATENCY_MS", "20")
            .env("STABLE_LATENCY_MS", "20")
            .env("RATE", "100")
            .env("PROBE_RATE", "3")
            .env("REFRESH_MS", "1000")
            .env("SECONDS", "110")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let seconds = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = seconds.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if let (Some(t), Some(n), Some(c)) =
                    (v["t"].as_u64(), v["total"].as_u64(), v["canary"].as_u64())
                {
                    sink.lock().expect("lock").push((t, n, c));
                }
            }
        });
        Traffic { child, seconds }
    }

    fn seconds(&self) -> Vec<Second> {
        self.seconds.lock().expect("lock").clone()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipeline of contract `checkout` (subject: `service.version`) driving
/// the `unleash/*` exporters of `exporters` (YAML under `exporters:`).
pub(crate) fn pipeline_with(
    dir: &TempDir,
    window: &str,
    contract: &str,
    exporters: &str,
    ids: &[&str],
) -> PathBuf {
    let file = dir.0.join("pipeline.yaml");
    let text = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:0" }}
processors:
  window: {{ {window}, shards: 1 }}
  contract/checkout:
    match: {{ service.name: checkout, service.version: "2.*" }}
    subject_by: [service.version]
    max_p95_latency_ms: 100
    decision: windows
{contract}
exporters:
  log: {{}}
  prometheus: {{ endpoint: "127.0.0.1:0" }}
{exporters}
pipelines:
  checkout:
    receivers: [otlp]
    processors: [window, contract/checkout]
    exporters: [log, prometheus, {ids}]
service:
  api: {{ endpoint: "127.0.0.1:0", token: "{api}" }}
  storage: "{storage}"
"#,
        ids = ids.join(", "),
        api = crate::durable::TOKEN,
        storage = crate::durable::sqlite(&dir.0),
    );
    std::fs::write(&file, text).expect("write");
    file
}

/// One `unleash/{id}` exporter on `url`.
pub(crate) fn exporter(id: &str, url: &str, token: &str, flag: &str) -> String {
    format!(
        r#"  unleash/{id}:
    url: {url}
    token: "{token}"
    environment: production
    flag: "{flag}"
    steps: [5, 10, 25, 50, 100]
    step_windows: 1
    refresh_interval: 1s
    timeout: 5s
    retry: {{ initial_interval: 200ms, max_interval: 1s }}
"#
    )
}

/// The pipeline: 2 s windows, the flag `checkout-{service.version}` stepped
/// every passing window after a 1 s SDK refresh interval.
fn pipeline(dir: &TempDir, unleash_url: &str, token: &str) -> PathBuf {
    pipeline_with(
        dir,
        "size: 2s, allowed_lateness: 300ms",
        "    pass_windows: 2\n    min_samples: 20",
        &exporter("checkout", unleash_url, token, "checkout-{service.version}"),
        &["unleash/checkout"],
    )
}

/// Every distinct rollout percentage the run's API showed, in order, with
/// the time it was first seen (while polling until `done`).
async fn watch(
    verdict: &Verdict,
    version: &str,
    done: impl Fn(&Value) -> bool,
) -> (Vec<(u64, u64)>, Value) {
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let run = verdict.run(version).await;
        if let Some(p) = run["rollouts"][0]["percent"].as_u64() {
            if seen.last().is_none_or(|(_, last)| *last != p) {
                seen.push((now_ns(), p));
            }
        }
        if done(&run) {
            return (seen, run);
        }
        assert!(Instant::now() < deadline, "run {version}: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn rfc3339_ns(text: &str) -> u64 {
    // `2026-12-03T10:00:01.234Z` → UNIX ns (UTC, no leap seconds).
    let (date, time) = text
        .trim_end_matches('Z')
        .split_once('T')
        .expect("RFC 3339");
    let d: Vec<i64> = date.split('-').map(|p| p.parse().expect("date")).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + day - 719_469;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().expect("time")).collect();
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let ms: i64 = format!("{frac:0<3}")[..3].parse().expect("ms");
    (secs * 1_000_000_000 + ms * 1_000_000) as u64
}

/// The canary's share per second as a line: `10:00:01 5.0% (100)`.
fn timeline(seconds: &[Second]) -> String {
    seconds
        .iter()
        .map(|(t, n, c)| {
            format!(
                "{t} {:>5.1}% ({c}/{n})",
                100.0 * *c as f64 / (*n).max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A good canary's share climbs 5 → 10 → 25 → 50 → 100 % and the run is
/// PROMOTED; a bad canary (slow under real traffic) is rolled back and its
/// share is 0 within one SDK refresh interval of Unleash applying it.
#[tokio::test(flavor = "multi_thread")]
async fn a_good_canary_steps_to_100_and_a_bad_one_back_to_0_on_the_real_unleash() {
    let db = Database::new("steps");
    let unleash = UnleashServer::launch(&db, 0);
    unleash.create_flag("checkout-2.0.0").await;
    unleash.create_flag("checkout-2.1.0").await;
    let dir = TempDir::new("unleash-steps");
    let verdict = Verdict::start(&pipeline(&dir, &unleash.url(), ADMIN_TOKEN));
    let good = Traffic::start(&unleash, &verdict, "checkout-2.0.0", "2.0.0", 20);
    let bad = Traffic::start(&unleash, &verdict, "checkout-2.1.0", "2.1.0", 300);

    let final_applied = |r: &Value| {
        (r["state"] == "PROMOTED" || r["state"] == "ROLLED_BACK")
            && r["rollouts"][0]["applied"] == true
    };
    // Both watched at once: every step of each is seen.
    let ((bad_steps, bad_run), (good_steps, good_run)) = tokio::join!(
        watch(&verdict, "2.1.0", final_applied),
        watch(&verdict, "2.0.0", final_applied)
    );
    assert_eq!(good_run["state"], "PROMOTED", "{good_run}");
    let percents: Vec<u64> = good_steps.iter().map(|(_, p)| *p).collect();
    assert_eq!(percents, [5, 10, 25, 50, 100], "{good_run}");
    assert_eq!(bad_run["state"], "ROLLED_BACK", "{bad_run}");
    assert_eq!(bad_run["rollouts"][0]["percent"], 0, "{bad_run}");
    assert_eq!(
        unleash.flag("checkout-2.0.0").await,
        ("100".to_string(), true)
    );
    assert_eq!(unleash.flag("checkout-2.1.0").await.0, "0");

    // Traffic after Unleash applied each final value, one refresh interval
    // (1 s) plus the second being counted later: all canary, or none.
    let good_at = rfc3339_ns(
        good_run["rollouts"][0]["applied_at"]
            .as_str()
            .expect("applied_at"),
    );
    let bad_at = rfc3339_ns(
        bad_run["rollouts"][0]["applied_at"]
            .as_str()
            .expect("applied_at"),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = |seconds: Vec<Second>, at: u64| -> Vec<Second> {
        seconds
            .into_iter()
            .filter(|(t, _, _)| t * 1_000_000_000 >= at + 2_000_000_000)
            .collect()
    };
    let good_after = after(good.seconds(), good_at);
    let bad_after = after(bad.seconds(), bad_at);
    assert!(!good_after.is_empty() && !bad_after.is_empty());
    assert!(
        good_after.iter().all(|(_, n, c)| n == c && *n > 0),
        "{}",
        timeline(&good_after)
    );
    assert!(
        bad_after.iter().all(|(_, n, c)| *c == 0 && *n > 0),
        "{}",
        timeline(&bad_after)
    );
    // While at 5 %, roughly 5 % of users got the canary.
    let five = (good_steps[0].0, good_steps[1].0);
    let at_five: Vec<Second> = good
        .seconds()
        .into_iter()
        .filter(|(t, _, _)| {
            t * 1_000_000_000 >= five.0 + 2_000_000_000 && (t + 1) * 1_000_000_000 <= five.1
        })
        .collect();
    let (n, c) = at_five.iter().fold((0, 0), |(n, c), s| (n + s.1, c + s.2));
    assert!(
        n == 0 || (c as f64 / n as f64) < 0.15,
        "{}",
        timeline(&at_five)
    );

    let deliveries = get_json(&verdict.api("/api/v1/deliveries")).await.1;
    assert_eq!(deliveries["deliveries"], json!([]), "{deliveries}");
    // The rollout gauges pass promtool like every other family.
    let metrics = crate::scrape(verdict.prometheus).await;
    for family in ["verdict_rollout_percent", "verdict_rollout_applied"] {
        assert!(
            metrics.contains(&format!("\n{family}{{")),
            "{family}:\n{metrics}"
        );
    }
    crate::exposition::promtool_check(&metrics);
    eprintln!(
        "good canary steps (unix ns, percent): {good_steps:?}\nbad canary steps: {bad_steps:?}\n\
         good canary, share per second:\n{}\nbad canary, share per second:\n{}",
        timeline(&good.seconds()),
        timeline(&bad.seconds())
    );
    drop((good, bad));
    drop(verdict);
    unleash.stop();
    let _ = eventually(Duration::from_secs(1), "nothing", || async { Some(()) }).await;
}
