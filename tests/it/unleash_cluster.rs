//! Canary stepping on the real unleash-server by three `verdict` instances
//! on one PostgreSQL database, each configured with the same `unleash`
//! exporter: the leader decides each step, one instance at a time
//! delivers it (the outbox lease), and Unleash applies every change once.
//!
//! Needs what `unleash.rs` needs (Node.js, `tests/unleash` packages) and a
//! PostgreSQL for verdict (skipped with one line without one, see
//! `storage::testing`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection, Row};
use verdict::storage::testing::TestDatabase;

use crate::durable::{post_spans, Verdict};
use crate::unleash::{exporter, pipeline_with, Database, UnleashServer, ADMIN_TOKEN};
use crate::TempDir;

const FLAG: &str = "checkout-2.0.0";

/// Sends spans of the good canary `2.0.0` to each of `targets` in turn,
/// every 100 ms, until `stop`.
async fn traffic(targets: Vec<SocketAddr>, stop: Arc<AtomicBool>) {
    let mut next = 0;
    while !stop.load(Ordering::SeqCst) {
        post_spans(targets[next % targets.len()], "2.0.0", 10, 20).await;
        next += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum over `scrapes` of `verdict_flag_changes_total` with `outcome`.
fn flag_changes(scrapes: &[String], outcome: &str) -> f64 {
    scrapes
        .iter()
        .flat_map(|m| m.lines())
        .filter(|l| l.starts_with("verdict_flag_changes_total{"))
        .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Three instances, one Unleash exporter each on the same flag, spans of
/// a good canary spread over all three: the flag steps 5 → 10 → 25 → 50
/// → 100 and the run is PROMOTED, as every instance's API shows; each
/// flag change the leader decided (one per step, and the promotion's
/// confirmation of 100 %) was delivered once over all the instances
/// (counted once in the instances' metrics), and Unleash's own
/// event log shows each value set once, in order, and the flag enabled
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_applies_each_step_to_unleash_once() {
    let Some(pg) = TestDatabase::create().await else {
        return;
    };
    let db = Database::new("cluster");
    let unleash = UnleashServer::launch(&db, 0);
    unleash.create_flag(FLAG).await;
    let dir = TempDir::new("unleash-cluster");
    let single = pipeline_with(
        &dir,
        "size: 2s, allowed_lateness: 300ms",
        "    pass_windows: 2\n    min_samples: 20",
        &exporter(
            "checkout",
            &unleash.url(),
            ADMIN_TOKEN,
            "checkout-{service.version}",
        ),
        &["unleash/checkout"],
    );
    let text = std::fs::read_to_string(&single).expect("read");
    let sqlite = format!("  storage: \"{}\"", crate::durable::sqlite(&dir.0));
    assert!(text.contains(&sqlite), "{text}");
    let nodes: Vec<Verdict> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let file = dir.0.join(format!("{name}.yaml"));
            let yaml = text.replace(
                &sqlite,
                &format!(
                    "  storage: \"{}\"\n  checkpoint_interval: 500ms\n  postgres: {{ instance: {name}, grace: 300ms }}",
                    pg.url
                ),
            );
            std::fs::write(&file, yaml).expect("write");
            Verdict::start(&file)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(traffic(
        nodes.iter().map(|n| n.http).collect(),
        stop.clone(),
    ));

    // The steps as one follower's API shows them (the shared state).
    let mut seen: Vec<u64> = Vec::new();
    let deadline = std::time::Instant::now() + crate::unleash::WAIT;
    let run = loop {
        let run = nodes[2].run("2.0.0").await;
        if let Some(p) = run["rollouts"][0]["percent"].as_u64() {
            if seen.last() != Some(&p) {
                seen.push(p);
            }
        }
        if run["state"] == "PROMOTED" && run["rollouts"][0]["applied"] == true {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::SeqCst);
    sender.await.expect("traffic");
    assert_eq!(seen, [5, 10, 25, 50, 100], "{run}");
    assert_eq!(unleash.flag(FLAG).await, ("100".to_string(), true));
    for node in &nodes[..2] {
        let other = node.run("2.0.0").await;
        assert_eq!(other["state"], "PROMOTED", "{other}");
        assert_eq!(other["rollouts"][0]["percent"], 100, "{other}");
    }

    // Every flag change verdict stored, delivered once over all instances.
    let mut conn = sqlx::PgConnection::connect(&pg.url)
        .await
        .expect("connects");
    let changes = sqlx::query(
        "SELECT state, attempts, payload FROM outbox WHERE payload IS NOT NULL ORDER BY created_at",
    )
    .fetch_all(&mut conn)
    .await
    .expect("outbox");
    let rows: Vec<(String, i64, u64)> = changes
        .iter()
        .map(|r| {
            let payload: Value =
                serde_json::from_str(&r.get::<String, _>("payload")).unwrap_or_default();
            (
                r.get("state"),
                r.get("attempts"),
                payload["percent"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    // One change per step, and the PROMOTED run's final value.
    let percents: Vec<u64> = rows.iter().map(|(_, _, p)| *p).collect();
    assert_eq!(percents, [5, 10, 25, 50, 100, 100], "{rows:?}");
    assert!(
        rows.iter().all(|(s, a, _)| s == "delivered" && *a >= 1),
        "{rows:?}"
    );
    let mut scrapes = Vec::new();
    for node in &nodes {
        scrapes.push(crate::scrape(node.prometheus).await);
    }
    assert_eq!(
        flag_changes(&scrapes, "delivered"),
        rows.len() as f64,
        "{scrapes:?}"
    );
    // (An attempt Unleash did not answer in time would be a `retry`, not
    // a second delivery: only what was applied counts here.)
    for outcome in ["superseded", "failed"] {
        assert_eq!(flag_changes(&scrapes, outcome), 0.0, "{outcome}");
    }

    // Unleash's own log: the rollout was set once per step, upwards.
    let unleash_url = crate::unleash::PG
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{}", db.name()))
        .expect("url");
    let mut unleash_db = sqlx::PgConnection::connect(&unleash_url)
        .await
        .expect("connects to Unleash's database");
    let events = sqlx::query(
        "SELECT type, COALESCE(data::text, '') AS data FROM events WHERE feature_name = $1 \
         AND type IN ('feature-strategy-update', 'feature-environment-enabled', \
         'feature-environment-disabled') ORDER BY id",
    )
    .bind(FLAG)
    .fetch_all(&mut unleash_db)
    .await
    .expect("events");
    let log: Vec<String> = events
        .iter()
        .map(|r| {
            let kind: String = r.get("type");
            let data: Value = serde_json::from_str(&r.get::<String, _>("data")).unwrap_or_default();
            match data["parameters"]["rollout"].as_str() {
                Some(rollout) => rollout.to_string(),
                None => kind,
            }
        })
        .collect();
    // Unleash logs a change of value only: the promotion's 100 % again
    // is no event.
    assert_eq!(
        log,
        ["5", "feature-environment-enabled", "10", "25", "50", "100"]
    );
    drop(nodes);
    unleash.stop();
}
