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

use std::io::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

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

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    encoder.finish()
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

/// True when `Accept-Encoding` allows gzip: `gzip` (or `x-gzip`, or `*`
/// when gzip is not named) with a weight above 0.
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let (mut gzip, mut any) = (None, None);
    for coding in accept_encoding.unwrap_or("").split(',') {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse::<f64>().unwrap_or(0.0));
        match name.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q),
            "*" => any = Some(q),
            _ => {}
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_when_the_scraper_allows_it() {
        for yes in [
            "gzip",
            "deflate, gzip",
            "gzip;q=0.5",
            "x-gzip",
            "*",
            "br, *;q=0.1",
        ] {
            assert!(accepts_gzip(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "*, gzip;q=0",
            "*;q=0",
        ] {
            assert!(!accepts_gzip(Some(no)), "{no}");
        }
        assert!(!accepts_gzip(None));
    }
}
