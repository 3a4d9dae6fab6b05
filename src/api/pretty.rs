//! `?pretty` on the API: the same JSON, indented for a person reading it
//! with curl. Done once, as a layer over every route, so no handler knows
//! about it and none can forget it: a JSON response of a request whose
//! query has `pretty` (`?pretty`, `?pretty=true`, `?pretty=1`) is
//! re-written indented; every other response passes untouched, and the
//! default stays compact (one line, what scripts and Argo Rollouts read),
//! as does `?pretty=false` / `=0` / `=no` / `=off` in any letter case.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::Response;

/// Whether the query asks for indented JSON: `pretty` alone or with a
/// value other than `false` / `0` / `no` / `off` (compared without letter
/// case, so `FALSE` and `False` say no as well). When `pretty` is given several
/// times, the last one counts, as with any repeated query parameter.
pub(crate) fn wants_pretty(query: Option<&str>) -> bool {
    query
        .and_then(|q| {
            q.rsplit('&').find_map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name == "pretty").then_some(value)
            })
        })
        .is_some_and(|value| {
            !(value == "0"
                || ["false", "no", "off"]
                    .iter()
                    .any(|no| value.eq_ignore_ascii_case(no)))
        })
}

/// The layer: indents the JSON of a response when the request asked.
pub(crate) async fn layer(request: Request, next: Next) -> Response {
    let pretty = wants_pretty(request.uri().query());
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(pretty && is_json) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The API's JSON bodies are whole in memory already (`Json`), and
    // bounded by the handlers' own limits.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let mut failed = Response::new(Body::from(format!(
                "{{\"error\": {}}}",
                serde_json::Value::String(format!("reading the answer: {err}"))
            )));
            *failed.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            failed
                .headers_mut()
                .insert(CONTENT_TYPE, parts.headers[CONTENT_TYPE].clone());
            return failed;
        }
    };
    let indented = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|value| serde_json::to_vec_pretty(&value).ok());
    let body = match indented {
        Some(mut text) => {
            text.push(b'\n');
            parts.headers.remove(CONTENT_LENGTH);
            Body::from(text)
        }
        None => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::wants_pretty;

    #[test]
    fn pretty_is_asked_by_name_alone_or_with_a_true_value() {
        for query in [
            "pretty",
            "pretty=true",
            "pretty=1",
            "limit=5&pretty",
            "pretty&limit=5",
            "pretty=TRUE",
            "pretty=0&pretty",
        ] {
            assert!(wants_pretty(Some(query)), "{query}");
        }
        for query in [
            "",
            "pretty=false",
            "pretty=0",
            "pretty=FALSE",
            "pretty=False",
            "pretty=no",
            "pretty=OFF",
            "limit=5&pretty=false",
            "pretty&pretty=0",
            "prettyish",
            "limit=5",
            "xpretty=1",
        ] {
            assert!(!wants_pretty(Some(query)), "{query}");
        }
        assert!(!wants_pretty(None));
    }
}
