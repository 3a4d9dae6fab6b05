//! The HTTP API (design §7): health, readiness, and the run read endpoints
//! that people, Argo Rollouts' `web` metric provider and scripts call.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::model::rfc3339_millis;
use crate::runs::RunState;
use crate::topology::Catalog;

/// Window results returned with one run.
const WINDOW_HISTORY: usize = 100;

/// The API routes over `catalog`.
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/api/v1/runs", get(all_runs))
        .route("/api/v1/runs/{contract}", get(contract_runs))
        .route("/api/v1/runs/{contract}/{*subject}", get(subject_run))
        .with_state(catalog)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn store_error(err: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, format!("storage: {err}"))
}

async fn readyz(State(c): State<Arc<Catalog>>) -> Response {
    if c.ready.load(Ordering::SeqCst) {
        Json(json!({"status": "ready"})).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "not ready")
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
    match c.store.runs(limit) {
        Ok(runs) => Json(json!({"runs": runs.iter().map(|r| r.to_json()).collect::<Vec<_>>()}))
            .into_response(),
        Err(e) => store_error(e),
    }
}

async fn contract_runs(State(c): State<Arc<Catalog>>, Path(contract): Path<String>) -> Response {
    if c.contract(&contract).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown contract {contract:?}"),
        );
    }
    match c.store.current_runs(&contract) {
        Ok(runs) => Json(json!({"runs": runs.iter().map(|r| r.to_json()).collect::<Vec<_>>()}))
            .into_response(),
        Err(e) => store_error(e),
    }
}

/// One run with its window history. A known contract always answers 200: a
/// subject with no data yet is PENDING, so Argo Rollouts sees "inconclusive"
/// rather than an error.
async fn subject_run(
    State(c): State<Arc<Catalog>>,
    Path((contract, subject)): Path<(String, String)>,
) -> Response {
    let Some(spec) = c.contract(&contract) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown contract {contract:?}"),
        );
    };
    let subject = subject.trim_start_matches('/');
    let run = match c.store.current(&contract, subject) {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let Some(run) = run else {
        let values: Vec<&str> = subject.split('/').collect();
        let attributes: serde_json::Map<String, Value> = if values.len() == spec.subject_by.len() {
            spec.subject_by
                .iter()
                .zip(values)
                .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
                .collect()
        } else {
            serde_json::Map::new()
        };
        return Json(json!({
            "contract": contract,
            "contract_version": spec.version,
            "subject": subject,
            "subject_attributes": attributes,
            "run_id": null,
            "state": RunState::Pending,
            "reason": "no sample received yet",
            "started_at": null,
            "decided_at": null,
            "run": {"started_at": null, "samples": 0, "windows": 0, "p95_latency_ms": null,
                    "error_rate_percent": null, "conversion_rate_percent": null},
            "superseded": false,
            "windows": [],
            "as_of": rfc3339_millis(c.clock.now()),
        }))
        .into_response();
    };
    let windows = match c.store.windows(&run.run_id, WINDOW_HISTORY) {
        Ok(w) => w,
        Err(e) => return store_error(e),
    };
    let mut body = run.to_json();
    body["windows"] = Value::Array(windows.iter().map(|w| w.to_json()).collect());
    Json(body).into_response()
}
