//! The `webhook` exporter (design §5.5): each verdict event POSTed as JSON,
//! delivered from the outbox by its worker (`outbox.rs`), so a slow or dead
//! target never blocks ingest or evaluation.
//!
//! - headers: `Content-Type: application/json`, `X-Verdict-Event-Id` (stable
//!   across retries and restarts: receivers deduplicate on it) and, with a
//!   secret, `X-Verdict-Signature: sha256=<hex HMAC-SHA256 of the body>`;
//! - 2xx is delivered; 4xx other than 408/429 is final (the request itself is
//!   wrong; retrying cannot help) and logged; anything else — 408, 429, 5xx,
//!   timeouts, refused connections — is retried with exponential backoff and
//!   jitter until the event is `retry.max_elapsed` old, then marked failed
//!   (ERROR log, `verdict_webhook_deliveries_total{outcome="failed"}`,
//!   listed by `GET /api/v1/deliveries?state=failed`);
//! - redirects are never followed: a 3xx is a failed attempt, retried like
//!   a 5xx, its `Location` in the error (why: [`answer_error`]).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::WebhookSpec;
use crate::model::UnixNanos;
use crate::retry::{answer_error, classify, error_chain, StatusClass};
use crate::storage::{Attempt, Delivery};

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
    client: reqwest::Client,
}

/// Why a webhook could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

impl Webhook {
    /// A webhook with its own HTTP client (connection pool, timeout, no
    /// redirects).
    pub fn new(spec: WebhookSpec) -> Result<Webhook, BuildError> {
        let client = reqwest::Client::builder()
            .timeout(spec.timeout)
            .user_agent(concat!("verdict/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Webhook { spec, client })
    }

    /// One attempt at delivering `d`; `now` is when it starts.
    pub async fn attempt(&self, d: &Delivery, now: UnixNanos) -> Attempt {
        let mut request = self
            .client
            .post(&self.spec.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-Verdict-Event-Id", &d.event_id)
            .body(d.event.clone());
        if let Some(secret) = &self.spec.secret {
            request = request.header(
                "X-Verdict-Signature",
                signature(secret.as_bytes(), d.event.as_bytes()),
            );
        }
        let (error, retry_after) = match request.send().await {
            Ok(resp) => {
                let status = resp.status();
                match classify(status.as_u16()) {
                    StatusClass::Delivered => return Attempt::Delivered,
                    StatusClass::Final => {
                        return Attempt::Failed {
                            error: format!("HTTP {status} (final: not retried)"),
                        }
                    }
                    StatusClass::Retry => {
                        let after = resp
                            .headers()
                            .get(http::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        (answer_error(status, resp.headers()), after)
                    }
                }
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
}

/// A transport error as one line, with its causes (reqwest's Display omits
/// them).
fn describe(e: &reqwest::Error) -> String {
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
