//! gzip for HTTP answers: whether a client's `Accept-Encoding` allows it,
//! the compression itself, and a layer that compresses the API listener's
//! answers (the status page's HTML of thousands of runs, the run lists'
//! JSON) the way `/metrics` is: the repetitive text shrinks several times.

use std::io::Write as _;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Answers smaller than this go as they are: compressing saves nothing.
const MIN_BYTES: usize = 1024;
/// Answers larger than this (none of verdict's) go as they are, unread.
const MAX_BYTES: usize = 64 << 20;

/// `body` gzip-compressed.
pub(crate) fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// True when `Accept-Encoding` allows gzip: `gzip` (or `x-gzip`, or `*`
/// when gzip is not named) with a weight above 0.
pub(crate) fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
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

/// Compresses an answer when the request allows gzip and the answer is
/// not encoded already (and not tiny); says `Vary: Accept-Encoding` so a
/// cache keeps both forms apart.
pub(crate) async fn layer(req: Request, next: Next) -> Response {
    let wanted = accepts_gzip(
        req.headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let resp = next.run(req).await;
    if !wanted || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BYTES).await else {
        // Unreadable here means unreadable for the client too.
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if bytes.len() < MIN_BYTES {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    match gzip(&bytes) {
        Ok(compressed) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            Response::from_parts(parts, axum::body::Body::from(compressed))
        }
        // Compressing into memory cannot fail; if it did, the plain body goes.
        Err(_) => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
