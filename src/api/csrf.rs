//! Cross-site request forgery guard of the write endpoints.
//!
//! With no `service.api.token` (the default pipeline, a laptop, a jump
//! host), the write endpoints take any request. Scripts, Flagger and Argo
//! are meant to; a web page the operator happens to have open is not: a
//! "simple" cross-origin `POST` (`Content-Type: text/plain`, no preflight)
//! reaches the endpoint whatever CORS says, and DNS rebinding makes even a
//! same-origin check pass. Browsers mark every request they send with
//! `Origin` (on `POST`) or the `Sec-Fetch-*` headers, and the clients the
//! write endpoints exist for send neither, so an unauthenticated write that
//! carries those marks is refused. With a token the browser cannot forge
//! the `Authorization` header, so a request that presents the token passes
//! whatever its origin.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::runs::Catalog;

/// Headers only a browser sets on its own.
const BROWSER_MARKS: [&str; 3] = ["origin", "sec-fetch-site", "sec-fetch-mode"];

/// Whether `headers` show a request sent by a web browser (a page's
/// `fetch`, a form, a navigation).
fn from_browser(headers: &HeaderMap) -> bool {
    BROWSER_MARKS.iter().any(|name| headers.contains_key(*name))
}

/// Whether a request may change state without a token: safe methods
/// always may; the others only when no browser sent them.
pub(super) fn write_allowed_without_token(method: &Method, headers: &HeaderMap) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || !from_browser(headers)
}

/// The middleware over the API routes: a no-op once a token is configured
/// (the endpoints then check it themselves).
pub(super) async fn guard(State(c): State<Arc<Catalog>>, request: Request, next: Next) -> Response {
    if c.api_token.is_some() || write_allowed_without_token(request.method(), request.headers()) {
        return next.run(request).await;
    }
    super::error(
        StatusCode::FORBIDDEN,
        "a write request sent by a web browser is refused while `service.api.token` is not set \
         (it could come from any page the browser has open); set a token and send it as \
         `Authorization: Bearer <token>`, or call the endpoint from a script",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn scripts_write_and_browsers_only_read() {
        let curl = headers(&[("user-agent", "curl/8.0"), ("content-type", "text/plain")]);
        assert!(write_allowed_without_token(&Method::POST, &curl));
        for mark in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-mode", "no-cors"),
        ] {
            let browser = headers(&[mark]);
            assert!(
                !write_allowed_without_token(&Method::POST, &browser),
                "{mark:?}"
            );
            assert!(
                !write_allowed_without_token(&Method::DELETE, &browser),
                "{mark:?}"
            );
            assert!(
                write_allowed_without_token(&Method::GET, &browser),
                "{mark:?}"
            );
        }
    }
}
