//! The `webhook` exporter (design §5.5): each verdict event POSTed as JSON,
//! delivered from the outbox by its worker (`outbox.rs`), so a slow or dead
//! target never blocks ingest or evaluation.
//!
//! - body: the event as stored (`format: json`), or shaped for GitHub's
//!   `repository_dispatch` or a Slack incoming webhook (`format.rs`);
//! - headers: `Content-Type: application/json`, `X-Verdict-Event-Id` (stable
//!   across retries and restarts: receivers deduplicate on it), with a
//!   secret `X-Verdict-Signature: sha256=<hex HMAC-SHA256 of the body sent>`,
//!   with a token `Authorization: Bearer <token>`, and for GitHub its
//!   `Accept: application/vnd.github+json` and `X-GitHub-Api-Version`;
//! - 2xx is delivered (GitHub answers a dispatch with 204, Slack with 200
//!   `ok`); 4xx other than 408/429 is final (the request itself is wrong;
//!   retrying cannot help) and logged, except GitHub's rate limit, a 403
//!   with `Retry-After` or `x-ratelimit-remaining: 0`, which is retried;
//!   anything else — 408, 429, 5xx, timeouts, refused connections — is
//!   retried with exponential backoff and jitter until the event is
//!   `retry.max_elapsed` old, then marked failed (ERROR log,
//!   `verdict_webhook_deliveries_total{outcome="failed"}`, listed by
//!   `GET /api/v1/deliveries?state=failed`). The start of the answer's body
//!   is kept in the error (`HTTP 400 Bad Request: invalid_payload`): it is
//!   what GitHub and Slack say is wrong;
//! - redirects are never followed: a 3xx is a failed attempt, retried like
//!   a 5xx, its `Location` in the error (why: [`answer_error`]).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use std::sync::Arc;

use crate::config::{WebhookFormat, WebhookSpec};
use crate::model::UnixNanos;
use crate::retry::{answer_error, classify, error_chain, StatusClass};
use crate::storage::{Attempt, Delivery};

use super::format::{render, Links};

/// GitHub's REST API version the `github` format is written against.
const GITHUB_API_VERSION: &str = "2022-11-28";
/// Bytes of an answer's body kept in a failed attempt's error.
const ANSWER_SNIPPET: usize = 300;

/// The signature header value of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A configured webhook target.
#[derive(Debug, Clone)]
pub struct Webhook {
    spec: WebhookSpec,
    links: Arc<Links>,
    client: reqwest::Client,
}

/// Why a webhook could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The HTTP client.
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// Its TLS configuration (a certificate file that no longer reads).
    #[error("TLS: {0}")]
    Tls(String),
}

/// The HTTP client of an outgoing target (webhook, Unleash): its own
/// connection pool, `timeout` per attempt, no redirects, and for an
/// `https://` URL rustls with the system's roots plus `tls`.
pub(super) fn client(
    url: &str,
    tls: &crate::config::ClientTls,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, BuildError> {
    crate::tls::ensure_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("verdict/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if url.trim_start().to_ascii_lowercase().starts_with("https:") {
        builder = builder
            .tls_backend_preconfigured(crate::tls::client_config(tls).map_err(BuildError::Tls)?);
    }
    Ok(builder.build()?)
}

impl Webhook {
    /// The timeout of one HTTP request to the target.
    pub fn timeout(&self) -> std::time::Duration {
        self.spec.timeout
    }

    /// A webhook with its own HTTP client (connection pool, timeout, no
    /// redirects).
    pub fn new(spec: WebhookSpec, links: Arc<Links>) -> Result<Webhook, BuildError> {
        let client = client(&spec.url, &spec.tls, spec.timeout)?;
        Ok(Webhook {
            spec,
            links,
            client,
        })
    }

    /// One attempt at delivering `d`; `now` is when it starts.
    pub async fn attempt(&self, d: &Delivery, now: UnixNanos) -> Attempt {
        let body = match render(self.spec.format, &d.event, &self.links) {
            Ok(body) => body,
            // Rendering again gives the same answer: final.
            Err(e) => {
                return Attempt::Failed {
                    error: format!("{e} (final: not retried)"),
                }
            }
        };
        let mut request = self
            .client
            .post(&self.spec.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-Verdict-Event-Id", &d.event_id);
        if let Some(secret) = &self.spec.secret {
            request = request.header(
                "X-Verdict-Signature",
                signature(secret.as_bytes(), body.as_bytes()),
            );
        }
        if let Some(token) = &self.spec.token {
            request = request.bearer_auth(token);
        }
        if self.spec.format == WebhookFormat::Github {
            request = request
                .header(http::header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", GITHUB_API_VERSION);
        }
        let (error, retry_after) = match request.body(body).send().await {
            Ok(resp) => {
                let status = resp.status();
                let class = match classify(status.as_u16()) {
                    StatusClass::Final if self.rate_limited(&resp) => StatusClass::Retry,
                    class => class,
                };
                if class == StatusClass::Delivered {
                    return Attempt::Delivered;
                }
                let after = retry_after(resp.headers(), now);
                let mut error = answer_error(status, resp.headers());
                if let Some(said) = snippet(resp).await {
                    error = format!("{error}: {said}");
                }
                if class == StatusClass::Final {
                    return Attempt::Failed {
                        error: format!("{error} (final: not retried)"),
                    };
                }
                (error, after)
            }
            Err(e) => (describe(&e), None),
        };
        let retry = &self.spec.retry;
        let mut wait = retry
            .backoff()
            .jittered(d.attempts + 1, rand::random::<f64>());
        if let Some(after) = retry_after {
            // The target asked for a pause: honour it, within max_interval.
            wait = wait.max(after.min(retry.max_interval));
        }
        let next_at = now.saturating_add(crate::model::nanos(wait));
        let age = Duration::from_nanos(next_at.saturating_sub(d.created_at));
        if age > retry.max_elapsed {
            return Attempt::Failed {
                error: format!(
                    "{error}; gave up after {} attempt(s): retry.max_elapsed ({}) reached",
                    d.attempts + 1,
                    humantime::format_duration(retry.max_elapsed)
                ),
            };
        }
        Attempt::Retry { next_at, error }
    }

    /// GitHub's rate limits answer 403 (or 429) with `Retry-After` or
    /// `x-ratelimit-remaining: 0` (GitHub's "Rate limits for the REST API"):
    /// waiting helps, unlike a 403 for a token that lacks the permission.
    fn rate_limited(&self, resp: &reqwest::Response) -> bool {
        let headers = resp.headers();
        self.spec.format == WebhookFormat::Github
            && resp.status() == reqwest::StatusCode::FORBIDDEN
            && (headers.contains_key(http::header::RETRY_AFTER)
                || headers
                    .get("x-ratelimit-remaining")
                    .is_some_and(|v| v.as_bytes() == b"0"))
    }
}

/// How long the target asked to wait: `Retry-After` in seconds, else until
/// GitHub's `x-ratelimit-reset` (UTC epoch seconds) when the limit is spent.
fn retry_after(headers: &reqwest::header::HeaderMap, now: UnixNanos) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(secs) = number(http::header::RETRY_AFTER.as_str()) {
        return Some(Duration::from_secs(secs));
    }
    if number("x-ratelimit-remaining") != Some(0) {
        return None;
    }
    let reset = number("x-ratelimit-reset")?;
    Some(Duration::from_secs(
        reset.saturating_sub(now / 1_000_000_000),
    ))
}

/// The start of an answer's body on one line, or `None` when it has none:
/// what GitHub (`{"message":"Bad credentials",…}`) and Slack
/// (`invalid_payload`, `channel_not_found`) say went wrong. At most
/// [`ANSWER_SNIPPET`] bytes are read, whatever the target sends.
pub(crate) async fn snippet(mut resp: reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < ANSWER_SNIPPET {
        match resp.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let cut = bytes.len() > ANSWER_SNIPPET;
    bytes.truncate(ANSWER_SNIPPET);
    let text = String::from_utf8_lossy(&bytes);
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return None;
    }
    if cut {
        line.push('…');
    }
    Some(line)
}

/// A transport error as one line, with its causes (reqwest's Display omits
/// them).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(cause) => format!("{what}: {}", error_chain(cause)),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn waits_asked_for_by_retry_after_or_githubs_rate_limit_reset() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let now: UnixNanos = 1_800_000_000 * 1_000_000_000;
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert_eq!(retry_after(&headers(&[]), now), None);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let spent = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1800000030"),
        ]);
        assert_eq!(retry_after(&spent, now), Some(Duration::from_secs(30)));
        let left = headers(&[
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-reset", "1800000030"),
        ]);
        assert_eq!(retry_after(&left, now), None);
        // A reset already past asks for no wait (the backoff still applies).
        let past = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000000"),
        ]);
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn statuses_are_classified_per_design() {
        assert_eq!(classify(200), StatusClass::Delivered);
        assert_eq!(classify(204), StatusClass::Delivered);
        assert_eq!(classify(400), StatusClass::Final);
        assert_eq!(classify(404), StatusClass::Final);
        assert_eq!(classify(408), StatusClass::Retry);
        assert_eq!(classify(429), StatusClass::Retry);
        assert_eq!(classify(500), StatusClass::Retry);
        assert_eq!(classify(503), StatusClass::Retry);
        assert_eq!(classify(301), StatusClass::Retry);
    }
}
