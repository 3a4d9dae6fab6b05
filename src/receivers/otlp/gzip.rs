//! Inflating a gzip body (OTLP/HTTP `Content-Encoding: gzip`, an OTLP/gRPC
//! message compressed with `grpc-encoding: gzip`), for both front ends.
//!
//! - Every member is read. A gzip stream is a series of members (RFC 1952
//!   §2.2); concatenated files (`cat a.gz b.gz`) and streaming compressors
//!   that flush members produce several. A decoder that stops after the
//!   first (`flate2::read::GzDecoder`, also tonic's) silently drops the rest
//!   — and when the first member ends between two protobuf fields, the
//!   truncated body still decodes, so the request is accepted with only part
//!   of its items.
//! - The `max_request_bytes` limit holds over all members together and is
//!   checked while inflating: a gzip bomb, in one member or spread over
//!   many, is refused once the limit is passed, never inflated whole.
//! - The output is charged to the request's share of the in-flight budget
//!   before it grows ([`budget`](super::budget)), so many bodies inflating
//!   at once are bounded by the budget, not by their number times the limit.

use std::io::Read as _;

use bytes::Bytes;

use super::budget::{Budget, Charge, ChargedBuf};
use super::IngestError;

/// The refusal of a body larger than `limit` once decompressed.
pub fn too_large(limit: usize) -> IngestError {
    IngestError::TooLarge(format!(
        "request body exceeds max_request_bytes ({limit} bytes) after decompression"
    ))
}

/// Inflates every member of the gzip stream `raw`, charging the output to
/// `charge` as it grows (before each growth: a bomb is refused by the
/// budget or by the limit, whichever comes first, never inflated whole),
/// and stopping one byte past `limit` ([`too_large`]).
pub fn inflate_with(raw: &[u8], limit: usize, charge: &mut Charge) -> Result<Bytes, IngestError> {
    // Most OTLP bodies compress 4–10x: start there, then double.
    let mut out = ChargedBuf::with_capacity(charge, limit, raw.len().saturating_mul(4))?;
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    let mut chunk = vec![0u8; INFLATE_CHUNK];
    loop {
        match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend(&chunk[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IngestError::Malformed(format!("malformed gzip body: {e}"))),
        }
    }
    Ok(out.into_bytes())
}

/// How much is inflated between two charges.
const INFLATE_CHUNK: usize = 32 * 1024;

/// Inflates `raw` like [`inflate_with`] on a budget of its own, as large
/// as the limit: for callers that hold no request budget (fuzzing, tests).
#[allow(dead_code)] // the server always inflates with a request's charge
pub fn inflate(raw: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let budget = Budget::new(limit.saturating_mul(2) as u64);
    inflate_with(raw, limit, &mut budget.charge("none"))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).expect("in memory");
        gz.finish().expect("in memory")
    }

    #[test]
    fn every_member_is_inflated() {
        let mut raw = gzip(b"first ");
        raw.extend(gzip(b"second "));
        raw.extend(gzip(b"third"));
        assert_eq!(
            inflate(&raw, 1024).as_deref(),
            Ok(&b"first second third"[..])
        );
    }

    #[test]
    fn the_limit_holds_over_all_members() {
        let mut raw = gzip(&[0u8; 600]);
        raw.extend(gzip(&[0u8; 600]));
        assert_eq!(inflate(&raw, 1200).map(|b| b.len()), Ok(1200));
        assert!(matches!(inflate(&raw, 1199), Err(IngestError::TooLarge(_))));
        // A bomb stops at the limit: 16 MiB of zeros are never inflated.
        let bomb = {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            for _ in 0..16 {
                gz.write_all(&[0u8; 1 << 20]).expect("in memory");
            }
            gz.finish().expect("in memory")
        };
        assert!(matches!(
            inflate(&bomb, 64 * 1024),
            Err(IngestError::TooLarge(_))
        ));
    }

    #[test]
    fn a_broken_member_is_malformed() {
        let mut raw = gzip(b"first");
        raw.extend(b"\x1f\x8b\x08 not gzip");
        assert!(matches!(
            inflate(&raw, 1024),
            Err(IngestError::Malformed(_))
        ));
        assert!(matches!(
            inflate(b"plain text", 1024),
            Err(IngestError::Malformed(_))
        ));
    }
}
