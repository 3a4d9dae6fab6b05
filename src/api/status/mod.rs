//! The status page on the API listener: `/` lists the runs by contract,
//! `/runs/{contract}/{subject}` shows one run with its windows charted
//! against the thresholds, its checks' confidence bounds, its transitions
//! and its undelivered events.
//!
//! Server-rendered HTML from the same run JSON the API answers, readable on
//! a phone and complete without JavaScript (a small inline script only
//! refreshes it in place). It is read-only: it offers no write action, so
//! serving it never exposes what the API token protects. A strict Content
//! Security Policy allows only its own inline style and script (by hash)
//! and requests to its own origin.

mod chart;
mod html;

use std::sync::{Arc, LazyLock};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::model::rfc3339_millis;
use crate::proto;
use crate::runs::Catalog;
use crate::storage::DeliveryState;

/// Undelivered events read for a run page.
const DELIVERIES: usize = 1000;

/// The routes of the status page.
pub fn routes() -> Router<Arc<Catalog>> {
    Router::new()
        .route("/", get(overview))
        .route("/runs/{contract}/{*subject}", get(run))
}

/// Any other path: the page's own 404, so a person who mistyped an
/// address (or followed a stale link) gets a page with a way back, not an
/// empty answer (under `/api/`, the API's JSON error).
pub async fn not_found(State(c): State<Arc<Catalog>>, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return super::error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", uri.path()),
        );
    }
    let now = rfc3339_millis(c.clock.now());
    error_page(
        StatusCode::NOT_FOUND,
        &format!("no page at {}", uri.path()),
        &now,
    )
}

/// Path parameters whose rejection (a segment that is not UTF-8 once
/// percent-decoded, `/runs/%FF/x`) answers the page's HTML error, like
/// every other page error, not axum's plain text.
struct PagePath<T>(T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<Arc<Catalog>>
    for PagePath<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        c: &Arc<Catalog>,
    ) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, c).await {
            Ok(Path(value)) => Ok(PagePath(value)),
            Err(rejection) => Err(error_page(
                rejection.status(),
                &rejection.body_text(),
                &rfc3339_millis(c.clock.now()),
            )),
        }
    }
}

/// The page's Content Security Policy: nothing but its own inline style,
/// its own script (by hash) and fetches of itself.
static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(html::SCRIPT));
    let policy = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; \
         connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

fn page(status: StatusCode, title: &str, as_of: &str, body: &str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_SECURITY_POLICY, POLICY.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        html::layout(title, as_of, body),
    )
        .into_response()
}

fn error_page(status: StatusCode, message: &str, as_of: &str) -> Response {
    let body = format!(
        r#"<section><h1>{}</h1><p>{}</p><p><a href="/">All runs</a></p></section>"#,
        status.as_u16(),
        html::esc(message)
    );
    page(status, "error", as_of, &body)
}

async fn overview(State(c): State<Arc<Catalog>>) -> Response {
    let now = rfc3339_millis(c.clock.now());
    let mut contracts = Vec::with_capacity(c.contracts.len());
    for spec in &c.contracts {
        match c.store.current_runs(&spec.name).await {
            Ok(runs) => contracts.push((
                spec,
                runs.iter()
                    .filter(|r| r.contract_version == spec.version)
                    .map(proto::run_json)
                    .collect::<Vec<Value>>(),
            )),
            Err(e) => {
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("storage: {e}"),
                    &now,
                )
            }
        }
    }
    let failed = c
        .store
        .deliveries(&[DeliveryState::Failed], DELIVERIES)
        .await
        .map_or(0, |d| d.len());
    let banner = match (c.not_ready(), failed) {
        (Some(why), _) => Some(format!("Not ready: {why}")),
        (None, 0) => None,
        (None, n) => Some(format!(
            "{n} event deliveries failed for good (GET /api/v1/deliveries?state=failed)"
        )),
    };
    page(
        StatusCode::OK,
        "runs",
        &now,
        &html::overview(&contracts, &now, banner.as_deref()),
    )
}

async fn run(
    State(c): State<Arc<Catalog>>,
    PagePath((contract, subject)): PagePath<(String, String)>,
) -> Response {
    let now = rfc3339_millis(c.clock.now());
    let body = match super::one_run(&c, &contract, &subject).await {
        Ok(b) => b,
        Err(e) => {
            let (status, message) = e.status();
            return error_page(status, &message, &now);
        }
    };
    let Some(spec) = c.contract(&contract) else {
        return error_page(StatusCode::NOT_FOUND, "unknown contract", &now);
    };
    let run_id = body["run_id"].as_str();
    let pending: Vec<Value> = match (
        run_id,
        c.store
            .deliveries(&[DeliveryState::Pending, DeliveryState::Failed], DELIVERIES)
            .await,
    ) {
        (Some(id), Ok(list)) => list
            .iter()
            .map(super::delivery_json)
            .filter(|d| d["event"]["run_id"].as_str() == Some(id))
            .collect(),
        _ => Vec::new(),
    };
    // The subject as the page shows it: escapes for what would not show as
    // itself (a control or bidi character in a tab's title).
    let title = format!(
        "{} {}",
        spec.name,
        crate::console::fmt::text(&body["subject"])
    );
    page(
        StatusCode::OK,
        &title,
        &now,
        &html::run_page(spec, &body, &pending, &now),
    )
}
