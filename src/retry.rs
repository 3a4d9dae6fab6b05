//! Trying again: how long to wait after a failed attempt, and what an HTTP
//! status means for a delivery. Webhook deliveries, `verdict probe`'s hooks
//! and the run engine's storage commits all back off the same way; the two
//! HTTP deliveries also describe a failed attempt the same way
//! ([`answer_error`], [`error_chain`]).

use std::time::Duration;

/// Exponential backoff: `initial · 2^(attempts-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failed attempt.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `attempts`-th failed attempt (1 = the first).
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << exp).min(self.max)
    }

    /// [`Backoff::delay`] times a jitter factor in [0.5, 1.5) (`jitter` in
    /// [0, 1)), capped again. Jitter keeps many pending deliveries from
    /// hitting a recovering target at once.
    pub fn jittered(&self, attempts: u32, jitter: f64) -> Duration {
        self.delay(attempts)
            .mul_f64(0.5 + jitter.clamp(0.0, 1.0))
            .min(self.max)
    }
}

/// What an HTTP status means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Delivered,
    /// 408, 429, 5xx, anything unexpected: try again later.
    Retry,
    /// Other 4xx: final (the request itself is wrong; retrying cannot help).
    Final,
}

/// Classifies an HTTP status. A 3xx is not delivered: deliveries never
/// follow redirects (see [`answer_error`]), so it is retried like any
/// unexpected answer, in case the move is temporary.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Delivered,
        408 | 429 => StatusClass::Retry,
        400..=499 => StatusClass::Final,
        _ => StatusClass::Retry,
    }
}

/// An answer that did not deliver, in one line: `HTTP 503 Service
/// Unavailable`, or for a redirect, where it pointed: `HTTP 301 Moved
/// Permanently: redirect to http://new/hook not followed`.
///
/// Deliveries never follow redirects (their clients are built with
/// `redirect::Policy::none()`): on 301, 302 and 303 an HTTP client turns the
/// POST into a GET without the body — the event would be lost and still
/// marked delivered — and on any redirect the signature would travel to a
/// location nobody configured. Naming the location lets the operator fix
/// the URL.
pub fn answer_error(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> String {
    if !status.is_redirection() {
        return format!("HTTP {status}");
    }
    match headers.get(reqwest::header::LOCATION) {
        Some(location) => format!(
            "HTTP {status}: redirect to {} not followed",
            String::from_utf8_lossy(location.as_bytes())
        ),
        None => format!("HTTP {status}: redirect (without Location) not followed"),
    }
}

/// An error and every cause under it, in one line:
/// `error sending request: client error (Connect): dns error: failed to
/// lookup address information: Name or service not known`. reqwest's own
/// message stops at the top (`error sending request`), which names no
/// cause. A cause whose text the line already holds is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_capped() {
        let r = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        assert_eq!(r.jittered(1, 0.5), Duration::from_secs(1));
        assert_eq!(r.jittered(2, 0.5), Duration::from_secs(2));
        assert_eq!(r.jittered(3, 0.0), Duration::from_secs(2));
        assert_eq!(r.jittered(10, 0.5), Duration::from_secs(30));
        assert_eq!(r.jittered(10, 0.99), Duration::from_secs(30));
        assert_eq!(r.jittered(u32::MAX, 0.5), Duration::from_secs(30));
        for a in 1..20 {
            let d = r.jittered(a, 0.0);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(30));
        }
        assert_eq!(r.delay(1), Duration::from_secs(1));
        assert_eq!(r.delay(3), Duration::from_secs(4));
        assert_eq!(r.delay(40), Duration::from_secs(30));
    }

    #[test]
    fn a_redirect_names_its_location() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(
            answer_error(reqwest::StatusCode::SERVICE_UNAVAILABLE, &headers),
            "HTTP 503 Service Unavailable"
        );
        assert_eq!(
            answer_error(reqwest::StatusCode::FOUND, &headers),
            "HTTP 302 Found: redirect (without Location) not followed"
        );
        headers.insert(
            reqwest::header::LOCATION,
            reqwest::header::HeaderValue::from_static("http://new.test/hook"),
        );
        assert_eq!(
            answer_error(reqwest::StatusCode::MOVED_PERMANENTLY, &headers),
            "HTTP 301 Moved Permanently: redirect to http://new.test/hook not followed"
        );
    }

    #[test]
    fn an_error_chain_names_every_cause_once() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|l| l as _)
            }
        }
        let dns = Layer("failed to lookup address information", None);
        let repeated = Layer("dns error", Some(Box::new(dns)));
        let top = Layer(
            "error sending request",
            Some(Box::new(Layer("dns error", Some(Box::new(repeated))))),
        );
        assert_eq!(
            error_chain(&top),
            "error sending request: dns error: failed to lookup address information"
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(204), StatusClass::Delivered);
        assert_eq!(classify(404), StatusClass::Final);
        assert_eq!(classify(408), StatusClass::Retry);
        assert_eq!(classify(429), StatusClass::Retry);
        assert_eq!(classify(503), StatusClass::Retry);
        assert_eq!(classify(301), StatusClass::Retry);
    }
}
