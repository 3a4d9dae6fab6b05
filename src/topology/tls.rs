//! TLS on the listeners (rustls, ring): a listener with `tls:` takes its
//! connections from its [`Connections`] and runs their handshakes
//! concurrently (up to [`MAX_HANDSHAKES`] at once, each within its time
//! limits), so a slow or silent client never holds up the others.
//!
//! - The certificate, key and client CAs are re-read when their files
//!   change, checked at most every `reload_interval`; a file that no
//!   longer reads keeps the last good configuration (logged).
//! - A plain-text client (an `http://` URL, an exporter without TLS) gets a
//!   plain-text `400` saying the port speaks TLS and the connection closes,
//!   instead of a handshake that never starts.
//! - With `client_ca_file`, a client must present a certificate signed by
//!   one of those CAs (mutual TLS).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt as _;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::Connections;
use crate::config::{read_certificates, read_key, ListenerTls, TlsVersion};
use crate::tls::MaybeTls;

/// How long a client may take to send its first byte, and then to
/// complete its handshake (so at most twice this in all).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes a listener runs at once; past it, new connections wait in
/// the endpoint's queue (and then the kernel's backlog), so stalled
/// handshakes cannot take every file descriptor of the process.
const MAX_HANDSHAKES: usize = 512;

/// At most one WARN line per listener about failed handshakes in this
/// interval; the failures in between are counted into the next line.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the first byte of a TLS connection is (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// The rustls configuration of one listener, re-read when its files change.
#[derive(Debug)]
pub struct ServerTls {
    spec: ListenerTls,
    alpn: Vec<Vec<u8>>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    config: Arc<ServerConfig>,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

fn stamps(spec: &ListenerTls) -> Vec<Option<SystemTime>> {
    [
        Some(&spec.cert_file),
        Some(&spec.key_file),
        spec.client_ca_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
    .collect()
}

fn build(spec: &ListenerTls, alpn: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match spec.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = match &spec.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let (certs, key) = (
        read_certificates(&spec.cert_file)?,
        read_key(&spec.key_file)?,
    );
    let mut config = builder
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| {
            crate::config::tls_pair_error(&spec.cert_file, &spec.key_file, &certs, &key, &e)
        })?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

/// Logs a certificate that clients will refuse (expired, not valid yet, a
/// signature that does not verify): rustls serves it all the same, and
/// only the clients would say why.
fn warn_validity(spec: &ListenerTls) {
    for warning in crate::config::validity::certificate_file_warnings(
        &spec.cert_file,
        spec.client_ca_file.as_deref(),
        SystemTime::now(),
    ) {
        tracing::warn!(cert_file = %spec.cert_file.display(), "{warning}");
    }
}

impl ServerTls {
    /// The configuration of `spec`, offering `alpn` (`h2` for gRPC, `h2`
    /// and `http/1.1` for the HTTP listeners).
    pub fn new(spec: &ListenerTls, alpn: &[&str]) -> anyhow::Result<Arc<ServerTls>> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        let config = build(spec, &alpn).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
        warn_validity(spec);
        Ok(Arc::new(ServerTls {
            spec: spec.clone(),
            alpn,
            state: Mutex::new(Loaded {
                config: Arc::new(config),
                stamps: stamps(spec),
                checked: Instant::now(),
            }),
        }))
    }

    /// The configuration to handshake with: re-read first when the files
    /// changed since they were last read (checked every `reload_interval`).
    fn current(&self) -> Arc<ServerConfig> {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked.elapsed() >= self.spec.reload_interval {
            state.checked = Instant::now();
            let now = stamps(&self.spec);
            if now != state.stamps {
                match build(&self.spec, &self.alpn) {
                    Ok(config) => {
                        tracing::info!(cert_file = %self.spec.cert_file.display(), "TLS files changed; re-read.");
                        warn_validity(&self.spec);
                        state.config = Arc::new(config);
                        state.stamps = now;
                    }
                    Err(why) => {
                        tracing::warn!(error = %why, "TLS files changed but cannot be read; the previous certificate stays.");
                    }
                }
            }
        }
        state.config.clone()
    }
}

/// A connection as a server sees it: plain or after the TLS handshake.
pub type Served = crate::tls::MaybeTls<TlsStream<TcpStream>>;

impl tonic::transport::server::Connected for Served {
    type ConnectInfo = Option<SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            MaybeTls::Plain(s) => s.peer_addr().ok(),
            MaybeTls::Tls(s) => s.get_ref().0.peer_addr().ok(),
        }
    }
}

type Handshake = Pin<Box<dyn Future<Output = Option<Served>> + Send>>;

/// A listener's connections, through TLS when it has `tls:`.
pub struct Listener {
    connections: Connections,
    tls: Option<Arc<ServerTls>>,
    handshakes: FuturesUnordered<Handshake>,
    component: &'static str,
    failures: Arc<FailureLog>,
}

/// The rate limit of one listener's WARN lines about failed handshakes: a
/// client certificate refused under mutual TLS is an operator's problem
/// (a wrong CA, an expired client certificate) and must be seen at the
/// default level, yet scanners fail handshakes all day and must not flood
/// the log.
#[derive(Debug, Default)]
struct FailureLog {
    state: Mutex<FailureState>,
}

#[derive(Debug, Default)]
struct FailureState {
    logged_at: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    /// Logs the failed handshake of `peer` on `component`, or counts it
    /// when the listener logged one less than the interval ago.
    fn failed(&self, component: &str, peer: Option<SocketAddr>, error: &io::Error) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .logged_at
            .is_some_and(|at| now.duration_since(at) < FAILURE_LOG_INTERVAL)
        {
            state.suppressed = state.suppressed.saturating_add(1);
            tracing::debug!(component, ?peer, %error, "TLS handshake failed.");
            return;
        }
        let suppressed = std::mem::take(&mut state.suppressed);
        state.logged_at = Some(now);
        drop(state);
        tracing::warn!(
            listener = component,
            ?peer,
            reason = %error,
            more_since_last_line = suppressed,
            "TLS handshake failed (a client certificate refused, an untrusted server certificate, or a client that is not TLS)."
        );
    }
}

impl Listener {
    /// Serves `connections` plainly, or through `tls`.
    pub fn new(
        connections: Connections,
        tls: Option<Arc<ServerTls>>,
        component: &'static str,
    ) -> Listener {
        Listener {
            connections,
            tls,
            handshakes: FuturesUnordered::new(),
            component,
            failures: Arc::default(),
        }
    }

    /// The next connection ready to be served.
    async fn next(&mut self) -> Option<Served> {
        let Some(tls) = self.tls.clone() else {
            return self.connections.next().await.map(MaybeTls::Plain);
        };
        loop {
            tokio::select! {
                Some(done) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    if let Some(served) = done {
                        return Some(served);
                    }
                }
                conn = self.connections.next(), if self.handshakes.len() < MAX_HANDSHAKES => {
                    let stream = conn?;
                    self.handshakes.push(Box::pin(handshake(stream, tls.current(), self.component, self.failures.clone())));
                }
            }
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn incoming(
        self,
    ) -> impl futures_util::Stream<Item = Result<Served, io::Error>> + Send + 'static {
        futures_util::stream::unfold(self, |mut l| async move {
            let served = l.next().await?;
            Some((Ok(served), l))
        })
    }
}

/// The handshake of one connection: `None` when it fails (a rate-limited
/// WARN per listener, see [`FailureLog`]), times out (debug: a client that
/// went quiet) or is plain text (answered with a plain-text 400).
async fn handshake(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    component: &'static str,
    failures: Arc<FailureLog>,
) -> Option<Served> {
    let peer = stream.peer_addr().ok();
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut byte = [0u8; 1];
        stream.peek(&mut byte).await.map(|n| (n, byte[0]))
    })
    .await;
    match first {
        Ok(Ok((1, TLS_HANDSHAKE))) => {}
        Ok(Ok((1, _))) => {
            let mut stream = stream;
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n\
                      This port speaks TLS: use https:// (or an OTLP exporter with TLS).\n",
                )
                .await;
            let _ = stream.shutdown().await;
            tracing::debug!(
                component,
                ?peer,
                "Plain-text client on a TLS port; told so."
            );
            return None;
        }
        _ => return None,
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await {
        Ok(Ok(tls)) => Some(MaybeTls::Tls(Box::new(tls))),
        Ok(Err(err)) => {
            failures.failed(component, peer, &err);
            None
        }
        Err(_) => {
            tracing::debug!(component, ?peer, "TLS handshake timed out.");
            None
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Served;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Served, SocketAddr) {
        loop {
            match self.next().await {
                Some(served) => {
                    let peer = tonic::transport::server::Connected::connect_info(&served)
                        .unwrap_or(self.connections.addr());
                    return (served, peer);
                }
                // Closed: this generation is being stopped.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.connections.addr())
    }
}
