//! The `prometheus` exporter (design §7): `/metrics` with the run and
//! window gauges ([`runs`]), verdict's own counters and gauges from the
//! process-wide `metrics` recorder, `verdict_build_info` and the standard
//! `process_*` metrics ([`process`]).
//!
//! The format follows the scraper's `Accept` header: OpenMetrics 1.0.0
//! when it prefers it (Prometheus does), the text format 0.0.4 otherwise
//! ([`exposition`]); the body is gzip-compressed when `Accept-Encoding`
//! allows it (Prometheus always asks): the repetitive text shrinks several
//! times (15 KB to 2.7 KB for one run, more with more runs).

pub mod exposition;
mod process;
mod runs;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::http_gzip::{accepts_gzip, gzip};
use crate::runs::Catalog;
use crate::telemetry;
use exposition::{Family, Format};

/// The `/metrics` route over `catalog`.
pub fn router(catalog: Arc<Catalog>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(catalog)
}

async fn scrape(State(catalog): State<Arc<Catalog>>, headers: HeaderMap) -> Response {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = Format::negotiate(header(header::ACCEPT));
    let body = exposition::render(&families(&catalog).await, format).into_bytes();
    let gzipped = accepts_gzip(header(header::ACCEPT_ENCODING)).then(|| gzip(&body));
    let mut resp = match gzipped {
        Some(Ok(compressed)) => (
            [
                (header::CONTENT_TYPE, format.content_type()),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            compressed,
        )
            .into_response(),
        // Compressing into memory cannot fail; if it did, the plain body goes.
        Some(Err(_)) | None => {
            ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
        }
    };
    resp.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    resp
}

/// Every family of a scrape, in a stable order.
pub async fn families(catalog: &Catalog) -> Vec<Family> {
    let mut families = runs::families(catalog).await;
    families.extend(exposition::parse_recorder(
        &telemetry::metrics_handle().render(),
    ));
    families.push(process::build_info());
    families.extend(process::families());
    families
}
