//! `cors:` of the OTLP/HTTP listener: the origins whose pages may send
//! telemetry from a browser, the headers they may send, how long a
//! preflight answer may be cached.

use super::*;

/// The CORS of a listener, `None` when absent; every problem is reported
/// at its path (`…cors.allowed_origins[1]`).
pub(super) fn cors(
    raw: Field<MapOnly<RawCors>>,
    path: &str,
    errors: &mut Errors,
) -> Option<CorsSpec> {
    let MapOnly(raw) = take(raw, path, errors)?;
    let before = errors.len();
    let origins_path = join(path, "allowed_origins");
    let allowed_origins: Vec<String> = list_items(raw.allowed_origins, &origins_path, errors)
        .unwrap_or_default()
        .into_iter()
        .map(|o| o.to_ascii_lowercase())
        .collect();
    if allowed_origins.is_empty() {
        errors.push(
            &origins_path,
            "required: at least one origin (https://app.example.com, https://*.example.com, or * for any)",
        );
    }
    for (i, origin) in allowed_origins.iter().enumerate() {
        if let Err(why) = check_origin(origin) {
            errors.push(format!("{origins_path}[{i}]"), why);
        }
    }
    let headers_path = join(path, "allowed_headers");
    let allowed_headers: Vec<String> = list_items(raw.allowed_headers, &headers_path, errors)
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    for (i, header) in allowed_headers.iter().enumerate() {
        if header != "*" && http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            errors.push(
                format!("{headers_path}[{i}]"),
                format!("{header:?} is not a header name (or * for any)"),
            );
        }
    }
    let max_age = raw.max_age.is_some().then(|| {
        let seconds = int_in(raw.max_age, 0, 0, 86_400, &join(path, "max_age"), errors);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    });
    (errors.len() == before).then_some(CorsSpec {
        allowed_origins,
        allowed_headers,
        max_age,
    })
}

/// An allowed origin: `*`, or `http(s)://host[:port]` (no path) with at
/// most one `*` in the host.
fn check_origin(origin: &str) -> Result<(), String> {
    const HOW: &str = "write scheme://host[:port] (https://app.example.com), with at most one * \
                       (https://*.example.com), or * for any";
    if origin == "*" {
        return Ok(());
    }
    let Some(host) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return Err(format!("{origin:?} is not an origin: {HOW}"));
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!(
            "{origin:?} is not an origin (no path, no trailing /): {HOW}"
        ));
    }
    if host.matches('*').count() > 1 {
        return Err(format!("{origin:?} has more than one *: {HOW}"));
    }
    Ok(())
}
