//! When a certificate is valid: its `notBefore` and `notAfter`, read from
//! the DER with a few lines of ASN.1 walking (rustls checks validity only
//! on the client's side, at the handshake, so a server configured with an
//! expired certificate starts happily and every client refuses it). This
//! is what lets `verdict validate`, the start and every re-read of the
//! files say so, with the date, before a client does.

use std::path::Path;
use std::time::SystemTime;

use super::validated::{ClientTls, ExporterKind, ListenerTls, ReceiverKind, ValidatedConfig};

/// A certificate's validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before.
    pub not_before: SystemTime,
    /// Not valid after.
    pub not_after: SystemTime,
}

/// One DER element: its tag, its contents and what follows it.
pub(super) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let len = rest[..bytes]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[bytes..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

pub(super) const SEQUENCE: u8 = 0x30;
const EXPLICIT_VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The validity of a DER certificate; `None` when it does not read as one.
pub fn validity(der: &[u8]) -> Option<Validity> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version, when present.
    if rest.first() == Some(&EXPLICIT_VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (tag, before, rest) = element(validity)?;
    let not_before = time(tag, before)?;
    let (tag, after, _) = element(rest)?;
    let not_after = time(tag, after)?;
    Some(Validity {
        not_before,
        not_after,
    })
}

/// An X.509 `Time`: UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or
/// GeneralizedTime `YYYYMMDDHHMMSSZ`.
fn time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    let full = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: u32 = digits[..2].parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{digits}")
        }
        (GENERALIZED_TIME, 14) => digits.to_string(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// Why the certificate of `validity` cannot be served at `now`, if it
/// cannot: expired, or not valid yet.
pub fn problem(validity: &Validity, now: SystemTime) -> Option<String> {
    if now > validity.not_after {
        Some(format!(
            "expired on {}",
            humantime::format_rfc3339_seconds(validity.not_after)
        ))
    } else if now < validity.not_before {
        Some(format!(
            "is not valid until {}",
            humantime::format_rfc3339_seconds(validity.not_before)
        ))
    } else {
        None
    }
}

/// A warning when the first certificate of the PEM file `path` (the
/// one a server or client presents) is expired or not valid yet at
/// `now`; `None` when it is valid or cannot be read (reading errors are
/// reported where the file is read).
pub fn certificate_warning(path: &Path, now: SystemTime) -> Option<String> {
    let certs = super::read_certificates(path).ok()?;
    let validity = validity(certs.first()?)?;
    problem(&validity, now).map(|why| {
        format!(
            "the certificate in {} {why}: clients refuse it (verdict serves it all the same, and re-reads the file when it changes)",
            path.display()
        )
    })
}

/// The signature problems of the certificates in the PEM file `path`
/// (see `signature.rs`), their issuers looked for in the file itself and
/// in `ca_file`; each a sentence naming the file. `presented`: the file is
/// a certificate verdict presents (its clients refuse it), not a CA file.
pub fn signature_warnings(path: &Path, ca_file: Option<&Path>, presented: bool) -> Vec<String> {
    let Ok(certs) = super::read_certificates(path) else {
        return Vec::new();
    };
    let cas = ca_file
        .and_then(|ca| super::read_certificates(ca).ok())
        .unwrap_or_default();
    super::signature::problems(&certs, &cas)
        .into_iter()
        .map(|problem| {
            let consequence = if presented {
                ": clients refuse it (verdict serves it all the same, and re-reads the file when it changes)"
            } else {
                ""
            };
            format!("{problem} (in {}){consequence}", path.display())
        })
        .collect()
}

/// Every warning about a certificate file: the validity of the
/// certificate presented (the first of the file) and the signatures of
/// all, issuers also looked for in `ca_file`.
pub fn certificate_file_warnings(
    path: &Path,
    ca_file: Option<&Path>,
    now: SystemTime,
) -> Vec<String> {
    certificate_warning(path, now)
        .into_iter()
        .chain(signature_warnings(path, ca_file, true))
        .collect()
}

/// A certificate file of a configuration: the key it is set at, the file,
/// the CA file next to it, and whether verdict presents it (else it is a
/// CA file).
struct CertFile<'a> {
    key: String,
    file: &'a Path,
    ca_file: Option<&'a Path>,
    presented: bool,
}

/// Every certificate of `config` that is expired or not valid yet at
/// `now`, or whose signature does not verify, with the path of its key.
pub fn certificate_warnings<'a>(config: &'a ValidatedConfig, now: SystemTime) -> Vec<String> {
    let mut files: Vec<CertFile<'a>> = Vec::new();
    let mut listener = |at: String, tls: &'a ListenerTls| {
        files.push(CertFile {
            key: format!("{at}.cert_file"),
            file: &tls.cert_file,
            ca_file: tls.client_ca_file.as_deref(),
            presented: true,
        });
        if let Some(ca) = &tls.client_ca_file {
            files.push(CertFile {
                key: format!("{at}.client_ca_file"),
                file: ca,
                ca_file: None,
                presented: false,
            });
        }
    };
    for r in &config.receivers {
        if let ReceiverKind::Otlp(otlp) = &r.kind {
            for (protocol, tls) in [("grpc", &otlp.grpc_tls), ("http", &otlp.http_tls)] {
                if let Some(tls) = tls {
                    listener(format!("receivers.{}.protocols.{protocol}.tls", r.id), tls);
                }
            }
        }
    }
    for e in &config.exporters {
        if let ExporterKind::Prometheus { tls: Some(tls), .. } = &e.kind {
            listener(format!("exporters.{}.tls", e.id), tls);
        }
    }
    if let Some(tls) = &config.service.api_tls {
        listener("service.api.tls".to_string(), tls);
    }
    let mut client = |at: String, tls: &'a ClientTls| {
        if let Some((cert, _)) = &tls.identity {
            files.push(CertFile {
                key: format!("{at}.cert_file"),
                file: cert,
                ca_file: tls.ca_file.as_deref(),
                presented: true,
            });
        }
        if let Some(ca) = &tls.ca_file {
            files.push(CertFile {
                key: format!("{at}.ca_file"),
                file: ca,
                ca_file: None,
                presented: false,
            });
        }
    };
    for r in &config.receivers {
        if let ReceiverKind::Probe(probe) = &r.kind {
            client(format!("receivers.{}.tls", r.id), &probe.plan.tls);
        }
    }
    for e in &config.exporters {
        match &e.kind {
            ExporterKind::Webhook(w) => client(format!("exporters.{}.tls", e.id), &w.tls),
            ExporterKind::Unleash(u) => client(format!("exporters.{}.tls", e.id), &u.tls),
            ExporterKind::Prometheus { .. } | ExporterKind::Log => {}
        }
    }
    files
        .into_iter()
        .flat_map(|f| {
            let warnings = if f.presented {
                certificate_file_warnings(f.file, f.ca_file, now)
            } else {
                signature_warnings(f.file, None, false)
            };
            warnings.into_iter().map(move |w| format!("{}: {w}", f.key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect("date")
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050.
        let v = validity(&cert((2024, 1, 2), (2051, 3, 4))).expect("validity");
        assert_eq!(v.not_before, at("2024-01-02T00:00:00Z"));
        assert_eq!(v.not_after, at("2051-03-04T00:00:00Z"));
        let v = validity(&cert((1999, 12, 31), (2000, 1, 1))).expect("validity");
        assert_eq!(v.not_before, at("1999-12-31T00:00:00Z"));
    }

    #[test]
    fn expired_and_not_yet_valid_are_told_with_their_date() {
        let v = validity(&cert((2020, 1, 1), (2021, 6, 1))).expect("validity");
        assert_eq!(
            problem(&v, at("2026-01-01T00:00:00Z")).as_deref(),
            Some("expired on 2021-06-01T00:00:00Z")
        );
        assert_eq!(
            problem(&v, at("2019-01-01T00:00:00Z")).as_deref(),
            Some("is not valid until 2020-01-01T00:00:00Z")
        );
        assert_eq!(problem(&v, at("2021-01-01T00:00:00Z")), None);
    }

    #[test]
    fn what_is_not_a_certificate_has_no_validity() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x82, 0xff]), None);
        let mut der = cert((2024, 1, 1), (2025, 1, 1));
        der.truncate(40);
        assert_eq!(validity(&der), None);
    }
}
