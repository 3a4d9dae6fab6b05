//! `tls:` blocks of listeners. The files are read and parsed here, so a
//! missing file, a key that is not a key or a certificate that is not PEM
//! is reported with its path by `verdict validate` and before a reload,
//! not found at the first handshake.

use super::*;
use crate::config::validated::{ClientTls, ListenerTls, TlsVersion};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Default of `tls.reload_interval`.
pub(crate) const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// The certificates of a PEM file, or why they cannot be read.
pub(crate) fn read_certificates(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file, or why it cannot be read.
pub(crate) fn read_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if pem
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
    {
        return Err(format!(
            "{} holds an encrypted private key: give it decrypted (e.g. openssl pkey -in KEY -out KEY.pem)",
            path.display()
        ));
    }
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{} holds no PEM private key: {e}", path.display()))
}

fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a chain and its key (checks they match and
/// parse).
fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(), rustls::Error> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map(|_| ())
}

/// Why a certificate and key make no TLS server, said so a person knows
/// which file to look at: a key that is not the certificate's (another
/// pair's, or a tampered file) is named as such rather than as rustls's
/// "inconsistent keys", and a key of a later certificate of the chain
/// means the chain is in the wrong order, not that the key is wrong.
pub(crate) fn tls_pair_error(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    error: &rustls::Error,
) -> String {
    match error {
        rustls::Error::InconsistentKeys(_) => {
            if let Some(i) = (1..certs.len())
                .find(|&i| server_config(vec![certs[i].clone()], key.clone_key()).is_ok())
            {
                return format!(
                    "the listener's certificate must come first in {}: {} is the key of its \
                     certificate {} of {} (put that certificate first, then the CAs that \
                     signed it)",
                    cert_file.display(),
                    key_file.display(),
                    i + 1,
                    certs.len()
                );
            }
            format!(
                "{} is not the private key of the certificate in {} (a key of another pair, or \
                 a tampered file): {error}",
                key_file.display(),
                cert_file.display()
            )
        }
        other => format!(
            "{} and {}: {other}",
            cert_file.display(),
            key_file.display()
        ),
    }
}

/// The CA certificates of a PEM file as trust anchors (each must parse).
fn read_roots(path: &std::path::Path) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(())
}

/// A listener's `tls:`; `None` when absent or invalid (errors pushed).
pub(super) fn listener_tls(
    raw: Field<MapOnly<RawTls>>,
    path: &str,
    errors: &mut Errors,
) -> Option<ListenerTls> {
    let MapOnly(raw) = take(raw, path, errors)?;
    let before = errors.len();
    let at = |key: &str| join(path, key);
    let file = |field: Field<String>, key: &str, required: bool, errors: &mut Errors| match take(
        field,
        &at(key),
        errors,
    )
    .map(|f| f.trim().to_string())
    {
        Some(f) if !f.is_empty() => Some(std::path::PathBuf::from(f)),
        _ if required => {
            errors.push(at(key), "required: a PEM file");
            None
        }
        _ => None,
    };
    let cert_file = file(raw.cert_file, "cert_file", true, errors);
    let key_file = file(raw.key_file, "key_file", true, errors);
    let client_ca_file = file(raw.client_ca_file, "client_ca_file", false, errors);
    if raw.ca_file.is_some() {
        errors.push(
            at("ca_file"),
            "is for clients; a listener requires client certificates with client_ca_file",
        );
    }
    let min_version = min_version(raw.min_version, &at("min_version"), errors);
    let reload_interval = positive_duration(
        raw.reload_interval,
        DEFAULT_TLS_RELOAD_INTERVAL,
        &at("reload_interval"),
        errors,
    );
    let certs = cert_file.as_ref().and_then(|f| {
        read_certificates(f)
            .map_err(|why| errors.push(at("cert_file"), why))
            .ok()
    });
    let key = key_file.as_ref().and_then(|f| {
        read_key(f)
            .map_err(|why| errors.push(at("key_file"), why))
            .ok()
    });
    // What the server will build, built now: a key of another pair or a
    // certificate whose DER does not parse is refused here (and before a
    // reload stops anything), not at start.
    if let (Some(certs), Some(key), Some(cert_path), Some(key_path)) =
        (certs, key, &cert_file, &key_file)
    {
        if let Err(why) = server_config(certs.clone(), key.clone_key()) {
            errors.push(
                at("key_file"),
                format!(
                    "does not make a TLS server with cert_file: {}",
                    tls_pair_error(cert_path, key_path, &certs, &key, &why)
                ),
            );
        }
    }
    if let Some(f) = &client_ca_file {
        if let Err(why) = read_roots(f) {
            errors.push(at("client_ca_file"), why);
        }
    }
    (errors.len() == before).then_some(ListenerTls {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file,
        min_version,
        reload_interval,
    })
}

/// `min_version` of a `tls:` block.
fn min_version(raw: Field<String>, path: &str, errors: &mut Errors) -> TlsVersion {
    match take(raw, path, errors).as_deref() {
        None | Some("1.2") => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            errors.push(path, format!("must be \"1.2\" or \"1.3\", got {other:?}"));
            TlsVersion::V1_2
        }
    }
}

/// A client's `tls:` (default: the system's roots); problems pushed.
pub(super) fn client_tls(
    raw: Field<MapOnly<RawTls>>,
    path: &str,
    errors: &mut Errors,
) -> ClientTls {
    let Some(MapOnly(raw)) = take(raw, path, errors) else {
        return ClientTls::default();
    };
    let at = |key: &str| join(path, key);
    let file = |field: Field<String>, key: &str, errors: &mut Errors| {
        take(field, &at(key), errors)
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .map(std::path::PathBuf::from)
    };
    let ca_file = file(raw.ca_file, "ca_file", errors);
    let cert_file = file(raw.cert_file, "cert_file", errors);
    let key_file = file(raw.key_file, "key_file", errors);
    if raw.client_ca_file.is_some() {
        errors.push(
            at("client_ca_file"),
            "is for listeners; a client trusts CAs with ca_file",
        );
    }
    if raw.reload_interval.is_some() {
        errors.push(
            at("reload_interval"),
            "is for listeners; a client reads its files at start",
        );
    }
    let min_version = min_version(raw.min_version, &at("min_version"), errors);
    if let Some(f) = &ca_file {
        if let Err(why) = read_roots(f) {
            errors.push(at("ca_file"), why);
        }
    }
    let identity = match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certificates(&cert).map_err(|why| errors.push(at("cert_file"), why));
            let pkey = read_key(&key).map_err(|why| errors.push(at("key_file"), why));
            if let (Ok(certs), Ok(pkey)) = (certs, pkey) {
                let built = rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_client_auth_cert(certs, pkey)
                            .map_err(|e| e.to_string())
                    });
                if let Err(why) = built {
                    errors.push(
                        at("key_file"),
                        format!("does not make a client certificate with cert_file: {why}"),
                    );
                }
            }
            Some((cert, key))
        }
        (None, None) => None,
        (Some(_), None) => {
            errors.push(at("key_file"), "required with cert_file");
            None
        }
        (None, Some(_)) => {
            errors.push(at("cert_file"), "required with key_file");
            None
        }
    };
    ClientTls {
        ca_file,
        identity,
        min_version,
    }
}
