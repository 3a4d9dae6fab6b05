//! What a probe sends: the target, the request, how many and how fast. Both
//! `verdict probe` and the `probe` receiver build a [`ProbePlan`], through the
//! same parse functions, so a header or URL means the same on the command
//! line and in a pipeline file.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

/// The resource attribute that marks synthetic traffic; always `true` on a
/// probe's samples.
pub const SYNTHETIC_ATTRIBUTE: &str = "verdict.synthetic";

/// Default number of requests when neither a count nor a duration is given.
pub const DEFAULT_REQUESTS: u64 = 1000;
/// Default number of requests in flight.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default response header that marks a conversion.
pub const DEFAULT_CONVERSION_HEADER: &str = "x-validation-converted";
/// Most requests in flight a plan may ask for: each holds a connection.
pub const MAX_CONCURRENCY: usize = 10_000;

/// How long a probe goes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Exactly this many requests.
    Requests(u64),
    /// As many requests as fit in this time; no request starts after it.
    Duration(Duration),
}

/// Everything the engine needs to run one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePlan {
    /// Target URL (`http://` or `https://`).
    pub url: Url,
    /// TLS of an `https://` target (default: the system's roots).
    pub tls: super::ClientTls,
    /// HTTP method (default GET).
    pub method: Method,
    /// Extra request headers, sent with every request.
    pub headers: HeaderMap,
    /// Request body, sent with every request.
    pub body: Option<Bytes>,
    /// How many requests, or for how long.
    pub amount: Amount,
    /// Requests in flight at once; also the size of the keep-alive pool.
    pub concurrency: usize,
    /// Per request, from sending to the end of the response body.
    pub timeout: Duration,
    /// Requests per second over the whole probe; `None` = as fast as the
    /// target answers.
    pub rate: Option<f64>,
    /// Response header whose value `true` on a 2xx marks a conversion.
    pub conversion_header: HeaderName,
    /// Whether a 4xx answer is a success (default: an error, like a 5xx;
    /// 2xx and 3xx succeed).
    pub allow_4xx: bool,
}

impl ProbePlan {
    /// A plan with the defaults: GET, no headers or body, 1000 requests at
    /// concurrency 10, 5 s timeout, no rate limit, 4xx answers are errors.
    pub fn new(url: Url) -> ProbePlan {
        ProbePlan {
            url,
            tls: super::ClientTls::default(),
            method: Method::GET,
            headers: HeaderMap::new(),
            body: None,
            amount: Amount::Requests(DEFAULT_REQUESTS),
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            rate: None,
            conversion_header: HeaderName::from_static(DEFAULT_CONVERSION_HEADER),
            allow_4xx: false,
        }
    }
}

/// An `http://` or `https://` URL with a host.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "http" | "https" => Err(format!("invalid URL {text:?}: it has no host")),
        other => Err(format!(
            "invalid URL {text:?}: the scheme must be http or https, got {other:?}"
        )),
    }
}

/// A rate limit in requests per second: finite and greater than 0.
pub fn check_rate(rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "must be a number of requests per second greater than 0, got {rate}"
        ))
    }
}

/// An HTTP method name (`GET`, `post`, …), upper-cased.
pub fn parse_method(text: &str) -> Result<Method, String> {
    Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid HTTP method {text:?}"))
}

/// A header name (`x-validation-converted`).
pub fn parse_header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.trim().as_bytes())
        .map_err(|_| format!("invalid header name {text:?}"))
}

/// One header from its name and value.
pub fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = parse_header_name(name)?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid value for header {name}: {value:?}"))?;
    Ok((name, value))
}

/// One header written `Name: value` (or `Name:value`), as `--header` takes it.
pub fn parse_header_line(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid header {text:?}: expected NAME:VALUE"))?;
    header(name, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_methods_and_headers() {
        assert_eq!(
            parse_url("http://127.0.0.1:3000/api/v1/mvp")
                .map(|u| u.path().to_string())
                .as_deref(),
            Ok("/api/v1/mvp")
        );
        assert!(parse_url("https://example.test/").is_ok());
        assert!(parse_url("ftp://example.test/")
            .unwrap_err()
            .contains("scheme must be http"));
        assert!(parse_url("localhost:3000").is_err());
        assert!(parse_url("not a url").is_err());
        assert_eq!(parse_method("post"), Ok(Method::POST));
        assert!(parse_method("GE T").is_err());
        let (name, value) = parse_header_line("X-Tenant: blue").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-tenant", "blue")
        );
        assert!(parse_header_line("no colon").is_err());
        assert!(parse_header_line("bad name: v").is_err());
    }
}
