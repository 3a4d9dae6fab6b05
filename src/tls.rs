//! TLS for verdict's clients (webhooks, and anything else that calls out
//! over `https://`): rustls with the ring provider, trusting the system's
//! root certificates plus the configured `ca_file`, presenting a client
//! certificate when one is configured.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{read_certificates, read_key, ClientTls, TlsVersion};

/// Makes ring the process's rustls provider, once. The HTTP client
/// (reqwest, built without a provider of its own so that only ring is
/// compiled in) needs a process-wide provider before any client is built,
/// `http://` ones included.
pub fn ensure_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Another provider may be installed already (an embedder's): keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The system's root certificates, read once (from the platform's usual
/// places; `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
fn system_roots() -> &'static [rustls_pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::warn!(error = %err, "Some system root certificates could not be read.");
        }
        found.certs
    })
}

/// The rustls configuration of a client with `spec`, or why it cannot be
/// built (a file that no longer reads).
pub fn client_config(spec: &ClientTls) -> Result<ClientConfig, String> {
    ensure_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let (_, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(ca) = &spec.ca_file {
        for cert in read_certificates(ca)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "no trusted root certificate: the system has none (install ca-certificates) and no ca_file is set"
                .into(),
        );
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match spec.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match &spec.identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certificates(cert)?, read_key(key)?)
            .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display())),
    }
}

/// Why a TLS handshake with a server failed, as a person fixes it: the
/// certificate's problem when rustls names one. Shared by every client
/// that reports a failed connection (`verdict probe`, `verdict runs`,
/// `verdict demo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsFailure {
    /// Its certificate is not signed by a CA the probe trusts.
    UnknownIssuer,
    /// Its certificate has expired.
    Expired,
    /// Its certificate is not valid yet.
    NotValidYet,
    /// Its certificate was not issued for the URL's host.
    NameMismatch,
    /// Its certificate was refused for another reason (revoked, bad
    /// signature, wrong usage, a CA certificate used as the server's own).
    Certificate,
    /// The handshake failed for a reason other than the certificate (no
    /// common protocol version or cipher, a plain-text server).
    Handshake,
}

impl TlsFailure {
    /// What rustls's error says about the handshake.
    pub fn of(error: &rustls::Error) -> TlsFailure {
        use rustls::CertificateError as C;
        match error {
            rustls::Error::InvalidCertificate(cert) => match cert {
                C::UnknownIssuer => TlsFailure::UnknownIssuer,
                C::Expired | C::ExpiredContext { .. } => TlsFailure::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => TlsFailure::NotValidYet,
                C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::NameMismatch,
                _ => TlsFailure::Certificate,
            },
            _ => TlsFailure::Handshake,
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFailure::UnknownIssuer => {
                "certificate problem: unknown issuer (not signed by a trusted CA; --ca-file adds one)"
            }
            TlsFailure::Expired => "certificate problem: expired",
            TlsFailure::NotValidYet => "certificate problem: not valid yet",
            TlsFailure::NameMismatch => {
                "certificate problem: name mismatch (not issued for the URL's host)"
            }
            TlsFailure::Certificate => "certificate problem: refused",
            TlsFailure::Handshake => "TLS handshake failed",
        })
    }
}

/// The certificate problem (or failed handshake) somewhere in `error`'s
/// chain of causes, if the error is one. rustls's error travels inside an
/// `io::Error` (sometimes one inside another), whose `source()` skips what
/// it wraps, so the error each one wraps is looked into as well.
pub fn failure_in(error: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut pending: Vec<&(dyn std::error::Error + 'static)> = vec![error];
    // A chain is a few links long; the bound only guards against a cycle.
    for _ in 0..64 {
        let e = pending.pop()?;
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(TlsFailure::of(tls));
        }
        if let Some(source) = e.source() {
            pending.push(source);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            pending.push(inner);
        }
    }
    None
}

/// A rustls client configuration trusting the system's roots and
/// `ca_file` (the command-line clients' `--ca-file`).
pub fn trusting(ca_file: Option<&std::path::Path>) -> Result<ClientConfig, String> {
    client_config(&ClientTls {
        ca_file: ca_file.map(std::path::Path::to_path_buf),
        ..ClientTls::default()
    })
}

/// A TCP connection, plain or through TLS (`T`: rustls's client or server
/// stream): one I/O type for servers and clients that serve both.
#[derive(Debug)]
pub enum MaybeTls<T> {
    /// Plain text.
    Plain(TcpStream),
    /// After the TLS handshake.
    Tls(Box<T>),
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}
