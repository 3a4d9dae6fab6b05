//! Checks of single values: addresses, tokens, numbers, durations and sizes.

use super::*;

/// A listen address: `default` when absent or empty, else checked to be
/// `host:port` (an IP address, `[v6]`, or a host name; port 0–65535).
pub(super) fn endpoint(
    raw: Field<String>,
    default: &str,
    path: &str,
    errors: &mut Errors,
) -> String {
    let endpoint = match take(raw, path, errors) {
        Some(e) if !e.trim().is_empty() => e,
        _ => return default.to_string(),
    };
    if let Err(reason) = check_endpoint(&endpoint) {
        errors.push(path, format!("invalid endpoint {endpoint:?}: {reason}"));
    }
    endpoint
}

pub(super) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected host:port, e.g. 0.0.0.0:4317";
    if endpoint.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(EXPECTED.to_string());
    };
    if port.parse::<u16>().is_err() {
        return Err(
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                "the port must be between 0 and 65535".to_string()
            } else {
                EXPECTED.to_string()
            },
        );
    }
    if host.is_empty() {
        return Err("the host is missing (0.0.0.0 listens on every interface)".to_string());
    }
    if host.starts_with('[') || host.contains(':') {
        return Err("invalid IPv6 address (written [addr]:port)".to_string());
    }
    if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
        return Err(format!("{host:?} is not an IP address or host name"));
    }
    Ok(())
}

/// RFC 1123 host name: dot-separated labels of letters, digits and `-`, not
/// all numeric (that would be a malformed IPv4 address).
pub(super) fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    host.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !labels
            .iter()
            .all(|label| label.bytes().all(|b| b.is_ascii_digit()))
}

/// A bearer token: `None` when absent or empty; else it must be sendable in
/// an `Authorization` header.
pub(super) fn token(raw: Field<String>, path: &str, errors: &mut Errors) -> Option<String> {
    let token = take(raw, path, errors).filter(|t| !t.is_empty())?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        errors.push(
            path,
            "must contain only printable ASCII characters without spaces",
        );
    }
    Some(token)
}

/// An integer field: `default` when absent; reported when outside
/// `[min, max]`.
pub(super) fn int_in(
    raw: Field<Int>,
    default: i64,
    min: i64,
    max: i64,
    path: &str,
    errors: &mut Errors,
) -> i64 {
    let Some(Int(v)) = take(raw, path, errors) else {
        return default;
    };
    if v < min {
        errors.push(path, format!("must be at least {min}, got {v}"));
    } else if v > max {
        errors.push(path, format!("must be at most {max}, got {v}"));
    }
    v
}

/// `Some(v)` for a finite number; reports NaN and infinities.
pub(super) fn finite(raw: Field<Num>, path: &str, errors: &mut Errors) -> Option<f64> {
    let Num(v) = take(raw, path, errors)?;
    if v.is_finite() {
        Some(v)
    } else {
        errors.push(path, format!("must be a finite number, got {v}"));
        None
    }
}

/// A threshold that must be > 0 (latencies).
pub(super) fn positive(raw: Field<Num>, path: &str, errors: &mut Errors) -> Option<f64> {
    let v = finite(raw, path, errors)?;
    if v > 0.0 {
        Some(v)
    } else {
        errors.push(path, format!("must be greater than 0, got {v}"));
        None
    }
}

/// A threshold that must be ≥ 0 (increases in percent).
pub(super) fn non_negative(raw: Field<Num>, path: &str, errors: &mut Errors) -> Option<f64> {
    let v = finite(raw, path, errors)?;
    if v >= 0.0 {
        Some(v)
    } else {
        errors.push(path, format!("must be at least 0, got {v}"));
        None
    }
}

/// A percentage in [0, 100].
pub(super) fn percent(raw: Field<Num>, path: &str, errors: &mut Errors) -> Option<f64> {
    let v = finite(raw, path, errors)?;
    if (0.0..=100.0).contains(&v) {
        Some(v)
    } else {
        errors.push(path, format!("must be between 0 and 100, got {v}"));
        None
    }
}

/// A byte size that must be > 0; `default` when absent.
pub(super) fn byte_size(
    raw: Field<ByteSize>,
    default: u64,
    path: &str,
    errors: &mut Errors,
) -> u64 {
    let Some(ByteSize(v)) = take(raw, path, errors) else {
        return default;
    };
    if v == 0 {
        errors.push(path, "must be greater than 0");
    }
    v
}

/// A duration that must be > 0; `default` when absent.
pub(super) fn positive_duration(
    raw: Field<HumanDuration>,
    default: Duration,
    path: &str,
    errors: &mut Errors,
) -> Duration {
    optional_positive_duration(raw, path, errors).unwrap_or(default)
}

/// A duration that must be > 0; `None` when absent.
pub(super) fn optional_positive_duration(
    raw: Field<HumanDuration>,
    path: &str,
    errors: &mut Errors,
) -> Option<Duration> {
    let HumanDuration(d) = take(raw, path, errors)?;
    if d.is_zero() {
        errors.push(path, "must be greater than 0");
    }
    Some(d)
}
