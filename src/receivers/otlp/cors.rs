//! CORS on OTLP/HTTP, for browser SDKs, as the OpenTelemetry Collector's
//! `cors` setting does it: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) from an allowed origin is answered
//! `204` with `Access-Control-Allow-Origin`, `-Methods` (`POST`),
//! `-Headers` and `-Max-Age`; an export from an allowed origin carries
//! `Access-Control-Allow-Origin` (its own refusals too, so that the page
//! can read why). Another origin gets no CORS header at all — its
//! preflight is refused `403` — so the browser keeps the page from
//! sending or reading. Without `cors:` nothing changes.
//!
//! The headers are tower-http's `CorsLayer`; [`guard`] in front of it keeps
//! it from answering what is not a preflight of an allowed origin (it
//! answers every `OPTIONS`, with its allow headers whatever the origin).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::config::CorsSpec;

/// `router` with the CORS of `spec`.
pub fn layer(router: Router, spec: &CorsSpec) -> Router {
    let origins = Arc::new(Origins(spec.allowed_origins.clone()));
    let allow_origin = if origins.any() {
        AllowOrigin::any()
    } else {
        let matcher = origins.clone();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| matcher.allows(origin))
    };
    let allow_headers = if spec.allowed_headers.iter().any(|h| h == "*") {
        AllowHeaders::mirror_request()
    } else {
        AllowHeaders::list(
            SAFELISTED
                .iter()
                .map(|h| h.to_string())
                .chain(spec.allowed_headers.iter().cloned())
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        )
    };
    let mut cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST])
        .allow_headers(allow_headers);
    if let Some(max_age) = spec.max_age {
        cors = cors.max_age(max_age);
    }
    router
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(origins, guard))
}

/// Headers a browser may send without their being allowed (the
/// CORS-safelisted request headers), always allowed, as the Collector does.
const SAFELISTED: [&str; 4] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
];

/// The allowed origin patterns, lower case.
#[derive(Debug)]
struct Origins(Vec<String>);

impl Origins {
    /// True when `*` allows any origin.
    fn any(&self) -> bool {
        self.0.iter().any(|p| p == "*")
    }

    /// True when `origin` is an origin (`scheme://host[:port]`) that
    /// matches a pattern; a `*` stands for any run of host or port
    /// characters (`https://*.example.com`), never for a path or a
    /// fragment (`https://evil.com/.example.com` is no origin at all).
    fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.to_ascii_lowercase();
        if !is_origin(&origin) {
            return false;
        }
        self.0.iter().any(|pattern| match pattern.split_once('*') {
            None => *pattern == origin,
            Some((prefix, suffix)) => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix)
                    && origin.ends_with(suffix)
            }
        })
    }
}

/// Whether `origin` (lower case) is `http(s)://host[:port]`: a host of
/// letters, digits, `.` and `-` (or a bracketed IPv6 address), a port of
/// digits, nothing after.
fn is_origin(origin: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty()
            && v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

/// Lets through to the CORS layer only what it should answer: a
/// preflight of an allowed origin (answered 204) and every `POST`
/// (which it marks only when the origin is allowed). A preflight of
/// another origin is refused without CORS headers; an `OPTIONS` that is
/// no preflight is what it was without CORS, 405.
async fn guard(State(origins): State<Arc<Origins>>, req: Request, next: Next) -> Response {
    if req.method() != Method::OPTIONS {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN);
    let preflight = origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if !preflight {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
    }
    if !origin.is_some_and(|o| origins.any() || origins.allows(o)) {
        return (
            StatusCode::FORBIDDEN,
            "origin not allowed by this receiver's cors.allowed_origins\n",
        )
            .into_response();
    }
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = StatusCode::NO_CONTENT;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_around_one_wildcard() {
        let origins = Origins(vec![
            "https://app.example.com".into(),
            "https://*.example.org".into(),
            "http://localhost:*".into(),
        ]);
        let allows = |o: &str| origins.allows(&HeaderValue::from_str(o).expect("a value"));
        assert!(allows("https://app.example.com"));
        assert!(allows("HTTPS://APP.EXAMPLE.COM"));
        assert!(!allows("https://app.example.com.evil.net"));
        assert!(!allows("http://app.example.com"));
        assert!(allows("https://shop.example.org"));
        assert!(allows("https://a.b.example.org"));
        assert!(!allows("https://example.org"));
        assert!(!allows("https://evilexample.org"));
        assert!(allows("http://localhost:3000"));
        assert!(!allows("null"));
        // A wildcard matches within the host, never across a path,
        // fragment, query or user part.
        assert!(!allows("https://evil.com/.example.org"));
        assert!(!allows("https://evil.com#.example.org"));
        assert!(!allows("https://evil.com?.example.org"));
        assert!(!allows("https://evil.com@x.example.org"));
        assert!(!allows("http://localhost:30/00"));
        assert!(Origins(vec!["http://[::1]:*".into()])
            .allows(&HeaderValue::from_static("http://[::1]:8080")));
        assert!(!origins.any());
        assert!(Origins(vec!["*".into()]).any());
    }
}
