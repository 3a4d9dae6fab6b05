//! The probe's HTTP client: HTTP/1.1 over keep-alive connections, one per
//! worker, so the pool is exactly as large as the concurrency (a pool of one
//! made the seed's runner queue behind a single socket until requests timed
//! out) and a request never waits for a connection another worker holds.
//!
//! It is hyper's connection API, not a general-purpose client: everything a
//! general client does per request (URL → URI conversion, default-header
//! merging, pool checkout under a lock, boxed timers) is done once per run
//! here, which is what lets one process keep up with wrk (benches/probe.rs).
//! Redirects are not followed (a 3xx is an answer, as it is for wrk); an
//! `https://` target is reached through rustls, verified against the
//! system's roots and the plan's `ca_file`.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderMap, HeaderValue, HOST, USER_AGENT as USER_AGENT_HEADER};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tally::{Failure, Observation};
use crate::config::probe_plan::ProbePlan;

/// The `User-Agent` of every probe request: `verdict-probe/<version>`.
pub const USER_AGENT: &str = concat!("verdict-probe/", env!("CARGO_PKG_VERSION"));

/// The plan's URL cannot be probed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot probe {url}: {reason}")]
pub struct ClientError {
    /// The URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// Everything about the request that is the same every time, prepared once.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port` to connect to.
    addr: String,
    method: Method,
    /// Origin-form request target (`/path?query`).
    path: Uri,
    /// Host, User-Agent and the plan's headers.
    headers: HeaderMap,
    body: Bytes,
    conversion_header: hyper::header::HeaderName,
    timeout: Duration,
    /// 4xx answers succeed ([`Failure::of_status`]).
    allow_4xx: bool,
    /// For an `https://` target: the TLS client and the name to verify.
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
}

impl Target {
    /// Prepares the plan's request.
    pub fn new(plan: &ProbePlan) -> Result<Target, ClientError> {
        let url = &plan.url;
        let error = |reason: &str| ClientError {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let host = url.host_str().ok_or_else(|| error("the URL has no host"))?;
        let tls = match url.scheme() {
            "http" => None,
            "https" => {
                let config = crate::tls::client_config(&plan.tls).map_err(|e| error(&e))?;
                // `host_str` keeps IPv6 literals bracketed; a name to verify
                // has none.
                let name = rustls_pki_types::ServerName::try_from(
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                )
                .map_err(|e| error(&format!("{host} cannot be verified: {e}")))?;
                Some((std::sync::Arc::new(config), name))
            }
            _ => return Err(error("only http:// and https:// targets are supported")),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let path: Uri = path
            .parse()
            .map_err(|_| error("the path is not a valid request target"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(&authority).map_err(|_| error("invalid host"))?,
        );
        headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
        for (name, value) in &plan.headers {
            headers.append(name, value.clone());
        }
        Ok(Target {
            // `[v6]:port` for IPv6 literals, which `host_str` keeps bracketed.
            addr: format!("{host}:{port}"),
            method: plan.method.clone(),
            path,
            headers,
            body: plan.body.clone().unwrap_or_default(),
            conversion_header: plan.conversion_header.clone(),
            timeout: plan.timeout,
            allow_4xx: plan.allow_4xx,
            tls,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// A connection to the target, through TLS for `https://`.
type Stream = crate::tls::MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// An open HTTP/1 connection: the handle requests go through, and the
/// connection's own I/O future, which [`Connection::exchange`] polls in the
/// worker's task instead of spawning it, so a request and its response never
/// hop between tasks.
struct Open {
    sender: SendRequest<Full<Bytes>>,
    io: Pin<Box<http1::Connection<TokioIo<Stream>, Full<Bytes>>>>,
}

/// One keep-alive connection, opened on first use and again after a failure.
#[derive(Default)]
pub struct Connection {
    open: Option<Open>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("open", &self.open.is_some())
            .finish()
    }
}

impl Connection {
    /// Sends one request and reads the whole response body, within the
    /// target's timeout (connecting included).
    ///
    /// Errors: a timeout, a failed connection, a transport error or an
    /// error status (5xx, and 4xx unless the plan allows them:
    /// [`Failure::of_status`]). Conversion: a 2xx whose conversion header
    /// says `true`.
    pub async fn send(&mut self, target: &Target) -> Observation {
        let started = Instant::now();
        let outcome = tokio::time::timeout(target.timeout, self.exchange(target)).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(Ok((status, converted))) => Observation {
                latency_ms: Some(latency_ms),
                failure: Failure::of_status(status, target.allow_4xx),
                status: Some(status),
                converted,
            },
            Ok(Err(failure)) => {
                self.open = None;
                Observation {
                    latency_ms: (!failure.before_request()).then_some(latency_ms),
                    failure: Some(failure),
                    status: None,
                    converted: false,
                }
            }
            Err(_elapsed) => {
                // The connection is mid-exchange: unusable.
                self.open = None;
                Observation {
                    latency_ms: Some(latency_ms),
                    failure: Some(Failure::Timeout),
                    status: None,
                    converted: false,
                }
            }
        }
    }

    /// The exchange itself: `Ok((status, converted))` once the body is
    /// read, `Err` when the connection failed. The connection's I/O is
    /// polled alongside.
    ///
    /// A kept-alive connection the server has closed is replaced by a new
    /// one, once: when the close is already visible before sending, or when
    /// the request got no answer at all and either was never written or is
    /// idempotent — the race every keep-alive client has with a server's
    /// idle timeout, which is not the target failing.
    async fn exchange(&mut self, target: &Target) -> Result<(u16, bool), Failure> {
        let idempotent = target.method.is_idempotent();
        for attempt in 0..2 {
            let reused = self.open.is_some();
            let open = match self.open.take() {
                Some(open) => self.open.insert(open),
                None => self.open.insert(connect(target).await?),
            };
            let Open { sender, io } = open;
            // Give a close that already arrived a chance to show before
            // sending on the connection.
            let closed_idle = reused && io.as_mut().now_or_never().is_some();
            let closed = closed_idle || {
                tokio::select! {
                    biased;
                    ready = sender.ready() => ready.is_err(),
                    // The connection ended while idle: closed by the server.
                    _ = io.as_mut() => true,
                }
            };
            if closed {
                self.open = None;
                if reused {
                    continue;
                }
                return Err(Failure::Connect);
            }
            let (result, ended) = {
                let work = async {
                    let response = sender.send_request(target.request()).await.map_err(|e| {
                        // No answer at all: sending again is safe for an
                        // idempotent request, or one that was never written.
                        let unanswered = idempotent || e.is_canceled();
                        (Failure::Transport, reused && unanswered)
                    })?;
                    let status = response.status();
                    let converted = status.is_success()
                        && response
                            .headers()
                            .get(&target.conversion_header)
                            .is_some_and(|v| {
                                v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"true")
                            });
                    // Read to the end, discarding: latency covers the whole
                    // body, and the connection is reusable only once drained.
                    let mut body = response.into_body();
                    while let Some(frame) = body.frame().await {
                        frame.map_err(|_| (Failure::Transport, false))?;
                    }
                    Ok((status.as_u16(), converted))
                };
                tokio::pin!(work);
                tokio::select! {
                    biased;
                    result = &mut work => (result, false),
                    // The connection ended: the exchange completes from what
                    // was read, or fails, since nothing drives it any more.
                    _ = io.as_mut() => {
                        let result = work
                            .as_mut()
                            .now_or_never()
                            .unwrap_or(Err((Failure::Transport, reused && idempotent)));
                        (result, true)
                    }
                }
            };
            if ended {
                self.open = None;
            }
            match result {
                Ok(done) => return Ok(done),
                Err((_, true)) if attempt == 0 => {
                    self.open = None;
                    continue;
                }
                Err((failure, _)) => return Err(failure),
            }
        }
        Err(Failure::Transport)
    }
}

/// What a failed TLS connect says: the certificate's problem when rustls
/// names one, a handshake failure otherwise, or a plain connection failure
/// when the socket broke before TLS could say anything.
fn tls_failure(error: &std::io::Error) -> Failure {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Failure::Tls(super::tally::TlsFailure::of(tls)),
        None if error.kind() == std::io::ErrorKind::InvalidData => {
            Failure::Tls(super::tally::TlsFailure::Handshake)
        }
        None => Failure::Connect,
    }
}

async fn connect(target: &Target) -> Result<Open, Failure> {
    let stream = TcpStream::connect(&target.addr)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Failure::ConnectionRefused,
            std::io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Connect,
        })?;
    // Small requests and answers: don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let stream = match &target.tls {
        None => Stream::Plain(stream),
        Some((config, name)) => {
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), stream)
                .await
                .map_err(|e| tls_failure(&e))?;
            Stream::Tls(Box::new(tls))
        }
    };
    let (sender, io) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connect)?;
    Ok(Open {
        sender,
        io: Box::pin(io),
    })
}
