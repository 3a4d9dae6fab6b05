//! `--on-pass` / `--on-fail`: POST the result JSON to a URL, retrying with
//! exponential backoff. A 2xx is delivered; a 4xx other than 408 and 429 is
//! final (the receiver rejected this body and will again); anything else —
//! 5xx, 408, 429, a 3xx, a timeout, a refused connection — is retried.
//! Redirects are not followed, as for webhooks (why:
//! [`answer_error`](crate::retry::answer_error)); the error names the
//! location, and a transport error its root cause.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;

use crate::retry::{answer_error, classify, error_chain, Backoff, StatusClass};

/// How often and how patiently a hook is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (≥ 1).
    pub attempts: u32,
    /// Waits between attempts: 0.5 s doubling up to 8 s by default.
    pub backoff: Backoff,
    /// Per attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waits of 0.5 s, 1 s, 2 s, 4 s; 10 s per attempt.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            backoff: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(8),
            },
            timeout: Duration::from_secs(10),
        }
    }
}

/// A hook that could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// The receiver answered with a status that retrying cannot change.
    #[error("{url} answered {status} (not retried)")]
    Rejected {
        /// Hook URL.
        url: String,
        /// Its answer.
        status: StatusCode,
    },
    /// Every attempt failed.
    #[error("{url}: gave up after {attempts} attempts, last: {last}")]
    GaveUp {
        /// Hook URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// What the last attempt got.
        last: String,
    },
}

/// The client hooks are sent with: no proxy, no redirects, the probe's
/// `User-Agent`.
pub fn client() -> Result<reqwest::Client, HookError> {
    crate::tls::ensure_provider();
    reqwest::Client::builder()
        .user_agent(super::client::USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| HookError::Client(e.to_string()))
}

/// POSTs `body` (JSON) to `url`; returns the number of attempts it took.
pub async fn deliver(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: &[u8],
    policy: &RetryPolicy,
) -> Result<u32, HookError> {
    let mut last = String::new();
    let attempts = policy.attempts.max(1);
    for attempt in 1..=attempts {
        let sent = client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(policy.timeout)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) => match classify(r.status().as_u16()) {
                StatusClass::Delivered => return Ok(attempt),
                StatusClass::Final => {
                    return Err(HookError::Rejected {
                        url: url.to_string(),
                        status: r.status(),
                    })
                }
                StatusClass::Retry => last = answer_error(r.status(), r.headers()),
            },
            // The URL is in the error already; the causes are what says why.
            Err(e) => last = error_chain(&e.without_url()),
        }
        if attempt < attempts {
            tracing::debug!(%url, attempt, error = %last, "Hook attempt failed; retrying.");
            tokio::time::sleep(policy.backoff.delay(attempt)).await;
        }
    }
    Err(HookError::GaveUp {
        url: url.to_string(),
        attempts,
        last,
    })
}
