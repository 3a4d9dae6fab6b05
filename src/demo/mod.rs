//! `verdict demo`: the walkthrough's traffic source, inside the binary, so a
//! new user needs one build. It plays two releases of a `checkout`
//! service — the current one, healthy, and a canary that is healthy
//! (`--canary good`) or slow and failing (`--canary bad`) — and sends their
//! requests as SERVER spans over OTLP/HTTP (protobuf, `POST /v1/traces`),
//! the way an OpenTelemetry SDK's batch exporter does: one request a
//! release every 100 ms, refusals (503, 429) retried after their
//! `Retry-After`.
//!
//! The requests are drawn by `verdict simulate`'s traffic model
//! ([`crate::simulate::Side`]: lognormal latencies around a p95, errors and
//! conversions at a rate), so the demo and the simulation speak of the same
//! releases.

mod spans;

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::simulate::{Shape, Side};

pub use spans::export_request;

/// A release the demo plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// `service.version`.
    pub version: String,
    /// Its traffic.
    pub side: Side,
}

/// Which canary to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Canary {
    /// As healthy as the current release: PROMOTED.
    Good,
    /// Slow (p95 about 1.2 s) and failing 4 % of requests: ROLLED_BACK.
    Bad,
}

/// What `verdict demo` sends, where, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// OTLP/HTTP base URL (`http://127.0.0.1:4318`).
    pub endpoint: reqwest::Url,
    /// For an `https://` endpoint: CA certificates trusted besides the
    /// system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// `service.name` of both releases.
    pub service: String,
    /// The current release and the canary.
    pub releases: Vec<Release>,
    /// Requests per second of each release.
    pub rate: u32,
    /// How long to send.
    pub duration: Duration,
    /// Sent as `Authorization: Bearer <token>` (the receiver's `auth`).
    pub token: Option<String>,
    /// Seed of the traffic.
    pub seed: u64,
}

/// A healthy release: p95 150 ms, 0.2 % errors, 25 % conversions, well
/// inside the default contract (p95 500 ms, errors 1 %).
pub const HEALTHY: Side = Side {
    requests: 0,
    p95_ms: 150.0,
    shape: Shape::Lognormal(0.5),
    error_rate: 0.002,
    conversion_rate: 0.25,
};

/// A regressed release: p95 1.2 s and 4 % errors.
pub const REGRESSED: Side = Side {
    requests: 0,
    p95_ms: 1200.0,
    shape: Shape::Lognormal(0.5),
    error_rate: 0.04,
    conversion_rate: 0.2,
};

impl Plan {
    /// The current release `current` (healthy) and the canary `canary`
    /// (healthy or regressed).
    pub fn releases(current: &str, canary_version: &str, canary: Canary) -> Vec<Release> {
        vec![
            Release {
                version: current.to_string(),
                side: HEALTHY,
            },
            Release {
                version: canary_version.to_string(),
                side: match canary {
                    Canary::Good => HEALTHY,
                    Canary::Bad => REGRESSED,
                },
            },
        ]
    }
}

/// Said after a 404 answer.
const NOT_OTLP_HTTP: &str =
    " (is `verdict run` listening there? --endpoint sets the OTLP/HTTP address)";

/// How often a batch of spans is sent (per release).
const TICK: Duration = Duration::from_millis(100);

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// The server's certificate is refused (or the TLS handshake failed):
    /// it is listening, so the hint is about the certificate.
    #[error("cannot send to {url}: {problem}")]
    Certificate {
        /// Where.
        url: String,
        /// The certificate's problem.
        problem: crate::tls::TlsFailure,
    },
    /// The server is not there.
    #[error("cannot send to {url}: {reason} (is `verdict run` listening there? --endpoint sets the OTLP/HTTP address)")]
    Unreachable {
        /// Where.
        url: String,
        /// The transport's error.
        reason: String,
    },
    /// The server refuses what the demo sends, and will again. A 404 is
    /// most likely another listener (the API's, the metrics') than the
    /// OTLP/HTTP one: the hint says so.
    #[error("{url} answered {status}: {body}{}", if *status == 404 { NOT_OTLP_HTTP } else { "" })]
    Refused {
        /// Where.
        url: String,
        /// The answer's status.
        status: u16,
        /// The answer's body (the server says why).
        body: String,
    },
}

/// What was sent, for the closing line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Spans the server accepted.
    pub spans: u64,
    /// Requests refused and sent again (server busy).
    pub retried: u64,
}

/// Sends the plan's traffic until its duration is over; reports progress
/// on `progress` every few seconds.
pub async fn run(plan: &Plan, progress: &mut dyn FnMut(&str)) -> Result<Sent, DemoError> {
    crate::tls::ensure_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("verdict-demo/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(10));
    if plan.endpoint.scheme() == "https" {
        builder = builder.tls_backend_preconfigured(
            crate::tls::trusting(plan.ca_file.as_deref()).map_err(DemoError::Client)?,
        );
    }
    let client = builder
        .build()
        .map_err(|e| DemoError::Client(e.to_string()))?;
    let url = traces_url(&plan.endpoint);
    let mut rng = SmallRng::seed_from_u64(plan.seed);
    let mut sent = Sent::default();
    let start = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_tick = f64::from(plan.rate) * TICK.as_secs_f64();
    let mut owed = vec![0.0f64; plan.releases.len()];
    let mut next_report = Duration::from_secs(5);
    while start.elapsed() < plan.duration {
        ticker.tick().await;
        for (release, owed) in plan.releases.iter().zip(owed.iter_mut()) {
            *owed += per_tick;
            let count = owed.floor();
            *owed -= count;
            if count < 1.0 {
                continue;
            }
            let body = export_request(
                &plan.service,
                release,
                count as usize,
                std::time::SystemTime::now(),
                &mut rng,
            );
            sent.retried += post(&client, &url, plan.token.as_deref(), body).await?;
            sent.spans += count as u64;
        }
        if start.elapsed() >= next_report {
            next_report += Duration::from_secs(5);
            progress(&format!(
                "{}s: {} spans accepted",
                start.elapsed().as_secs(),
                sent.spans
            ));
        }
    }
    Ok(sent)
}

/// `{endpoint}/v1/traces`, whatever the endpoint's path ends with.
fn traces_url(endpoint: &reqwest::Url) -> String {
    let base = endpoint.as_str().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// POSTs one export request; returns how many times it was refused and
/// sent again.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<u64, DemoError> {
    let mut retried = 0;
    loop {
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| match crate::tls::failure_in(&e) {
                Some(problem) => DemoError::Certificate {
                    url: url.to_string(),
                    problem,
                },
                None => DemoError::Unreachable {
                    url: url.to_string(),
                    reason: crate::retry::error_chain(&e),
                },
            })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(retried);
        }
        if (status.as_u16() == 503 || status.as_u16() == 429) && retried < 20 {
            let wait = answer
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                .min(5);
            retried += 1;
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let body = answer.text().await.unwrap_or_default();
        return Err(DemoError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        });
    }
}

#[cfg(test)]
mod tests;
