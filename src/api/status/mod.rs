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
        .route("/runs", get(no_run_named))
        .route("/runs/", get(no_run_named))
        .route("/runs/{contract}", get(no_run_named))
        .route("/runs/{contract}/", get(no_run_named))
}

/// `/runs/…` without a whole subject: the 404 page says what a run's
/// address looks like, with the way back to the overview (where every run
/// is listed, by contract).
async fn no_run_named(State(c): State<Arc<Catalog>>) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "a run's page is /runs/CONTRACT/SUBJECT (the subject's values joined with /); the overview lists the runs still deciding and those decided last, /api/v1/runs/CONTRACT all of them",
        &rfc3339_millis(c.clock.now()),
    )
}

/// Whether `path` has a `%` that does not start a `%XX` escape.
fn bad_escape(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
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

/// Runs of a contract the overview shows at most, of those still
/// deciding and of the newest decided each: at 10,000 runs the whole list
/// was 2.8 MB of HTML, fetched again by every open tab's refresh.
const OVERVIEW_RUNS: usize = 200;

/// The runs the overview shows of `runs` (in their order): the
/// [`OVERVIEW_RUNS`] undecided ones started last and the
/// [`OVERVIEW_RUNS`] decided last; and how many are left out. Newest, not
/// first in the list: a flood of other subjects must not push the release
/// an operator is watching off the page.
fn shown(runs: Vec<Value>) -> (Vec<Value>, usize) {
    let deciding = |r: &Value| matches!(r["state"].as_str(), Some("PENDING" | "VALIDATING"));
    // RFC 3339 times of one format sort as text; a run with no sample yet
    // (no start) counts as the newest.
    let age = |r: &Value| -> String {
        let field = if deciding(r) {
            "started_at"
        } else {
            "decided_at"
        };
        r[field].as_str().unwrap_or("~").to_string()
    };
    // The time of the OVERVIEW_RUNS-th newest run of each kind.
    let cut = |undecided: bool| {
        let mut times: Vec<String> = runs
            .iter()
            .filter(|r| deciding(r) == undecided)
            .map(age)
            .collect();
        times.sort_unstable_by(|a, b| b.cmp(a));
        times.get(OVERVIEW_RUNS - 1).cloned()
    };
    let cuts = [cut(false), cut(true)];
    let total = runs.len();
    let mut kept_of = [0usize; 2];
    let kept: Vec<Value> = runs
        .into_iter()
        .filter(|r| {
            let kind = usize::from(deciding(r));
            let newer = cuts[kind]
                .as_deref()
                .is_none_or(|cut| age(r).as_str() >= cut);
            kept_of[kind] += usize::from(newer);
            newer && kept_of[kind] <= OVERVIEW_RUNS
        })
        .collect();
    let more = total - kept.len();
    (kept, more)
}

async fn overview(State(c): State<Arc<Catalog>>) -> Response {
    let now = rfc3339_millis(c.clock.now());
    let mut contracts = Vec::with_capacity(c.contracts.len());
    for spec in &c.contracts {
        match c.store.current_runs(&spec.name).await {
            Ok(runs) => {
                let (runs, more) = shown(
                    runs.iter()
                        .filter(|r| r.contract_version == spec.version)
                        .map(proto::run_json)
                        .collect::<Vec<Value>>(),
                );
                contracts.push((spec, runs, more));
            }
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
    uri: axum::http::Uri,
    PagePath((contract, subject)): PagePath<(String, String)>,
) -> Response {
    let now = rfc3339_millis(c.clock.now());
    if bad_escape(uri.path()) {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid %-escape in {} (a % is followed by two hex digits: %25 for % itself, %2F for /)",
                uri.path()
            ),
            &now,
        );
    }
    let body = match super::one_run(&c, &contract, &subject).await {
        Ok(b) => b,
        Err(e) => {
            let (status, message) = e.status();
            return error_page(status, &message, &now);
        }
    };
    // The API answers PENDING for a subject without a run, so that a
    // rollout controller waits; a person is told there is none (yet), not
    // shown a run that looks real.
    if body["run_id"].is_null() {
        return error_page(
            StatusCode::NOT_FOUND,
            &format!(
                "no run for this subject yet: {contract} has no current run of {} ({}); a subject becomes a run with its first sample",
                body["subject"].as_str().unwrap_or(&subject),
                body["reason"].as_str().unwrap_or("no sample received yet")
            ),
            &now,
        );
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_overview_shows_the_undecided_and_the_newest_decided_runs() {
        let mut runs = Vec::new();
        for i in 0..300 {
            runs.push(json!({"subject": format!("u{i}"), "state": "VALIDATING", "decided_at": null,
                             "started_at": format!("2026-12-03T09:{:02}:{:02}.000Z", i / 60, i % 60)}));
            runs.push(json!({"subject": format!("d{i}"), "state": "PROMOTED",
                             "decided_at": format!("2026-12-03T10:{:02}:{:02}.000Z", i / 60, i % 60)}));
        }
        let (kept, more) = shown(runs);
        assert_eq!((kept.len(), more), (2 * OVERVIEW_RUNS, 200));
        let subjects: Vec<&str> = kept.iter().filter_map(|r| r["subject"].as_str()).collect();
        // The newest undecided runs, whatever their place in the list.
        assert!(
            subjects.contains(&"u299") && subjects.contains(&"u100") && !subjects.contains(&"u99")
        );
        assert!(
            subjects.contains(&"d299") && subjects.contains(&"d100") && !subjects.contains(&"d99")
        );
        let (few, none) = shown(vec![
            json!({"state": "PENDING"}),
            json!({"state": "ROLLED_BACK"}),
        ]);
        assert_eq!((few.len(), none), (2, 0));
    }
}
