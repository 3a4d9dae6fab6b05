//! Whether a certificate's signature verifies. rustls checks signatures
//! only on the client's side, at the handshake, so a server configured
//! with a damaged or tampered certificate starts happily and every client
//! refuses it; like an expired certificate (`validity.rs`), it is said by
//! `verdict validate`, at start and on every re-read of the files.
//!
//! A signature can be checked when its issuer's key is at hand: the
//! certificate itself when it is self-signed, the next ones of its file (a
//! chain), or a configured CA file. A certificate whose issuer is none of
//! these is left to the clients, who have their roots.

use rustls_pki_types::CertificateDer;

use super::validity::{element, SEQUENCE};

const BIT_STRING: u8 = 0x03;
const EXPLICIT_VERSION: u8 = 0xa0;

/// The parts of a DER certificate a signature check needs.
struct Parsed<'a> {
    /// The signed bytes: the whole `tbsCertificate` element.
    tbs: &'a [u8],
    /// The contents of `signatureAlgorithm`.
    algorithm: &'a [u8],
    /// The signature, without the BIT STRING's unused-bits byte.
    signature: &'a [u8],
    /// The issuer's name, as encoded.
    issuer: &'a [u8],
    /// The subject's name, as encoded.
    subject: &'a [u8],
    /// The contents of the subject public key's algorithm.
    key_algorithm: &'a [u8],
    /// The subject public key, without the unused-bits byte.
    key: &'a [u8],
}

/// One DER element read whole: its tag, all its bytes (tag and length
/// included), its contents, and what follows it.
type Whole<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// The element at the start of `input`, read whole.
fn whole(input: &[u8]) -> Option<Whole<'_>> {
    let (tag, contents, rest) = element(input)?;
    Some((tag, &input[..input.len() - rest.len()], contents, rest))
}

/// A BIT STRING's bits when it has no unused bits (keys and signatures).
fn bits(tag: u8, contents: &[u8]) -> Option<&[u8]> {
    match (tag, contents.split_first()) {
        (BIT_STRING, Some((0, bits))) => Some(bits),
        _ => None,
    }
}

fn parse(der: &[u8]) -> Option<Parsed<'_>> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, tbs_contents, rest) = whole(certificate)? else {
        return None;
    };
    let (SEQUENCE, algorithm, rest) = element(rest)? else {
        return None;
    };
    let (tag, signature, _) = element(rest)?;
    let signature = bits(tag, signature)?;
    let mut fields = tbs_contents;
    if fields.first() == Some(&EXPLICIT_VERSION) {
        fields = element(fields)?.2;
    }
    // serialNumber, signature.
    for _ in 0..2 {
        fields = element(fields)?.2;
    }
    let (SEQUENCE, issuer, _, rest) = whole(fields)? else {
        return None;
    };
    // validity
    let rest = element(rest)?.2;
    let (SEQUENCE, subject, _, rest) = whole(rest)? else {
        return None;
    };
    let (SEQUENCE, spki, _) = element(rest)? else {
        return None;
    };
    let (SEQUENCE, key_algorithm, rest) = element(spki)? else {
        return None;
    };
    let (tag, key, _) = element(rest)?;
    Some(Parsed {
        tbs,
        algorithm,
        signature,
        issuer,
        subject,
        key_algorithm,
        key: bits(tag, key)?,
    })
}

/// Whether `issuer`'s key verifies `cert`'s signature; `None` when no
/// algorithm verifies with that pair of key and signature types (left to
/// the clients).
fn verifies(cert: &Parsed<'_>, issuer: &Parsed<'_>) -> Option<bool> {
    let provider = rustls::crypto::ring::default_provider();
    let mut known = false;
    for algorithm in provider.signature_verification_algorithms.all {
        if algorithm.public_key_alg_id().as_ref() != issuer.key_algorithm
            || algorithm.signature_alg_id().as_ref() != cert.algorithm
        {
            continue;
        }
        known = true;
        if algorithm
            .verify_signature(issuer.key, cert.tbs, cert.signature)
            .is_ok()
        {
            return Some(true);
        }
    }
    known.then_some(false)
}

/// What is wrong with the signatures of `certs` (a PEM file's, in order),
/// whose issuers may also be among `cas`: one sentence per certificate
/// that does not read as one or whose signature does not verify with the
/// key of any certificate named as its issuer.
pub fn problems(certs: &[CertificateDer<'_>], cas: &[CertificateDer<'_>]) -> Vec<String> {
    let parsed: Vec<Option<Parsed<'_>>> = certs.iter().map(|c| parse(c)).collect();
    let authorities: Vec<Parsed<'_>> = cas.iter().filter_map(|c| parse(c)).collect();
    let mut found = Vec::new();
    for (index, cert) in parsed.iter().enumerate() {
        let which = match certs.len() {
            1 => "the certificate".to_string(),
            _ => format!("certificate {} of {}", index + 1, certs.len()),
        };
        let Some(cert) = cert else {
            found.push(format!(
                "{which} does not read as an X.509 certificate (a damaged file?)"
            ));
            continue;
        };
        let issuers: Vec<&Parsed<'_>> = parsed
            .iter()
            .flatten()
            .chain(authorities.iter())
            .filter(|other| other.subject == cert.issuer)
            .collect();
        let outcomes: Vec<Option<bool>> = issuers.iter().map(|i| verifies(cert, i)).collect();
        let checked = outcomes.iter().any(Option::is_some);
        if checked && !outcomes.contains(&Some(true)) {
            let by = if cert.issuer == cert.subject {
                "its own key (self-signed)"
            } else {
                "its issuer's key"
            };
            found.push(format!(
                "{which}: signature does not verify with {by}, a damaged or tampered certificate"
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn self_signed() -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert")
            .der()
            .to_vec()
    }

    /// A CA's certificate and a leaf it signed.
    fn chain() -> (Vec<u8>, Vec<u8>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let ca_key = KeyPair::generate().expect("key");
        let ca = params.self_signed(&ca_key).expect("CA").der().to_vec();
        let issuer = Issuer::new(params, ca_key);
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("leaf")
            .der()
            .to_vec();
        (ca, leaf)
    }

    fn der(bytes: &[u8]) -> CertificateDer<'_> {
        CertificateDer::from(bytes)
    }

    /// `der` with one byte of its signature (at the end) changed.
    fn bad_signature(mut der: Vec<u8>) -> Vec<u8> {
        let last = der.len() - 3;
        der[last] ^= 0x55;
        der
    }

    /// `der` with one byte of the signed part changed: the last digit of
    /// its notBefore date (a UTCTime, which still reads as a date).
    fn bad_tbs(mut der: Vec<u8>) -> Vec<u8> {
        let dates: Vec<usize> = (0..der.len().saturating_sub(15))
            .filter(|&i| {
                der[i] == 0x17
                    && der[i + 1] == 13
                    && der[i + 2..i + 14].iter().all(u8::is_ascii_digit)
                    && der[i + 14] == b'Z'
            })
            .collect();
        let last_digit = dates[0] + 13;
        der[last_digit] = if der[last_digit] == b'0' { b'1' } else { b'0' };
        der
    }

    #[test]
    fn sound_certificates_verify() {
        let cert = self_signed();
        assert_eq!(problems(&[der(&cert)], &[]), Vec::<String>::new());
        let (ca, leaf) = chain();
        assert_eq!(problems(&[der(&leaf), der(&ca)], &[]), Vec::<String>::new());
        assert_eq!(problems(&[der(&leaf)], &[der(&ca)]), Vec::<String>::new());
        // No issuer at hand: nothing to say.
        assert_eq!(problems(&[der(&leaf)], &[]), Vec::<String>::new());
    }

    #[test]
    fn tampered_signatures_and_signed_parts_are_told() {
        for tampered in [bad_signature(self_signed()), bad_tbs(self_signed())] {
            let found = problems(&[der(&tampered)], &[]);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(
                found[0].contains("signature does not verify with its own key"),
                "{found:?}"
            );
        }
        let (ca, leaf) = chain();
        let leaf = bad_signature(leaf);
        let found = problems(&[der(&leaf), der(&ca)], &[]);
        assert_eq!(
            found,
            vec![
                "certificate 1 of 2: signature does not verify with its issuer's key, a damaged or tampered certificate"
            ]
        );
        assert_eq!(problems(&[der(&leaf)], &[der(&ca)]).len(), 1);
    }

    #[test]
    fn what_does_not_read_is_told() {
        let mut cert = self_signed();
        cert.truncate(cert.len() - 10);
        let found = problems(&[der(&cert)], &[]);
        assert!(
            found[0].contains("does not read as an X.509 certificate"),
            "{found:?}"
        );
    }
}
