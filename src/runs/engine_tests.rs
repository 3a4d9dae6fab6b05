//! Engine tests: windows judged in order once every shard's watermark has
//! passed their deadline, empty windows, final runs, timeouts, baselines.

use super::*;
use crate::config::{BaselineSpec, Thresholds};
use crate::model::series::BASELINE_SUBJECT;
use crate::model::{ClosedWindow, Subject};
use crate::storage::{MemoryStore, RunStore};
use futures_util::FutureExt as _;
use std::sync::Arc;
use std::time::Duration;

const S: u64 = 1_000_000_000;

fn spec() -> ContractSpec {
    ContractSpec {
        subject_by: vec!["service.version".into()],
        span_kinds: vec![2],
        min_samples: 20,
        min_window_samples: 5,
        pass_windows: 2,
        // These tests are about windows and streaks; sequential decisions
        // have their own below.
        decision: crate::config::Decision::Windows,
        ..ContractSpec::with_thresholds(
            "checkout",
            Thresholds {
                max_p95_latency_ms: Some(100.0),
                max_error_rate_percent: Some(5.0),
                min_conversion_rate_percent: None,
                ..Thresholds::default()
            },
        )
    }
}

pub(crate) fn window_spec() -> WindowSpec {
    WindowSpec {
        size: Duration::from_secs(10),
        allowed_lateness: Duration::from_secs(2),
        max_clock_skew: Duration::from_secs(60),
        shards: 2,
        shards_per_core: false,
        queue_size: 16,
        max_series: 100,
        max_streams: 100,
        stream_expiry: Duration::from_secs(600),
    }
}

fn key(v: &str) -> SeriesKey {
    SeriesKey {
        contract: 0,
        subject: Subject::new(vec![("service.version".into(), v.into())]),
    }
}

fn closed_accum(n: u64, ms: f64) -> Accum {
    let mut accum = Accum::default();
    for _ in 0..n {
        let _ = accum.latency.insert(ms);
    }
    accum.samples = n;
    accum
}

fn closed(k: &SeriesKey, start: u64, n: u64, ms: f64, errors: u64) -> EngineInput {
    let mut accum = closed_accum(n, ms);
    accum.errors = errors;
    EngineInput::Closed(ClosedWindow {
        series: k.clone(),
        window: Window::containing(start, 10 * S),
        accum,
    })
}

/// A memory store's futures are ready at once.
fn sync<T>(f: crate::storage::StoreFuture<'_, T>) -> T {
    f.now_or_never()
        .expect("memory store is synchronous")
        .expect("memory store")
}

/// The test's engine and the store its commits go to.
struct Harness {
    engine: Engine,
    store: Arc<MemoryStore>,
}

impl Harness {
    fn handle(&mut self, input: EngineInput, now: u64) -> Vec<VerdictEvent> {
        let commits = self.engine.handle(input, now);
        sync(self.store.commit(&commits, now));
        commits.into_iter().filter_map(|c| c.event).collect()
    }
}

fn watermark(h: &mut Harness, now: u64) -> Vec<VerdictEvent> {
    let mut events = h.handle(EngineInput::Watermark { shard: 0, now }, now);
    events.extend(h.handle(EngineInput::Watermark { shard: 1, now }, now));
    events
}

fn seed(store: &MemoryStore) -> EngineSeed {
    let runs = sync(store.current_runs("checkout"));
    let last_windows = runs
        .iter()
        .filter_map(|r| {
            sync(store.windows(&r.run_id, 1))
                .into_iter()
                .next()
                .map(|w| (r.run_id.clone(), w))
        })
        .collect();
    EngineSeed {
        runs,
        last_windows,
        ..EngineSeed::default()
    }
}

fn subscribers() -> Vec<Subscriber> {
    vec![
        Subscriber {
            exporter: "log".into(),
            on: RunState::ALL.to_vec(),
            triggers: false,
        },
        Subscriber {
            exporter: "webhook/final".into(),
            on: vec![RunState::Promoted, RunState::RolledBack],
            triggers: true,
        },
    ]
}

/// An engine started at 100 s from `seed`, committing to `store`.
fn resumed(seed: EngineSeed, store: &Arc<MemoryStore>) -> Harness {
    let engine = Engine::new(
        vec![spec()],
        &window_spec(),
        2,
        subscribers(),
        seed,
        100 * S,
    );
    Harness {
        engine,
        store: store.clone(),
    }
}

fn engine(spec: ContractSpec, store: Arc<MemoryStore>) -> Harness {
    let seed = seed(&store);
    let engine = Engine::new(vec![spec], &window_spec(), 2, subscribers(), seed, 100 * S);
    Harness { engine, store }
}

fn seen(h: &mut Harness, k: &SeriesKey, ts: u64) -> Vec<VerdictEvent> {
    h.handle(
        EngineInput::SeriesSeen {
            series: k.clone(),
            ts,
        },
        ts,
    )
}

#[test]
fn promotes_after_consecutive_passing_windows() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    let k = key("2.0");
    let ev = seen(&mut e, &k, 101 * S);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].previous_state, ev[0].run.state),
        (RunState::Pending, RunState::Validating)
    );

    e.handle(closed(&k, 100 * S, 10, 20.0, 0), 112 * S);
    // One shard's watermark is not enough.
    let ev = e.handle(
        EngineInput::Watermark {
            shard: 0,
            now: 112 * S,
        },
        112 * S,
    );
    assert!(ev.is_empty());
    let run_id = sync(store.current("checkout", "2.0")).expect("run").run_id;
    assert!(sync(store.windows(&run_id, 10)).is_empty());
    assert!(watermark(&mut e, 112 * S).is_empty());
    e.handle(closed(&k, 110 * S, 10, 20.0, 0), 122 * S);
    let ev = watermark(&mut e, 122 * S);
    assert_eq!(ev.len(), 1);
    let event = &ev[0];
    assert_eq!(event.run.state, RunState::Promoted);
    assert_eq!(
        event.run.reason,
        "passed 2 consecutive windows, 20 samples, all checks within limits"
    );
    let json = crate::proto::event_json(event);
    assert_eq!(json["state"], "PROMOTED");
    assert_eq!(json["previous_state"], "VALIDATING");
    assert_eq!(json["window"]["start"], "1970-01-01T00:01:50Z");
    assert_eq!(json["observed"]["samples"], 10);
    assert_eq!(json["run"]["samples"], 20);
    assert_eq!(json["subject"]["service.version"], "2.0");

    // Final: later failing data is recorded but never flips the run.
    e.handle(closed(&k, 120 * S, 10, 500.0, 10), 132 * S);
    assert!(watermark(&mut e, 132 * S).is_empty());
    let run = sync(store.current("checkout", "2.0")).expect("run");
    assert_eq!(run.state, RunState::Promoted);
    assert_eq!(run.cumulative.samples, 20);
    let windows = sync(store.windows(&run.run_id, 10));
    assert_eq!(windows.len(), 3);
    assert_eq!(windows[0].result, crate::model::WindowVerdict::Fail);
}

#[test]
fn rolls_back_with_the_failure_sentence_and_writes_no_empty_windows() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    let k = key("3.0");
    seen(&mut e, &k, 101 * S);
    e.handle(closed(&k, 100 * S, 10, 20.0, 0), 112 * S);
    watermark(&mut e, 112 * S);
    // Two windows with no data: nothing written, no decision (issue 12.5:
    // a row per run per window would grow with every run ever made).
    assert!(watermark(&mut e, 132 * S).is_empty());
    let run = sync(store.current("checkout", "3.0")).expect("run");
    let windows = sync(store.windows(&run.run_id, 10));
    assert_eq!(windows.len(), 1);
    e.handle(closed(&k, 130 * S, 10, 20.0, 3), 142 * S);
    let ev = watermark(&mut e, 142 * S);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].run.state, RunState::RolledBack);
    assert_eq!(ev[0].run.reason, "error rate 30.0% exceeds threshold 5%");
    assert_eq!(
        ev[0].failures,
        vec!["error rate 30.0% exceeds threshold 5%".to_string()]
    );
}

#[test]
fn no_windows_before_the_first_sample() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    let k = key("4.0");
    watermark(&mut e, 150 * S);
    seen(&mut e, &k, 151 * S);
    watermark(&mut e, 152 * S);
    let run = sync(store.current("checkout", "4.0")).expect("run");
    assert!(sync(store.windows(&run.run_id, 10)).is_empty());
}

#[test]
fn timeout_rolls_back_pending_work() {
    let mut s = spec();
    s.max_duration = Some(Duration::from_secs(30));
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(s, store);
    let k = key("5.0");
    seen(&mut e, &k, 101 * S);
    assert!(watermark(&mut e, 120 * S).is_empty());
    let ev = watermark(&mut e, 131 * S);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].run.state, RunState::RolledBack);
    assert_eq!(ev[0].run.reason, "timeout: no decision after 30s");
}

#[test]
fn baseline_regression_rolls_back() {
    let mut s = spec();
    s.baseline = Some(BaselineSpec {
        matches: vec![crate::config::AttributeMatch::new("service.version", "5.*").expect("glob")],
        max_p95_latency_increase_percent: Some(10.0),
        max_error_rate_increase_points: None,
    });
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(s, store);
    let k = key("6.0");
    let base = SeriesKey {
        contract: 0,
        subject: Subject::named(BASELINE_SUBJECT),
    };
    seen(&mut e, &k, 101 * S);
    e.handle(closed(&base, 100 * S, 50, 40.0, 0), 112 * S);
    e.handle(closed(&k, 100 * S, 50, 60.0, 0), 112 * S);
    let ev = watermark(&mut e, 112 * S);
    assert_eq!(ev.len(), 1);
    assert!(
        ev[0].run.reason.contains("above baseline 40"),
        "{}",
        ev[0].run.reason
    );
}

#[test]
fn resumes_runs_of_the_same_contract_version_only() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    seen(&mut e, &key("7.0"), 101 * S);
    let resumed = engine(spec(), store.clone());
    assert_eq!(resumed.engine.runs.len(), 1);
    let mut v2 = spec();
    v2.version = 2;
    let mut fresh = engine(v2, store.clone());
    assert!(fresh.engine.runs.is_empty());
    // The undecided run of version 1 can never be decided now: it is
    // superseded with the engine's first input, without an event.
    let events = watermark(&mut fresh, 102 * S);
    assert!(events.is_empty(), "{events:?}");
    let runs = sync(store.runs(10));
    let old = runs
        .iter()
        .find(|r| r.contract_version == 1)
        .expect("the old run is kept");
    assert!(old.superseded && old.retired_at == Some(100 * S), "{old:?}");
    assert_eq!(
        old.reason,
        "replaced by contract version 2 without a verdict (it was VALIDATING under version 1)"
    );
}

/// A run whose state and subject attributes could not be read back (the
/// store holds it as ROLLED_BACK with bare values) keeps its subject: the
/// subject's next data is observed under it and starts no second run.
#[test]
fn a_run_with_an_unreadable_state_holds_its_subject() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    seen(&mut e, &key("7.0"), 101 * S);
    let mut seed = seed(&store);
    let run = &mut seed.runs[0];
    let run_id = run.run_id.clone();
    run.state = RunState::RolledBack;
    run.subject = crate::storage::codec::subject_from_key("7.0");
    run.unreadable = Some("run: unknown state \"BROKEN\"".into());
    let mut fresh = resumed(seed, &store);
    assert_eq!(fresh.engine.runs.len(), 1);
    assert!(fresh.engine.runs.contains_key(&key("7.0")));
    seen(&mut fresh, &key("7.0"), 103 * S);
    watermark(&mut fresh, 110 * S);
    let runs = sync(store.runs(10));
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].run_id.as_str(), runs[0].superseded),
        (run_id.as_str(), false)
    );
    let held = &fresh.engine.runs[&key("7.0")];
    assert_eq!(
        (held.run_id.as_str(), held.state),
        (run_id.as_str(), RunState::RolledBack)
    );
}

#[test]
fn an_undecided_run_with_unreadable_counts_starts_afresh() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    seen(&mut e, &key("7.0"), 101 * S);
    let mut seed = seed(&store);
    seed.runs[0].unreadable = Some("accumulation: invalid type: null".into());
    seed.runs[0].counts_unreadable = true;
    let mut fresh = resumed(seed, &store);
    assert!(fresh.engine.runs.is_empty());
    watermark(&mut fresh, 102 * S);
    let old = sync(store.runs(10)).into_iter().next().expect("kept");
    assert!(old.superseded && old.retired_at == Some(100 * S), "{old:?}");
    assert!(
        old.reason.starts_with("stored data unreadable"),
        "{}",
        old.reason
    );
    // The subject's next data starts a new run, counting from then on.
    seen(&mut fresh, &key("7.0"), 103 * S);
    let runs = sync(store.runs(10));
    assert_eq!(runs.len(), 2);
    let new = sync(store.current("checkout", "7.0")).expect("new run");
    assert!(new.counts_from.is_some() && !new.superseded, "{new:?}");
}

#[test]
fn outbox_rows_follow_on_filters_and_dry_run() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    let k = key("8.0");
    let commits = e.engine.handle(
        EngineInput::SeriesSeen {
            series: k.clone(),
            ts: 101 * S,
        },
        101 * S,
    );
    // VALIDATING goes to the log only; the webhook wants final states.
    assert_eq!(commits[0].outbox, ["log"]);
    e.engine.handle(closed(&k, 100 * S, 10, 500.0, 0), 112 * S);
    e.engine.handle(
        EngineInput::Watermark {
            shard: 0,
            now: 112 * S,
        },
        112 * S,
    );
    let commits = e.engine.handle(
        EngineInput::Watermark {
            shard: 1,
            now: 112 * S,
        },
        112 * S,
    );
    let event = commits
        .iter()
        .find(|c| c.event.is_some())
        .expect("rollback");
    assert_eq!(event.outbox, ["log", "webhook/final"]);

    let mut dry = spec();
    dry.dry_run = true;
    let mut d = engine(dry, Arc::new(MemoryStore::new()));
    assert!(matches!(
        d.engine
            .manual(ManualAction::Rollback, "checkout", "8.0", None, 101 * S),
        Err(ManualError::NotFound(_))
    ));
    seen(&mut d, &k, 101 * S);
    let (commits, _) = d
        .engine
        .manual(ManualAction::Rollback, "checkout", "8.0", None, 102 * S)
        .expect("rolls back");
    // A dry-run contract records the decision but triggers no webhook.
    let c = &commits[0];
    assert!(c.event.as_ref().is_some_and(|e| e.dry_run));
    assert_eq!(c.outbox, ["log"]);
}

#[test]
fn manual_decisions_are_transitions_with_manual_reasons() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    let k = key("9.0");
    seen(&mut e, &k, 101 * S);
    e.handle(closed(&k, 100 * S, 10, 20.0, 0), 112 * S);
    watermark(&mut e, 112 * S);
    let (commits, run) = e
        .engine
        .manual(
            ManualAction::Promote,
            "checkout",
            "9.0",
            Some(" looks fine "),
            113 * S,
        )
        .expect("promotes");
    assert_eq!(run.state, RunState::Promoted);
    assert_eq!(run.reason, "manual: looks fine");
    let event = commits[0].event.as_ref().expect("event");
    assert_eq!(event.previous_state, RunState::Validating);
    // `observed` of a manual decision is the last closed window.
    assert_eq!(event.window.as_ref().map(|w| w.figures.samples), Some(10));
    assert!(matches!(
        e.engine
            .manual(ManualAction::Rollback, "checkout", "9.0", None, 114 * S),
        Err(ManualError::Final {
            state: RunState::Promoted,
            ..
        })
    ));
    assert!(matches!(
        e.engine
            .manual(ManualAction::Promote, "other", "9.0", None, 114 * S),
        Err(ManualError::NotFound(_))
    ));
    let (commits, fresh) = e
        .engine
        .manual(ManualAction::Reset, "checkout", "9.0", None, 115 * S)
        .expect("resets");
    assert_eq!(fresh.state, RunState::Pending);
    assert!(commits[0].run.superseded && commits[0].run.state == RunState::Promoted);
    assert!(
        commits.iter().all(|c| c.event.is_none()),
        "a reset announces nothing"
    );
    sync(store.commit(&commits, 115 * S));
    let current = sync(store.current("checkout", "9.0")).expect("current");
    assert_eq!(current.run_id, fresh.run_id);
    // The window open at the reset holds data from before it: it does not
    // count for the new run (it would decide it as it decided the old one).
    e.handle(closed(&k, 110 * S, 10, 20.0, 0), 122 * S);
    let ev = watermark(&mut e, 122 * S);
    assert!(ev.is_empty(), "{ev:?}");
    // Data of the next window moves the new run to VALIDATING.
    e.handle(closed(&k, 120 * S, 10, 20.0, 0), 132 * S);
    let ev = watermark(&mut e, 132 * S);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].run.run_id, fresh.run_id);
    assert_eq!(ev[0].run.state, RunState::Validating);
}

/// After a contract version bump (a reload or a restart), a subject's new
/// run counts every window its old run did not judge — those open at the
/// bump, restored from the checkpoint, and those after — and none it did:
/// no accepted sample is left out of both runs, none counts twice.
#[test]
fn a_new_contract_version_counts_the_windows_the_old_run_did_not_judge() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    let k = key("4.0");
    seen(&mut e, &k, 101 * S);
    e.handle(closed(&k, 100 * S, 10, 500.0, 0), 112 * S);
    watermark(&mut e, 112 * S);
    let old = sync(store.current("checkout", "4.0")).expect("run");
    assert_eq!(old.state, RunState::RolledBack);
    assert_eq!(old.last_window_end, Some(110 * S));
    // Restart with version 2 of the contract; a checkpoint restores the
    // window [110, 120), never judged, and (stale) [100, 110), judged.
    let v2 = ContractSpec {
        version: 2,
        ..spec()
    };
    let mut seed = seed(&store);
    let restored = seed.closed.entry(k.clone()).or_default();
    restored.insert(100 * S, closed_accum(10, 500.0));
    restored.insert(110 * S, closed_accum(7, 20.0));
    let mut e2 = Engine::new(vec![v2], &window_spec(), 2, subscribers(), seed, 125 * S);
    let run_until = |e2: &mut Engine, now: u64| {
        let mut all = Vec::new();
        for shard in 0..2 {
            all.extend(e2.handle(EngineInput::Watermark { shard, now }, now));
        }
        all
    };
    // The shard sees the subject again after the restart, in the window
    // open across it: the new run starts at once.
    let commits = e2.handle(
        EngineInput::SeriesSeen {
            series: k.clone(),
            ts: 126 * S,
        },
        126 * S,
    );
    let fresh = &commits.last().expect("the new run").run;
    assert_eq!(
        (fresh.contract_version, fresh.counts_from, fresh.state),
        (2, Some(110 * S), RunState::Validating)
    );
    // The restored window the old run never judged counts…
    let all = run_until(&mut e2, 126 * S);
    let counted: Vec<_> = all.iter().filter_map(|c| c.window.as_ref()).collect();
    assert_eq!(counted.len(), 1, "{all:?}");
    assert_eq!(counted[0].window.start, 110 * S);
    // …and so does the window open at the restart.
    e2.handle(closed(&k, 120 * S, 3, 20.0, 0), 132 * S);
    let all = run_until(&mut e2, 132 * S);
    let fresh = &all.last().expect("the new run's window").run;
    assert_eq!(fresh.cumulative.samples, 10);
    assert_eq!(fresh.windows, 2);
}

/// A checkpoint older than the last commit (kill -9 between the two)
/// restores windows that were judged already: they are not counted again.
#[test]
fn restored_windows_are_judged_once() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(spec(), store.clone());
    let k = key("10.0");
    seen(&mut e, &k, 101 * S);
    e.handle(closed(&k, 100 * S, 10, 20.0, 0), 112 * S);
    let slots = e.engine.checkpoint(true);
    watermark(&mut e, 112 * S);
    let run = sync(store.current("checkout", "10.0")).expect("run");
    assert_eq!(run.cumulative.samples, 10);

    // Restart from the stale checkpoint: the pending slot still holds the
    // window [100, 110).
    let mut seed = seed(&store);
    for (slot, text) in slots {
        let data = checkpoint::decode(&text).expect("reads");
        for s in data {
            let key = SeriesKey {
                contract: 0,
                subject: s.subject,
            };
            for (start, acc) in s.windows {
                assert_eq!(slot, checkpoint::PENDING_SLOT);
                seed.closed
                    .entry(key.clone())
                    .or_default()
                    .insert(start, acc);
            }
        }
    }
    assert_eq!(seed.closed.len(), 1);
    let engine = Engine::new(
        vec![spec()],
        &window_spec(),
        2,
        subscribers(),
        seed,
        113 * S,
    );
    let mut e = Harness {
        engine,
        store: store.clone(),
    };
    assert!(watermark(&mut e, 113 * S).is_empty());
    let run = sync(store.current("checkout", "10.0")).expect("run");
    assert_eq!(run.cumulative.samples, 10, "counted once");
    assert_eq!(sync(store.windows(&run.run_id, 10)).len(), 1);
}

/// Issue 12.5: a run with no sample for `run_idle_timeout` is retired
/// without a verdict and leaves memory; empty windows write nothing; a
/// final run leaves memory once idle and, found again in storage, stays
/// final when its subject comes back.
#[test]
fn idle_runs_are_retired_and_final_runs_leave_memory() {
    let store = Arc::new(MemoryStore::new());
    let idle = ContractSpec {
        run_idle_timeout: Duration::from_secs(30),
        ..spec()
    };
    let mut e = engine(idle.clone(), store.clone());
    let one_shot = key("one-shot");
    seen(&mut e, &one_shot, 101 * S);
    e.handle(closed(&one_shot, 100 * S, 2, 20.0, 0), 112 * S);
    watermark(&mut e, 112 * S);
    let before = sync(
        store.windows(
            &sync(store.current("checkout", "one-shot"))
                .expect("run")
                .run_id,
            100,
        ),
    )
    .len();
    // Quiet windows: nothing is written for them.
    watermark(&mut e, 122 * S);
    watermark(&mut e, 132 * S);
    let run = sync(store.current("checkout", "one-shot")).expect("run");
    assert_eq!(sync(store.windows(&run.run_id, 100)).len(), before);
    assert_eq!(run.state, RunState::Validating);
    // 30 s after its last window (ending at 110 s): retired, announced to
    // no one, and gone from memory.
    let events = watermark(&mut e, 141 * S);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(e.engine.runs_held(), 0);
    let all = sync(store.runs(10));
    let retired = all
        .iter()
        .find(|r| r.run_id == run.run_id)
        .expect("kept as history");
    assert!(
        retired.superseded && retired.retired_at == Some(141 * S),
        "{retired:?}"
    );
    assert!(
        retired.reason.starts_with("retired without a verdict"),
        "{}",
        retired.reason
    );
    assert_eq!(retired.state, RunState::Validating);
    assert!(sync(store.current("checkout", "one-shot")).is_none());

    // A final run: rolled back, then idle → out of memory.
    let bad = key("bad");
    seen(&mut e, &bad, 151 * S);
    e.handle(closed(&bad, 150 * S, 10, 500.0, 0), 162 * S);
    let events = watermark(&mut e, 162 * S);
    assert!(events.iter().any(|ev| ev.run.state == RunState::RolledBack));
    watermark(&mut e, 200 * S);
    assert_eq!(e.engine.runs_held(), 0);
    // Its subject comes back: the driver finds the run in storage, and the
    // engine adopts it; new data is observed, the run stays final.
    assert!(!e.engine.knows(&bad));
    let found = sync(store.current("checkout", "bad")).expect("stored");
    e.engine.adopt(&bad, found.clone(), 201 * S);
    seen(&mut e, &bad, 201 * S);
    e.handle(closed(&bad, 200 * S, 10, 20.0, 0), 212 * S);
    let events = watermark(&mut e, 212 * S);
    assert!(events.is_empty(), "{events:?}");
    let after = sync(store.current("checkout", "bad")).expect("stored");
    assert_eq!(
        (after.run_id, after.state),
        (found.run_id, RunState::RolledBack)
    );
}

/// With `on_idle: timeout`, an idle run is decided by `on_timeout`.
#[test]
fn idle_runs_can_time_out_instead() {
    let store = Arc::new(MemoryStore::new());
    let spec = ContractSpec {
        run_idle_timeout: Duration::from_secs(30),
        on_idle: crate::config::OnIdle::Timeout,
        ..spec()
    };
    let mut e = engine(spec, store.clone());
    let k = key("quiet");
    seen(&mut e, &k, 101 * S);
    e.handle(closed(&k, 100 * S, 2, 20.0, 0), 112 * S);
    watermark(&mut e, 112 * S);
    let events = watermark(&mut e, 141 * S);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].run.state, RunState::RolledBack);
    assert!(
        events[0]
            .run
            .reason
            .starts_with("timeout: no sample for 30s"),
        "{}",
        events[0].run.reason
    );
}

/// Two services share a contract; each canary is compared with its own
/// service's baseline. Pooled, the slow service's baseline would hide the
/// fast one's regression.
#[test]
fn each_service_is_compared_with_its_own_baseline() {
    let mut s = spec();
    s.subject_by = vec!["service.name".into(), "service.version".into()];
    s.baseline = Some(BaselineSpec {
        matches: vec![crate::config::AttributeMatch::new("service.version", "1.*").expect("glob")],
        max_p95_latency_increase_percent: Some(10.0),
        max_error_rate_increase_points: None,
    });
    s.thresholds.max_p95_latency_ms = Some(1000.0);
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(s.clone(), store);
    let release = |name: &str, version: &str| SeriesKey {
        contract: 0,
        subject: Subject::new(vec![
            ("service.name".into(), name.into()),
            ("service.version".into(), version.into()),
        ]),
    };
    let base = |name: &str| SeriesKey {
        contract: 0,
        subject: Subject::baseline(vec![("service.name".into(), name.into())]),
    };
    let checkout = release("checkout", "2.0");
    let payments = release("payments", "2.0");
    assert_eq!(
        s.baseline_of(&checkout.subject),
        Some(base("checkout").subject)
    );
    seen(&mut e, &checkout, 101 * S);
    seen(&mut e, &payments, 101 * S);
    // Fast checkout, slow payments; both candidates at 60 ms.
    e.handle(closed(&base("checkout"), 100 * S, 50, 40.0, 0), 112 * S);
    e.handle(closed(&base("payments"), 100 * S, 500, 400.0, 0), 112 * S);
    e.handle(closed(&checkout, 100 * S, 50, 60.0, 0), 112 * S);
    e.handle(closed(&payments, 100 * S, 50, 60.0, 0), 112 * S);
    let ev = watermark(&mut e, 112 * S);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].run.subject, checkout.subject);
    assert_eq!(ev[0].run.state, RunState::RolledBack);
    assert!(
        ev[0].run.reason.contains("above baseline 40"),
        "{}",
        ev[0].run.reason
    );
}

fn rejected(k: &SeriesKey, n: u64) -> EngineInput {
    let mut tally = RejectionTally::default();
    tally.add(&crate::model::Rejected {
        noun: "points",
        metric: "validation.score".into(),
        reason: "unit",
        why: "unit \"1\" is not s, ms or us".into(),
        count: n,
    });
    EngineInput::Rejected {
        series: k.clone(),
        tally,
    }
}

fn metrics_spec() -> ContractSpec {
    ContractSpec {
        source: Source::Metrics,
        latency_metric: "validation.score".into(),
        ..spec()
    }
}

fn stored(store: &MemoryStore, subject: &str) -> RunRecord {
    sync(store.current("checkout", subject)).expect("run stored")
}

const UNIT: &str = "points of validation.score rejected, unit \"1\" is not s, ms or us";

/// A release whose every point is rejected has a run, PENDING, that says
/// why it has no samples; its count is refreshed once a window, not at
/// every rejection; a run VALIDATING on its conversions alone says the
/// same; and once latencies arrive the usual reason is back, while the
/// window's notes keep what was rejected.
#[test]
fn a_run_without_samples_says_what_was_rejected() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(metrics_spec(), store.clone());
    let k = key("2.0");
    assert!(e.handle(rejected(&k, 5), 101 * S).is_empty());
    let run = stored(&store, "2.0");
    assert_eq!(run.state, RunState::Pending);
    assert_eq!(run.reason, format!("no latency samples: 5 {UNIT}"));
    // Counted now, written with the next judged window.
    e.handle(rejected(&k, 7), 105 * S);
    assert_eq!(
        stored(&store, "2.0").reason,
        format!("no latency samples: 5 {UNIT}")
    );
    watermark(&mut e, 112 * S);
    assert_eq!(
        stored(&store, "2.0").reason,
        format!("no latency samples: 12 {UNIT}")
    );

    // Conversions alone make it VALIDATING, with no latency sample.
    let ev = seen(&mut e, &k, 111 * S);
    assert_eq!(ev[0].run.state, RunState::Validating);
    let conversions = Accum {
        conversions: 1,
        ..Accum::default()
    };
    e.handle(
        EngineInput::Closed(ClosedWindow {
            series: k.clone(),
            window: Window::containing(110 * S, 10 * S),
            accum: conversions,
        }),
        122 * S,
    );
    watermark(&mut e, 122 * S);
    let run = stored(&store, "2.0");
    assert_eq!(
        (run.state, run.reason.as_str()),
        (
            RunState::Validating,
            format!("no latency samples: 12 {UNIT}").as_str()
        )
    );
    let windows = sync(store.windows(&run.run_id, 10));
    assert!(
        windows[0].notes.iter().any(|n| n == &format!("12 {UNIT}")),
        "{:?}",
        windows[0].notes
    );

    // Latencies arrive: the run has samples, and its reason is the usual one.
    e.handle(closed(&k, 120 * S, 10, 20.0, 0), 132 * S);
    watermark(&mut e, 132 * S);
    let run = stored(&store, "2.0");
    assert_eq!(run.state, RunState::Validating);
    assert_eq!(run.reason, "first sample received");
    // Nothing was rejected since the previous window: no note.
    let windows = sync(store.windows(&run.run_id, 10));
    assert!(windows[0].notes.iter().all(|n| !n.contains(UNIT)));
}

/// Rejections for a final run change nothing, and a reset run starts
/// with no tally.
#[test]
fn rejections_leave_final_runs_alone() {
    let store = Arc::new(MemoryStore::new());
    let mut e = engine(metrics_spec(), store.clone());
    let k = key("2.0");
    seen(&mut e, &k, 101 * S);
    e.handle(closed(&k, 100 * S, 10, 500.0, 5), 112 * S);
    watermark(&mut e, 112 * S);
    let before = stored(&store, "2.0");
    assert_eq!(before.state, RunState::RolledBack);
    assert!(e.handle(rejected(&k, 5), 113 * S).is_empty());
    watermark(&mut e, 122 * S);
    assert_eq!(stored(&store, "2.0").reason, before.reason);
    assert_eq!(e.engine.tallied(), 0);
}

/// Tallies are bounded by the runs held: they leave memory with their
/// run. A run whose points keep being rejected is not idle meanwhile; one
/// whose rejections stopped is retired after `run_idle_timeout`.
#[test]
fn tallies_leave_with_their_runs_and_rejections_keep_a_run_from_idling() {
    let store = Arc::new(MemoryStore::new());
    let spec = ContractSpec {
        run_idle_timeout: Duration::from_secs(60),
        ..metrics_spec()
    };
    let mut e = engine(spec, store.clone());
    let (a, b) = (key("a"), key("b"));
    e.handle(rejected(&a, 1), 101 * S);
    e.handle(rejected(&b, 1), 101 * S);
    assert_eq!((e.engine.runs_held(), e.engine.tallied()), (2, 2));
    e.handle(rejected(&a, 1), 150 * S);
    watermark(&mut e, 170 * S);
    // b went quiet at 101 s: retired at 161 s; a is still being sent.
    assert_eq!((e.engine.runs_held(), e.engine.tallied()), (1, 1));
    let retired =
        |subject: &str| sync(store.current("checkout", subject)).is_none_or(|r| r.superseded);
    assert!(retired("b"));
    assert!(!retired("a"));
    assert_eq!(
        stored(&store, "a").reason,
        format!("no latency samples: 2 {UNIT}")
    );
    watermark(&mut e, 215 * S);
    assert_eq!((e.engine.runs_held(), e.engine.tallied()), (0, 0));
    assert!(retired("a"));
}

/// After a restart the tallies are gone but the reason stays, until the
/// run has samples.
#[test]
fn a_stored_no_samples_reason_stays_until_samples_arrive() {
    let store = Arc::new(MemoryStore::new());
    let k = key("2.0");
    {
        let mut e = engine(metrics_spec(), store.clone());
        e.handle(rejected(&k, 5), 101 * S);
        seen(&mut e, &k, 101 * S);
        e.handle(
            EngineInput::Closed(ClosedWindow {
                series: k.clone(),
                window: Window::containing(100 * S, 10 * S),
                accum: Accum {
                    conversions: 1,
                    ..Accum::default()
                },
            }),
            112 * S,
        );
        watermark(&mut e, 112 * S);
    }
    let reason = format!("no latency samples: 5 {UNIT}");
    assert_eq!(stored(&store, "2.0").reason, reason);
    let mut e = engine(metrics_spec(), store.clone());
    e.handle(
        EngineInput::Closed(ClosedWindow {
            series: k.clone(),
            window: Window::containing(110 * S, 10 * S),
            accum: Accum {
                conversions: 1,
                ..Accum::default()
            },
        }),
        122 * S,
    );
    watermark(&mut e, 122 * S);
    assert_eq!(stored(&store, "2.0").reason, reason);
    e.handle(closed(&k, 120 * S, 10, 20.0, 0), 132 * S);
    watermark(&mut e, 132 * S);
    assert_eq!(stored(&store, "2.0").reason, "first sample received");
}

/// An engine over `store` whose pipeline has the `unleash/checkout`
/// exporter: steps 10 → 100, one counting window per step, SDKs refreshing
/// every 3 s.
fn stepping(store: &Arc<MemoryStore>, seed: EngineSeed) -> Harness {
    let stepper = Stepper {
        exporter: "unleash/checkout".into(),
        flag: crate::model::FlagTemplate::parse("checkout-{service.version}").expect("parses"),
        steps: vec![10, 100],
        step_windows: 1,
        refresh: 3 * S,
        on_rollback: crate::config::OnRollback::Zero,
        timing: (0, 0),
    };
    let mut h = resumed(seed, store);
    h.engine = h.engine.with_steppers(vec![stepper]);
    h
}

/// The flag changes waiting in the outbox, oldest first: `(change id,
/// percent, rollback)`.
fn flag_changes(store: &MemoryStore) -> Vec<(String, u32, bool)> {
    sync(store.pending("unleash/checkout", 100))
        .iter()
        .map(|d| {
            let c: crate::model::FlagChange = serde_json::from_str(&d.event).expect("a change");
            (c.change_id, c.percent, c.rollback)
        })
        .collect()
}

fn rollout_of(store: &MemoryStore, run_id: &str) -> Rollout {
    sync(store.rollouts(run_id))
        .into_iter()
        .next()
        .expect("a rollout")
}

/// Unleash applied `change` of `unleash/checkout` at `at`.
fn ack(h: &mut Harness, change: &str, at: u64) -> Option<Rollout> {
    h.engine.acked("unleash/checkout", change, at)
}

fn pass(h: &mut Harness, k: &SeriesKey, start: u64) -> Vec<VerdictEvent> {
    h.handle(closed(k, start, 10, 20.0, 0), start + 12 * S);
    watermark(h, start + 12 * S)
}

/// The run's windows would promote it after two passing windows; the flag
/// holds it back until Unleash applied each step, one refresh interval went
/// by, and the last step held its window. Acknowledgements of unknown or
/// replaced changes are ignored.
#[test]
fn promotion_waits_until_the_last_step_held_its_windows() {
    let store = Arc::new(MemoryStore::new());
    let mut e = stepping(&store, EngineSeed::default());
    let k = key("2.0");
    let ev = seen(&mut e, &k, 101 * S);
    assert_eq!(ev[0].run.state, RunState::Validating);
    let run_id = ev[0].run.run_id.clone();
    let first = flag_changes(&store);
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].1, first[0].2), (10, false));
    // Not applied yet: a passing window does not count toward the step.
    assert!(pass(&mut e, &k, 100 * S).is_empty());
    assert_eq!(rollout_of(&store, &run_id).counted, 0);

    assert!(ack(&mut e, "no-such-change", 113 * S).is_none());
    assert!(e
        .engine
        .acked("webhook/final", &first[0].0, 113 * S)
        .is_none());
    let acked = ack(&mut e, &first[0].0, 113 * S).expect("the current change");
    assert_eq!(acked.acked_at, Some(113 * S));
    // Counting starts with the first window starting 3 s after: [120, 130),
    // judged at 132 s.
    assert_eq!(acked.next_step_at, Some(132 * S));
    // A second acknowledgement (a redelivery) keeps the first time.
    let again = ack(&mut e, &first[0].0, 118 * S);
    assert_eq!(again.expect("still current").acked_at, Some(113 * S));

    // Two passing windows: the machine would promote; the flag is at 10 %.
    assert!(pass(&mut e, &k, 110 * S).is_empty());
    let run = sync(store.current("checkout", "2.0")).expect("run");
    assert_eq!(run.state, RunState::Validating);
    assert!(
        run.reason
            .contains("promotion waits: flag checkout-2.0 is at 10% (step 1 of 2, 0/1 windows)"),
        "{}",
        run.reason
    );
    // The first counting window raises to the last step, not applied yet.
    assert!(pass(&mut e, &k, 120 * S).is_empty());
    let changes = flag_changes(&store);
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[1].1, changes[1].2), (100, false));
    let run = sync(store.current("checkout", "2.0")).expect("run");
    assert!(
        run.reason
            .contains("at 100% (step 2 of 2, 0/1 windows, not yet applied by Unleash)"),
        "{}",
        run.reason
    );
    // The replaced change's late acknowledgement changes nothing.
    assert!(ack(&mut e, &first[0].0, 125 * S).is_none());
    assert_eq!(rollout_of(&store, &run_id).acked_at, None);

    ack(&mut e, &changes[1].0, 133 * S).expect("the current change");
    // [130, 140) started before 136 s: mixed SDKs, not counted.
    assert!(pass(&mut e, &k, 130 * S).is_empty());
    let ev = pass(&mut e, &k, 140 * S);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].run.state, RunState::Promoted);
    let changes = flag_changes(&store);
    assert_eq!(changes.len(), 3);
    assert_eq!((changes[2].1, changes[2].2), (100, false));
    let r = rollout_of(&store, &run_id);
    assert_eq!(r.phase, crate::model::RolloutPhase::Promoted);
    assert_eq!(r.change_id, changes[2].0);
}

/// A restarted engine resumes the rollout from storage at its step and
/// count, and an acknowledgement it receives for the stored change starts
/// the hold; the flag is not set to its first step again.
#[test]
fn a_resumed_engine_keeps_the_step_and_takes_its_acknowledgement() {
    let store = Arc::new(MemoryStore::new());
    let mut e = stepping(&store, EngineSeed::default());
    let k = key("2.0");
    let run_id = seen(&mut e, &k, 101 * S)[0].run.run_id.clone();
    let first = flag_changes(&store);
    ack(&mut e, &first[0].0, 103 * S);
    assert!(pass(&mut e, &k, 110 * S).is_empty());
    let raised = flag_changes(&store);
    assert_eq!(raised.len(), 2);
    drop(e);

    let mut seed = seed(&store);
    seed.rollouts = sync(store.rollouts(&run_id));
    let mut e = stepping(&store, seed);
    // Samples of the resumed run set nothing again.
    assert!(seen(&mut e, &k, 121 * S).is_empty());
    assert_eq!(flag_changes(&store), raised);
    let r = rollout_of(&store, &run_id);
    assert_eq!((r.step, r.percent, r.acked_at), (1, 100, None));
    assert!(ack(&mut e, &first[0].0, 122 * S).is_none());
    let acked = ack(&mut e, &raised[1].0, 122 * S).expect("the stored change");
    assert_eq!(acked.acked_at, Some(122 * S));
    assert!(pass(&mut e, &k, 120 * S).is_empty());
    let ev = pass(&mut e, &k, 130 * S);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].run.state, RunState::Promoted);
}

/// A rollback sets 0 % whatever the step, at once: it waits for no
/// acknowledgement and no window.
#[test]
fn a_rollback_sets_zero_without_waiting() {
    let store = Arc::new(MemoryStore::new());
    let mut e = stepping(&store, EngineSeed::default());
    let k = key("2.0");
    seen(&mut e, &k, 101 * S);
    e.handle(closed(&k, 100 * S, 10, 500.0, 0), 112 * S);
    let ev = watermark(&mut e, 112 * S);
    assert_eq!(ev[0].run.state, RunState::RolledBack);
    let changes = flag_changes(&store);
    assert_eq!(changes.len(), 2);
    assert_eq!((changes[1].1, changes[1].2), (0, true));
}
