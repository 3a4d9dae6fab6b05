//! The `unleash` exporter when things go wrong, against the real
//! unleash-server (`unleash.rs` starts it): Unleash stopped and started
//! again on the same port, tokens it refuses, a flag or a strategy that does
//! not exist, a rollback decided while Unleash is down; and verdict itself
//! stopped mid-rollout (SIGTERM, `kill -9`), including a crash after Unleash
//! applied a change but before verdict recorded it. Every assertion is on
//! what an operator sees: the binary's JSON logs, `GET /api/v1/deliveries`,
//! `/readyz`, `/metrics`, the run's API JSON, and the flag in Unleash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::durable::Verdict;
use crate::unleash::{
    exporter, pipeline_with as pipeline, Database, UnleashServer, ADMIN_TOKEN, CLIENT_TOKEN, WAIT,
};
use crate::{eventually, get_json, now_ns, TempDir};

/// The deliveries still pending or failed.
async fn deliveries(v: &Verdict) -> Vec<Value> {
    let (status, body) = get_json(&v.api("/api/v1/deliveries")).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

/// The pending delivery that changes `flag`.
async fn delivery_of(v: &Verdict, flag: &str) -> Option<Value> {
    deliveries(v)
        .await
        .into_iter()
        .find(|d| d["event"]["flag"] == flag)
}

/// `/readyz`'s answer.
async fn readyz(v: &Verdict) -> Value {
    let (status, body) = get_json(&v.api("/readyz")).await;
    assert_eq!(
        status, 200,
        "degraded Unleash must not make verdict unready: {body}"
    );
    body
}

/// The value of the sample `name{labels}` in `/metrics`, if present.
async fn metric(v: &Verdict, name_and_labels: &str) -> Option<f64> {
    crate::scrape(v.prometheus)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// The JSON log lines whose message is `message`.
fn logged(v: &Verdict, message: &str) -> Vec<Value> {
    v.stderr
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

async fn post(v: &Verdict, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(v.api(path))
        .bearer_auth(crate::durable::TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const UNAPPLIED: &str = "verdict_unleash_unapplied_rollbacks{exporter=\"unleash/checkout\"}";

/// Unleash stopped and started again on the same port (the change made
/// meanwhile and a rollback decided meanwhile are both applied, and the
/// unapplied-rollback gauge reads 1 then 0); a token Unleash does not know
/// (401) and one it does not allow on the Admin API (403); a flag that does
/// not exist and one without a flexibleRollout strategy (each applied once
/// created). Each failure is a log line, the delivery's `last_error` and an
/// entry of `/readyz`'s `degraded`; verdict stays ready throughout.
#[tokio::test(flavor = "multi_thread")]
async fn unleash_down_refused_tokens_and_missing_flags_are_reported_and_recovered() {
    let db = Database::new("faults");
    let mut unleash = UnleashServer::launch(&db, 0);
    let port = unleash.port;
    for flag in [
        "checkout-2.0.0",
        "checkout-2.3.0",
        "denied-2.0.0",
        "forbidden-2.0.0",
    ] {
        unleash.create_flag(flag).await;
    }
    // 2.1.0: no flag; 2.2.0: a flag without a strategy.
    unleash.create_bare_flag("checkout-2.2.0").await;
    let url = unleash.url();
    let exporters = [
        exporter("checkout", &url, ADMIN_TOKEN, "checkout-{service.version}"),
        exporter(
            "denied",
            &url,
            "*:*.not-a-token",
            "denied-{service.version}",
        ),
        exporter(
            "forbidden",
            &url,
            CLIENT_TOKEN,
            "forbidden-{service.version}",
        ),
    ]
    .concat();
    let dir = TempDir::new("unleash-faults");
    let file = pipeline(
        &dir,
        "size: 2s, allowed_lateness: 300ms",
        "    pass_windows: 100\n    min_samples: 1000",
        &exporters,
        &["unleash/checkout", "unleash/denied", "unleash/forbidden"],
    );
    let v = Verdict::start(&file);
    for version in ["2.0.0", "2.1.0", "2.2.0"] {
        v.spans(version, 5, 10).await;
    }
    v.run_until("2.0.0", "the first step applied", |r| {
        r["rollouts"][0]["exporter"] == "unleash/checkout" && r["rollouts"][0]["applied"] == true
    })
    .await;
    assert_eq!(unleash.flag("checkout-2.0.0").await, ("5".into(), true));

    // Each problem in the deliveries, in /readyz and in the logs.
    let problems = [
        ("checkout-2.1.0", "404", "no such flag"),
        (
            "checkout-2.2.0",
            "has no flexibleRollout strategy",
            "set strategy_id",
        ),
        ("denied-2.0.0", "401", "Unleash refused the token"),
        ("forbidden-2.0.0", "403", "may not change flags in project"),
    ];
    for (flag, a, b) in problems {
        let d = eventually(WAIT, &format!("the error of {flag}"), || async {
            delivery_of(&v, flag)
                .await
                .filter(|d| d["attempts"].as_u64() >= Some(2))
        })
        .await;
        let error = d["last_error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(a) && error.contains(b), "{flag}: {d}");
        assert_eq!(d["state"], "pending", "retried, never given up: {d}");
        let ready = readyz(&v).await;
        let exporter = format!("unleash/{}", flag.split('-').next().expect("prefix"));
        assert_eq!(
            ready["degraded"][format!("exporter {exporter} flag {flag}")],
            error.as_str(),
            "{ready}"
        );
        let line = logged(&v, "Flag change not applied; will retry.")
            .into_iter()
            .find(|l| l["fields"]["flag"] == flag)
            .unwrap_or_else(|| panic!("no log line for {flag}"));
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["fields"]["error"], error.as_str(), "{line}");
    }
    let retries = metric(
        &v,
        "verdict_flag_changes_total{exporter=\"unleash/denied\",outcome=\"retry\"}",
    )
    .await;
    assert!(retries >= Some(2.0), "{retries:?}");
    assert_eq!(metric(&v, UNAPPLIED).await, Some(0.0));
    // The checkout flag that was applied has no problem listed.
    assert!(readyz(&v).await["degraded"]
        .get("exporter unleash/checkout flag checkout-2.0.0")
        .is_none());

    // The missing flag and strategy, once created, are applied too.
    unleash.create_flag("checkout-2.1.0").await;
    unleash.add_strategy("checkout-2.2.0").await;
    for flag in ["checkout-2.1.0", "checkout-2.2.0"] {
        eventually(WAIT, &format!("{flag} applied"), || async {
            delivery_of(&v, flag).await.is_none().then_some(())
        })
        .await;
        assert_eq!(unleash.flag(flag).await, ("5".into(), true));
        let ready = readyz(&v).await;
        assert!(
            ready["degraded"]
                .get(format!("exporter unleash/checkout flag {flag}"))
                .is_none(),
            "{ready}"
        );
    }
    // Unleash down: a new run's first step and a rollback wait (nothing
    // else is pending for this exporter: the gauge must fall to 0 when the
    // rollback is applied, not at the worker's next idle round).
    unleash.stop();
    v.spans("2.3.0", 5, 10).await;
    let first_step = eventually(WAIT, "2.3.0's first step failing", || async {
        delivery_of(&v, "checkout-2.3.0")
            .await
            .filter(|d| d["attempts"].as_u64() >= Some(1))
    })
    .await;
    assert_eq!(first_step["event"]["percent"], 5, "{first_step}");
    let (status, body) = post(
        &v,
        "/api/v1/rollback/checkout/2.0.0",
        json!({"reason": "bad canary"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rollback = eventually(WAIT, "the rollback's failed attempt", || async {
        delivery_of(&v, "checkout-2.0.0")
            .await
            .filter(|d| d["attempts"].as_u64() >= Some(1))
    })
    .await;
    assert_eq!(rollback["event"]["rollback"], true, "{rollback}");
    assert_eq!(rollback["event"]["percent"], 0, "{rollback}");
    let error = rollback["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("Unleash at {url} unreachable")),
        "{rollback}"
    );
    assert_eq!(metric(&v, UNAPPLIED).await, Some(1.0));
    let line = eventually(WAIT, "the rollback's error line", || async {
        logged(
            &v,
            "Rollback not applied to the flag yet; retrying until it is.",
        )
        .into_iter()
        .find(|l| l["fields"]["flag"] == "checkout-2.0.0")
    })
    .await;
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(
        readyz(&v).await["degraded"]["exporter unleash/checkout flag checkout-2.0.0"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable"))
    );
    // Still retried a few seconds later, still counted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = delivery_of(&v, "checkout-2.0.0")
        .await
        .expect("still pending");
    assert!(
        later["attempts"].as_u64() > rollback["attempts"].as_u64(),
        "{later}"
    );
    assert_eq!(metric(&v, UNAPPLIED).await, Some(1.0));

    // Unleash back on the same port: both applied, nothing lost.
    unleash = UnleashServer::launch(&db, port);
    eventually(WAIT, "the rollback and the first step applied", || async {
        let left = deliveries(&v).await;
        let pending = |f: &str| left.iter().any(|d| d["event"]["flag"] == f);
        (!pending("checkout-2.0.0") && !pending("checkout-2.3.0")).then_some(())
    })
    .await;
    assert_eq!(unleash.flag("checkout-2.0.0").await, ("0".into(), true));
    assert_eq!(unleash.flag("checkout-2.3.0").await, ("5".into(), true));
    assert_eq!(metric(&v, UNAPPLIED).await, Some(0.0));
    let run = v
        .run_until("2.0.0", "the rollback acknowledged", |r| {
            r["rollouts"][0]["applied"] == true
        })
        .await;
    assert_eq!(run["state"], "ROLLED_BACK");
    assert_eq!(run["rollouts"][0]["phase"], "rolled_back", "{run}");
    assert_eq!(run["rollouts"][0]["percent"], 0, "{run}");
    let applied = logged(&v, "Flag changed.");
    assert!(
        applied
            .iter()
            .any(|l| l["fields"]["flag"] == "checkout-2.0.0"
                && l["fields"]["value"] == "rollout 0%"
                && l["fields"]["change_id"] == rollback["event_id"]),
        "{applied:?}"
    );
    let ready = readyz(&v).await;
    assert!(
        ready["degraded"]
            .get("exporter unleash/checkout flag checkout-2.0.0")
            .is_none(),
        "{ready}"
    );

    // The refused tokens are still refused, still listed (once their
    // exporter has retried since Unleash came back: until then the entry
    // still says Unleash was unreachable).
    eventually(WAIT, "the denied token refused again", || async {
        let ready = readyz(&v).await;
        ready["degraded"]["exporter unleash/denied flag denied-2.0.0"]
            .as_str()
            .is_some_and(|e| e.contains("401"))
            .then_some(())
    })
    .await;
    drop(v);
    unleash.stop();
}

/// Synthetic traffic of release 2.0.0 (all fast), 20 spans every 200 ms to
/// whichever verdict process is current, while `on`.
struct Spans {
    on: Arc<AtomicBool>,
    to: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Spans {
    fn start(v: &Verdict) -> Spans {
        let on = Arc::new(AtomicBool::new(true));
        let to = Arc::new(Mutex::new(format!("http://{}/v1/traces", v.http)));
        let (flag, url) = (on.clone(), to.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let deadline = tokio::time::Instant::now() + WAIT;
            while tokio::time::Instant::now() < deadline {
                if flag.load(Ordering::SeqCst) {
                    let now = now_ns();
                    let spans: Vec<Value> = (0..20u64)
                        .map(|i| {
                            let end = now - i * 1000;
                            json!({"kind": 2, "name": "GET /",
                                   "startTimeUnixNano": (end - 20_000_000).to_string(),
                                   "endTimeUnixNano": end.to_string()})
                        })
                        .collect();
                    let body = json!({"resourceSpans": [{
                        "resource": {"attributes": [
                            {"key": "service.name", "value": {"stringValue": "checkout"}},
                            {"key": "service.version", "value": {"stringValue": "2.0.0"}}]},
                        "scopeSpans": [{"spans": spans}]
                    }]});
                    let target = url.lock().expect("lock").clone();
                    // Refused while verdict restarts: that traffic is lost,
                    // as it would be without a retrying client.
                    let _ = client
                        .post(target)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Spans { on, to, task }
    }

    fn to(&self, v: &Verdict) {
        *self.to.lock().expect("lock") = format!("http://{}/v1/traces", v.http);
    }

    fn sending(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }
}

impl Drop for Spans {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pass-through HTTP proxy in front of the real Unleash that records every
/// rollout value verdict sets and, when armed, lets the next `POST …/on`
/// reach Unleash but never returns Unleash's answer: the change is applied,
/// and verdict has not heard so (it is then killed).
#[derive(Clone, Default)]
struct Proxy {
    /// The rollout values PATCHed, in order.
    values: Arc<Mutex<Vec<String>>>,
    armed: Arc<AtomicBool>,
    /// Set when an armed `…/on` was applied and its answer withheld.
    withheld: Arc<AtomicBool>,
}

impl Proxy {
    async fn serve(&self, upstream: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let local = listener.local_addr().expect("addr");
        let me = self.clone();
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let (me, client, upstream) = (me.clone(), client.clone(), upstream.clone());
                async move {
                    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
                    if method == axum::http::Method::PATCH {
                        let patch: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let value = patch[0]["value"].as_str().unwrap_or("?").to_string();
                        me.values.lock().expect("lock").push(value);
                    }
                    let mut req = client
                        .request(method.clone(), format!("{upstream}{path}"))
                        .body(body.to_vec());
                    for name in ["authorization", "content-type", "accept"] {
                        if let Some(h) = headers.get(name) {
                            req = req.header(name, h.as_bytes());
                        }
                    }
                    let answer = req.send().await.expect("unleash answers the proxy");
                    let status = answer.status().as_u16();
                    let bytes = answer.bytes().await.unwrap_or_default();
                    if method == axum::http::Method::POST
                        && path.ends_with("/on")
                        && me.armed.swap(false, Ordering::SeqCst)
                    {
                        me.withheld.store(true, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                    axum::http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(bytes))
                        .expect("a valid answer")
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{local}")
    }

    fn values(&self) -> Vec<u64> {
        self.values
            .lock()
            .expect("lock")
            .iter()
            .map(|v| v.parse().expect("a number"))
            .collect()
    }
}

/// verdict stopped mid-rollout, by SIGTERM and by `kill -9` right after
/// Unleash applied a step but before verdict heard so: each restart resumes
/// the rollout at its step with its hold (same change, same applied time,
/// same counted windows), the flag never goes backwards, the change caught
/// by the crash is delivered again with the same id (harmless: the value is
/// absolute) and counted once, and the rollout goes on 5 → 10 → 25 → 50 →
/// 100 to PROMOTED.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_survives_sigterm_and_kill_9_without_moving_the_flag_back() {
    let db = Database::new("restarts");
    let unleash = UnleashServer::launch(&db, 0);
    unleash.create_flag("checkout-2.0.0").await;
    let proxy = Proxy::default();
    let url = proxy.serve(unleash.url()).await;
    let dir = TempDir::new("unleash-restarts");
    let file = pipeline(
        &dir,
        "size: 1s, allowed_lateness: 200ms",
        "    pass_windows: 2\n    min_samples: 20\n    min_window_samples: 10",
        &exporter("checkout", &url, ADMIN_TOKEN, "checkout-{service.version}"),
        &["unleash/checkout"],
    );
    let mut v = Verdict::start(&file);
    let spans = Spans::start(&v);
    let rollout = |run: &Value| run["rollouts"][0].clone();
    v.run_until("2.0.0", "step 2 applied", |r| {
        r["rollouts"][0]["step"].as_u64() >= Some(2) && r["rollouts"][0]["applied"] == true
    })
    .await;

    // SIGTERM with the traffic paused (no window can count meanwhile): the
    // restarted process shows the same rollout, hold included.
    spans.sending(false);
    let before = eventually(WAIT, "the rollout to settle", || async {
        let a = rollout(&v.run("2.0.0").await);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (a == rollout(&v.run("2.0.0").await)).then_some(a)
    })
    .await;
    assert!(v.terminate().success());
    v = Verdict::start(&file);
    let after = rollout(&v.run("2.0.0").await);
    for field in [
        "step",
        "percent",
        "change_id",
        "applied",
        "applied_at",
        "counted_windows",
        "next_step_at",
    ] {
        assert_eq!(
            after[field], before[field],
            "{field}: {before} then {after}"
        );
    }
    let percent = before["percent"].as_u64().expect("percent");
    assert_eq!(
        unleash.flag("checkout-2.0.0").await,
        (percent.to_string(), true)
    );
    spans.to(&v);
    spans.sending(true);
    v.run_until("2.0.0", "the next step after the restart", |r| {
        r["rollouts"][0]["percent"].as_u64() > Some(percent)
    })
    .await;

    // kill -9 between Unleash applying the next step and verdict hearing it.
    proxy.armed.store(true, Ordering::SeqCst);
    eventually(WAIT, "a step applied, its answer withheld", || async {
        proxy.withheld.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let caught = rollout(&v.run("2.0.0").await);
    assert_eq!(caught["applied"], false, "{caught}");
    let caught_percent = caught["percent"].as_u64().expect("percent");
    assert_eq!(
        unleash.flag("checkout-2.0.0").await,
        (caught_percent.to_string(), true)
    );
    v.kill();
    v = Verdict::start(&file);
    spans.to(&v);
    let resumed = v
        .run_until("2.0.0", "the caught step applied again", |r| {
            r["rollouts"][0]["applied"] == true
        })
        .await;
    let resumed = rollout(&resumed);
    assert_eq!(resumed["change_id"], caught["change_id"], "{resumed}");
    assert_eq!(resumed["step"], caught["step"], "{resumed}");
    let again = logged(&v, "Flag changed.");
    assert!(
        again
            .iter()
            .any(|l| l["fields"]["change_id"] == caught["change_id"]),
        "redelivered with the same id: {again:?}"
    );
    assert_eq!(
        unleash.flag("checkout-2.0.0").await,
        (caught_percent.to_string(), true)
    );

    let done = v
        .run_until("2.0.0", "PROMOTED and applied", |r| {
            r["state"] == "PROMOTED" && r["rollouts"][0]["applied"] == true
        })
        .await;
    assert_eq!(rollout(&done)["percent"], 100, "{done}");
    assert_eq!(unleash.flag("checkout-2.0.0").await, ("100".into(), true));
    assert!(deliveries(&v).await.is_empty());
    drop(spans);

    // Every value verdict ever set, in order: never lower than the one
    // before; each step once, except the one redelivered after the crash
    // and 100 set again on PROMOTED.
    let values = proxy.values();
    eprintln!("rollout values set, in order: {values:?} (caught by the crash: {caught_percent})");
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    let mut steps = values.clone();
    steps.dedup();
    assert_eq!(steps, [5, 10, 25, 50, 100], "{values:?}");
    let twice = values.iter().filter(|&&p| p == caught_percent).count();
    assert_eq!(
        twice,
        if caught_percent == 100 { 3 } else { 2 },
        "{values:?}"
    );
    drop(v);
    unleash.stop();
}
