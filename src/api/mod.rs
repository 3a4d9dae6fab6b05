//! The HTTP API (design §7): health, readiness, the run read endpoints that
//! people, Argo Rollouts' `web` metric provider and scripts call, Flagger's
//! webhooks (`flagger.rs`), the outbox's undelivered events, and the manual
//! decisions.
//!
//! Manual decisions and resets change run state, which the pipeline's run
//! engine owns: they are sent to its task as a [`Command`] and answered once
//! the change is committed, so they are ordered with the engine's own
//! decisions and can never contradict them.

mod csrf;
mod flagger;
mod pretty;
mod status;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::auth::bearer_ok;
use crate::model::rfc3339_millis;
use crate::model::series::{parse_joined, split_joined};
use crate::model::{Rollout, RunState};
use crate::proto;
use crate::runs::engine::{ManualAction, ManualError};
use crate::runs::task::Command;
use crate::runs::Catalog;
use crate::storage::{Delivery, DeliveryState};

/// Window results returned with one run.
const WINDOW_HISTORY: usize = 100;
/// Transitions returned with one run.
const TRANSITION_HISTORY: usize = 100;
/// Deliveries listed at most.
const DELIVERIES: usize = 1000;

/// The API routes over `catalog`.
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .merge(status::routes())
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/api/v1/runs", get(all_runs))
        .route("/api/v1/runs/{contract}", get(contract_runs))
        .route("/api/v1/runs/{contract}/{*subject}", get(subject_run))
        .route(
            "/api/v1/deliveries",
            get(deliveries).delete(abandon_deliveries),
        )
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/flagger/{contract}/{hook}", post(flagger::hook))
        .route(
            "/api/v1/promote/{contract}/{*subject}",
            manual_route(ManualAction::Promote),
        )
        .route(
            "/api/v1/rollback/{contract}/{*subject}",
            manual_route(ManualAction::Rollback),
        )
        .route(
            "/api/v1/reset/{contract}/{*subject}",
            manual_route(ManualAction::Reset),
        )
        .route("/api/v1/reload", post(reload))
        .route("/api/v1", any(unknown_endpoint))
        .route("/api/v1/", any(unknown_endpoint))
        .route("/api/v1/{*rest}", any(unknown_endpoint))
        .fallback(status::not_found)
        .layer(axum::middleware::from_fn_with_state(
            catalog.clone(),
            csrf::guard,
        ))
        .layer(axum::middleware::from_fn(pretty::layer))
        .layer(axum::middleware::from_fn(crate::http_gzip::layer))
        .with_state(catalog)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// A path under `/api/v1/` that names no endpoint: a JSON 404 like every
/// other API error, so a script that reads `error` is told what went wrong
/// rather than handed an empty body.
async fn unknown_endpoint(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}

/// Path parameters whose rejection (a segment that is not UTF-8 once
/// percent-decoded) answers JSON like every other API error, not axum's
/// plain text.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(error(rejection.status(), rejection.body_text())),
        }
    }
}

fn store_error(err: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, format!("storage: {err}"))
}

/// 200 when ready, 503 with the reason when not. Problems with delivery
/// targets (Unleash unreachable, a token refused) are listed in `degraded`
/// without making verdict unready: ingest and decisions go on, and taking
/// verdict out of a load balancer would not bring Unleash back.
async fn readyz(State(c): State<Arc<Catalog>>) -> Response {
    let degraded = c.degraded();
    match c.not_ready() {
        None if degraded.is_empty() => Json(json!({"status": "ready"})).into_response(),
        None => Json(json!({"status": "ready", "degraded": degraded})).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "error": why, "degraded": degraded})),
        )
            .into_response(),
    }
}

async fn all_runs(
    State(c): State<Arc<Catalog>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) => l,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "limit must be a whole number"),
    };
    match c.store.runs(limit).await {
        Ok(runs) => Json(json!({"runs": runs.iter().map(proto::run_json).collect::<Vec<_>>()}))
            .into_response(),
        Err(e) => store_error(e),
    }
}

async fn contract_runs(
    State(c): State<Arc<Catalog>>,
    ApiPath(contract): ApiPath<String>,
) -> Response {
    if c.contract(&contract).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown contract {contract:?}"),
        );
    }
    let version = c.contract(&contract).map_or(0, |s| s.version);
    match c.store.current_runs(&contract).await {
        // The current version's runs: older versions' are history
        // (`GET /api/v1/runs`), not what a rollout should act on.
        Ok(runs) => Json(json!({"runs": runs
            .iter()
            .filter(|r| r.contract_version == version)
            .map(proto::run_json)
            .collect::<Vec<_>>()}))
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// One run with its window history and transitions. A known contract always
/// answers 200: a subject with no data yet is PENDING, so Argo Rollouts sees
/// "inconclusive" rather than an error.
async fn subject_run(
    State(c): State<Arc<Catalog>>,
    ApiPath((contract, subject)): ApiPath<(String, String)>,
) -> Response {
    match one_run(&c, &contract, &subject).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Why one run cannot be shown.
#[derive(Debug)]
pub(crate) enum RunError {
    /// No such contract.
    UnknownContract(String),
    /// A subject that can never have a run.
    BadSubject(String),
    /// Storage could not be read.
    Store(String),
}

impl RunError {
    /// The status and the message.
    pub(crate) fn status(&self) -> (StatusCode, String) {
        match self {
            RunError::UnknownContract(c) => {
                (StatusCode::NOT_FOUND, format!("unknown contract {c:?}"))
            }
            RunError::BadSubject(why) => (StatusCode::BAD_REQUEST, why.clone()),
            RunError::Store(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}")),
        }
    }
}

impl IntoResponse for RunError {
    fn into_response(self) -> Response {
        let (status, message) = self.status();
        error(status, message)
    }
}

/// The one-run body: the current contract version's run of `subject` with
/// its windows and transitions, or PENDING when it has none.
pub(crate) async fn one_run(c: &Catalog, contract: &str, subject: &str) -> Result<Value, RunError> {
    let Some(spec) = c.contract(contract) else {
        return Err(RunError::UnknownContract(contract.to_string()));
    };
    let subject = parse_joined(subject.trim_start_matches('/'), spec.subject_by.len())
        .map_err(RunError::BadSubject)?;
    let subject = subject.as_str();
    let run = c
        .store
        .current(contract, subject)
        .await
        .map_err(|e| RunError::Store(e.to_string()))?;
    // A run of an earlier contract version is history: after a version bump
    // the subject is PENDING until data arrives under the new version, so a
    // rollout never acts on a stale verdict.
    let earlier = run.as_ref().filter(|r| r.contract_version != spec.version);
    let reason = match earlier {
        Some(r) => format!(
            "no sample received yet under contract version {} (version {}'s run is {})",
            spec.version,
            r.contract_version,
            r.state.as_str()
        ),
        None => "no sample received yet".to_string(),
    };
    let Some(run) = run.filter(|r| r.contract_version == spec.version) else {
        let values = split_joined(subject);
        let attributes: serde_json::Map<String, Value> = if values.len() == spec.subject_by.len() {
            spec.subject_by
                .iter()
                .zip(values)
                .map(|(k, v)| (k.clone(), Value::String(v)))
                .collect()
        } else {
            serde_json::Map::new()
        };
        return Ok(json!({
            "contract": contract,
            "contract_version": spec.version,
            "subject": subject,
            "subject_attributes": attributes,
            "run_id": null,
            "state": RunState::Pending,
            "reason": reason,
            "started_at": null,
            "decided_at": null,
            "run": {"started_at": null, "samples": 0, "windows": 0, "p95_latency_ms": null,
                    "error_rate_percent": null, "conversion_rate_percent": null},
            "superseded": false,
            "windows": [],
            "transitions": [],
            "as_of": rfc3339_millis(c.clock.now()),
        }));
    };
    let store = |e: crate::storage::StoreError| RunError::Store(e.to_string());
    let windows = c
        .store
        .windows(&run.run_id, WINDOW_HISTORY)
        .await
        .map_err(store)?;
    let transitions = c
        .store
        .transitions(&run.run_id, TRANSITION_HISTORY)
        .await
        .map_err(store)?;
    let rollouts = c.store.rollouts(&run.run_id).await.map_err(store)?;
    let mut body = proto::run_json_with_windows(&run, &windows);
    body["rollouts"] = Value::Array(rollouts.iter().map(rollout_json).collect());
    body["transitions"] = Value::Array(
        transitions
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
            .collect(),
    );
    Ok(body)
}

/// A flag rollout as the run's API shows it: where it stands and when the
/// next step may come.
pub fn rollout_json(r: &Rollout) -> Value {
    json!({
        "exporter": r.exporter,
        "flag": r.flag,
        "phase": r.phase,
        "percent": r.percent,
        "enabled": r.enabled,
        "step": r.step + 1,
        "steps": r.steps,
        "applied": r.acked_at.is_some(),
        "changed_at": rfc3339_millis(r.changed_at),
        "applied_at": r.acked_at.map(rfc3339_millis),
        "counted_windows": r.counted,
        "next_step_at": r.next_step_at.map(rfc3339_millis),
        "change_id": r.change_id,
    })
}

pub(crate) fn delivery_json(d: &Delivery) -> Value {
    json!({
        "event_id": d.event_id,
        "exporter": d.exporter,
        "state": d.state,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": rfc3339_millis(d.created_at),
        "updated_at": rfc3339_millis(d.updated_at),
        "next_attempt_at": (d.state == DeliveryState::Pending).then(|| rfc3339_millis(d.next_attempt_at)),
        "event": serde_json::from_str::<Value>(&d.event).unwrap_or(Value::Null),
    })
}

/// Deliveries that have not succeeded: `?state=failed|pending` (default
/// both), newest first.
async fn deliveries(
    State(c): State<Arc<Catalog>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let states: &[DeliveryState] = match q.get("state").map(String::as_str) {
        None | Some("") => &[DeliveryState::Pending, DeliveryState::Failed],
        Some("pending") => &[DeliveryState::Pending],
        Some("failed") => &[DeliveryState::Failed],
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state must be failed or pending, got {other:?}"),
            )
        }
    };
    match c.store.deliveries(states, DELIVERIES).await {
        Ok(list) => Json(json!({
            "deliveries": list.iter().map(delivery_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// `DELETE /api/v1/deliveries?exporter=ID` (token): gives up the pending
/// deliveries of an exporter that is no longer in the pipeline (after a
/// restart without it), so they stop counting as owed. Those of a
/// configured exporter are refused: its worker is delivering them.
async fn abandon_deliveries(
    State(c): State<Arc<Catalog>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = unauthorized(&c, &headers) {
        return refused;
    }
    let Some(exporter) = q.get("exporter").filter(|e| !e.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "say whose deliveries to abandon: ?exporter=ID (an exporter no longer in the pipeline)",
        );
    };
    if c.delivering.contains(exporter) {
        return error(
            StatusCode::CONFLICT,
            format!("{exporter} is in the pipeline and delivers its rows; remove it (restart) before abandoning them"),
        );
    }
    match crate::exporters::orphans::abandon(c.store.as_ref(), exporter, c.clock.now()).await {
        // An id with nothing pending is most likely a typo: say so rather
        // than answer "0 abandoned" as if its deliveries were settled.
        Ok(0) => error(
            StatusCode::NOT_FOUND,
            format!("{exporter} has no pending deliveries (check the exporter id in GET /api/v1/deliveries)"),
        ),
        Ok(n) => Json(json!({"exporter": exporter, "abandoned": n})).into_response(),
        Err(e) => store_error(e),
    }
}

/// The instances sharing the database: each one's API address, start and
/// last heartbeat, whether it leads, the partial rows it holds unwritten
/// and those it wrote too late (`alive`: a heartbeat within `DEAD_AFTER`);
/// per pipeline, the last window judged, the partial rows waiting for
/// judgment and the late ones, counted in no verdict. 404 for an
/// instance that is not in a cluster.
async fn cluster(State(c): State<Arc<Catalog>>) -> Response {
    let Some(view) = &c.cluster else {
        return error(
            StatusCode::NOT_FOUND,
            "not a cluster: service.storage is not postgres://",
        );
    };
    let (instances, judging) = match (view.store.instances().await, view.store.judging().await) {
        (Ok(i), Ok(j)) => (i, j),
        (Err(e), _) | (_, Err(e)) => return store_error(e),
    };
    let dead = crate::model::nanos(crate::cluster::DEAD_AFTER);
    // A leader that died keeps its flag until its heartbeat is stale: the
    // leader is the flagged instance heard from last. Heartbeats carry the
    // database's clock, so they are compared with it.
    let alive =
        |i: &crate::storage::cluster::Instance| i.heartbeat_at.saturating_add(dead) > i.read_at;
    let leader = instances
        .iter()
        .filter(|i| i.leader && alive(i))
        .max_by_key(|i| i.heartbeat_at)
        .map(|i| i.instance.clone());
    Json(json!({
        "instance": view.instance,
        "leader": leader,
        "this_instance_leads": *view.leading.borrow(),
        "grace_seconds": view.grace.as_secs_f64(),
        "instances": instances.iter().map(|i| json!({
            "instance": i.instance,
            "api": i.api,
            "started_at": rfc3339_millis(i.started_at),
            "last_heartbeat": rfc3339_millis(i.heartbeat_at),
            "alive": alive(i),
            "leader": leader.as_deref() == Some(i.instance.as_str()),
            "partials_unwritten": i.partials_pending,
            "late_partials": i.late_partials,
        })).collect::<Vec<_>>(),
        "pipelines": judging.iter().map(|j| json!({
            "pipeline": j.pipeline,
            "last_judged_window": j.judged.map(rfc3339_millis),
            "partials_pending": j.partials,
            "late_partials": j.late_partials,
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `POST` of one manual action.
fn manual_route(action: ManualAction) -> MethodRouter<Arc<Catalog>> {
    post(
        move |State(c): State<Arc<Catalog>>,
              ApiPath((contract, subject)): ApiPath<(String, String)>,
              headers: HeaderMap,
              body: Bytes| manual(c, action, contract, subject, headers, body),
    )
}

/// The 401 of a write endpoint called without the API token, if it was.
fn unauthorized(c: &Catalog, headers: &HeaderMap) -> Option<Response> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|h| h.as_bytes());
    (!bearer_ok(c.api_token.as_deref(), header)).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "missing or wrong bearer token"})),
        )
            .into_response()
    })
}

/// `POST /api/v1/reload`: re-reads the pipeline file. 200 with what
/// changes once the file is known to apply (the switch follows the
/// answer); 400 with every problem (the running configuration stays).
async fn reload(State(c): State<Arc<Catalog>>, headers: HeaderMap) -> Response {
    if let Some(refused) = unauthorized(&c, &headers) {
        return refused;
    }
    let Some(supervisor) = &c.reload else {
        return error(
            StatusCode::NOT_FOUND,
            "reload is only available under `verdict run`",
        );
    };
    let (reply, answer) = oneshot::channel();
    if supervisor
        .send(crate::runs::ReloadRequest { reply })
        .await
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "verdict is stopping");
    }
    match answer.await {
        Ok(Ok(changes)) => Json(json!({"status": "reloading", "changes": changes})).into_response(),
        Ok(Err(problems)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "the pipeline file was not applied; the running configuration stays",
                "problems": problems,
            })),
        )
            .into_response(),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "verdict is stopping"),
    }
}

/// Routes a manual decision through the engine that owns the run.
async fn manual(
    c: Arc<Catalog>,
    action: ManualAction,
    contract: String,
    subject: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&c, &headers) {
        return refused;
    }
    // The body is optional: `{"reason": "..."}`.
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => match map.get("reason") {
                None | Some(Value::Null) => None,
                Some(Value::String(r)) => Some(r.clone()),
                Some(_) => return error(StatusCode::BAD_REQUEST, "reason must be a string"),
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    r#"the body must be empty or a JSON object such as {"reason": "..."}"#,
                )
            }
        }
    };
    let Some(engine) = c.commands.get(&contract) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown contract {contract:?}"),
        );
    };
    let (reply, answer) = oneshot::channel();
    let cmd = Command {
        action,
        contract,
        subject: subject.trim_start_matches('/').to_string(),
        reason,
        reply,
    };
    if engine.send(cmd).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "verdict is stopping");
    }
    match answer.await {
        Ok(Ok(run)) => Json(proto::run_json(&run)).into_response(),
        Ok(Err(e @ ManualError::NotFound(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ ManualError::Final { .. })) => error(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e @ ManualError::NotLeader(_))) => {
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1u32));
            resp
        }
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "verdict is stopping"),
    }
}
