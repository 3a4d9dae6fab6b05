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

use std::io::Read as _;

use bytes::Bytes;

use super::IngestError;

/// The refusal of a body larger than `limit` once decompressed.
pub fn too_large(limit: usize) -> IngestError {
    IngestError::TooLarge(format!(
        "request body exceeds max_request_bytes ({limit} bytes) after decompression"
    ))
}

/// Inflates every member of the gzip stream `raw`, stopping one byte past
/// `limit` (then [`too_large`]).
pub fn inflate(raw: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Malformed(format!("malformed gzip body: {e}")))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
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
