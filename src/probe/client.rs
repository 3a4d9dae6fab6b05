//! The probe's HTTP client: one keep-alive pool sized to the concurrency, so
//! every worker keeps its connection between requests (a pool of one made the
//! seed's runner queue behind a single socket until requests timed out), and
//! one function that sends a request and says what came of it.

use std::error::Error as _;
use std::time::Instant;

use super::plan::ProbePlan;
use super::tally::{Failure, Observation};

/// The `User-Agent` of every probe request: `verdict-probe/<version>`.
pub const USER_AGENT: &str = concat!("verdict-probe/", env!("CARGO_PKG_VERSION"));

/// The client could not be built (a TLS backend missing, a resolver failing).
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// Builds the client for a plan: idle pool of `concurrency` connections per
/// host, `timeout` per request (sending to the end of the body), no proxy.
pub fn build(plan: &ProbePlan) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .pool_max_idle_per_host(plan.concurrency)
        .timeout(plan.timeout)
        .connect_timeout(plan.timeout)
        .tcp_nodelay(true)
        .no_proxy()
        .build()?)
}

/// Sends one request of the plan and reads the whole response body.
///
/// Errors: a timeout, a failed connection, a transport error or a 5xx
/// status. Conversion: a 2xx response whose conversion header says `true`.
pub async fn send(client: &reqwest::Client, plan: &ProbePlan) -> Observation {
    let mut request = client
        .request(plan.method.clone(), plan.url.clone())
        .headers(plan.headers.clone());
    if let Some(body) = &plan.body {
        request = request.body(body.clone());
    }
    let started = Instant::now();
    let elapsed_ms = || started.elapsed().as_secs_f64() * 1e3;
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(err) => {
            let failure = classify(&err);
            return Observation {
                latency_ms: (!failure.before_request()).then(elapsed_ms),
                failure: Some(failure),
                converted: false,
            };
        }
    };
    let status = response.status();
    let converted = status.is_success()
        && response
            .headers()
            .get(&plan.conversion_header)
            .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"true"));
    // Read to the end, discarding: latency covers the whole body, and the
    // connection goes back to the pool only once it is drained.
    let failure = loop {
        match response.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) if status.is_server_error() => break Some(Failure::Status(status.as_u16())),
            Ok(None) => break None,
            Err(err) => break Some(classify(&err)),
        }
    };
    Observation {
        latency_ms: Some(elapsed_ms()),
        converted: converted && failure.is_none(),
        failure,
    }
}

/// Classifies a client error, by its kind and the I/O error underneath.
fn classify(err: &reqwest::Error) -> Failure {
    if err.is_timeout() {
        return Failure::Timeout;
    }
    if err.is_connect() {
        let mut source = err.source();
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    return Failure::ConnectionRefused;
                }
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return Failure::Timeout;
                }
            }
            source = e.source();
        }
        return Failure::Connect;
    }
    Failure::Transport
}
