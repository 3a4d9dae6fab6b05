//! The engine task as a cluster leader whose claim was taken.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::clock::SystemClock;
use crate::config::{ContractSpec, Thresholds};
use crate::model::Subject;
use crate::storage::cluster::Claim;
use crate::storage::testing::{spec, TestDatabase};
use crate::storage::SqlStore;

/// A manual rollback sent to a leader whose claim another instance has
/// taken is not stored, so it must not be answered as done: the caller
/// is told to send it again, and the run stays as it was.
#[tokio::test]
async fn a_manual_decision_a_fenced_leader_could_not_store_is_refused() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Arc::new(
        SqlStore::open_postgres(&spec(&db.url, "a"))
            .await
            .expect("opens"),
    );
    let old = Claim {
        pipeline: "p".into(),
        leader: "a#1#1".into(),
    };
    let new = Claim {
        pipeline: "p".into(),
        leader: "b#1#1".into(),
    };
    store.claim(&old, 0, 1).await.expect("claims");
    store.claim(&new, 0, 2).await.expect("takes the claim");

    let contract = ContractSpec {
        subject_by: vec!["service.version".into()],
        span_kinds: vec![2],
        ..ContractSpec::with_thresholds(
            "checkout",
            Thresholds {
                max_p95_latency_ms: Some(100.0),
                ..Thresholds::default()
            },
        )
    };
    let clock: crate::clock::SharedClock = Arc::new(SystemClock);
    let now = clock.now();
    let engine = Engine::new(
        vec![contract],
        &crate::runs::engine::tests::window_spec(),
        1,
        Vec::new(),
        Default::default(),
        now,
    );
    let (_input_tx, input) = mpsc::channel(1);
    let (_command_tx, commands) = mpsc::channel(1);
    let (_ack_tx, acks) = mpsc::channel(1);
    let mut task = EngineTask {
        pipeline: "p".into(),
        engine,
        input,
        commands,
        acks,
        store: store.clone(),
        health: Default::default(),
        workers: HashMap::new(),
        clock,
        claim: Some(LeaderClaim {
            store: store.clone(),
            claim: old,
            judged: 0,
            fenced: Default::default(),
        }),
    };
    let series = SeriesKey {
        contract: 0,
        subject: Subject::new(vec![("service.version".into(), "2.0".into())]),
    };
    task.handle_all(vec![EngineInput::SeriesSeen { series, ts: now }], &mut 0)
        .await;
    assert!(task.fenced(), "the first commit finds the claim taken");

    let (reply, answer) = oneshot::channel();
    task.command(Command {
        action: ManualAction::Rollback,
        contract: "checkout".into(),
        subject: "2.0".into(),
        reason: Some("bad".into()),
        reply,
    })
    .await;
    let answer = answer.await.expect("answered");
    assert!(
        matches!(answer, Err(ManualError::NotLeader(ref m)) if m.contains("not stored") && !m.contains("  ")),
        "{answer:?}"
    );
    assert_eq!(
        store.current("checkout", "2.0").await.expect("reads"),
        None,
        "nothing was stored"
    );
}
