//! Inflating a compressed body (OTLP/HTTP `Content-Encoding`, an OTLP/gRPC
//! message of a call with `grpc-encoding`), for both front ends: `gzip`,
//! `deflate` (the zlib format, RFC 1950, as HTTP and gRPC mean it and as
//! the Collector and the SDKs send it) and `zstd` (RFC 8878, which the
//! Collector and several SDKs use).
//!
//! - Every gzip member and every zstd frame is read. A gzip stream is a
//!   series of members (RFC 1952 §2.2), a zstd stream a series of frames;
//!   concatenated files (`cat a.gz b.gz`) and streaming compressors that
//!   flush produce several. A decoder that stops after the first
//!   (`flate2::read::GzDecoder`, also tonic's) silently drops the rest —
//!   and when the first ends between two protobuf fields, the truncated
//!   body still decodes, so the request is accepted with only part of its
//!   items. A zlib stream is one stream: bytes after it are refused, not
//!   ignored, for the same reason.
//! - The `max_request_bytes` limit holds over the whole output and is
//!   checked while inflating: a bomb, in one member or frame or spread
//!   over many, is refused once the limit is passed, never inflated whole.
//! - The output is charged to the request's share of the in-flight budget
//!   before it grows ([`budget`](super::budget)), so many bodies inflating
//!   at once are bounded by the budget, not by their number times the limit.
//! - A zstd decoder also holds a window of history that a frame declares
//!   in its header (up to 128 MiB by zstd's own default), which a body of
//!   a few bytes can ask for. It is read from each frame's header before
//!   anything is decoded: a window larger than the limit (or than 8 MiB,
//!   what streaming compressors commonly declare, when the limit is
//!   smaller) is refused as too large, and the memory the decoder will
//!   take is charged to the budget first, like the output.

use bytes::Bytes;

use super::budget::{Budget, Charge, ChargedBuf};
use super::IngestError;

/// A content encoding verdict inflates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `gzip` (RFC 1952), every member.
    Gzip,
    /// `deflate`: the zlib format (RFC 1950).
    Deflate,
    /// `zstd` (RFC 8878), every frame.
    Zstd,
}

/// The encodings accepted, as a `grpc-accept-encoding` value and in
/// messages.
pub const ACCEPTED: &str = "gzip, zstd, deflate";

impl Compression {
    /// The compression a `Content-Encoding` or `grpc-encoding` value
    /// names: `None` for none (absent, empty or `identity`), a refusal
    /// ([`IngestError::UnsupportedEncoding`]) for any other.
    pub fn from_header(value: Option<&[u8]>) -> Result<Option<Compression>, IngestError> {
        let value = value.map(|v| String::from_utf8_lossy(v.trim_ascii()).to_ascii_lowercase());
        match value.as_deref() {
            None | Some("") | Some("identity") => Ok(None),
            Some("gzip") | Some("x-gzip") => Ok(Some(Compression::Gzip)),
            Some("deflate") => Ok(Some(Compression::Deflate)),
            Some("zstd") => Ok(Some(Compression::Zstd)),
            Some(other) => Err(IngestError::UnsupportedEncoding(format!(
                "unsupported content encoding {other:?}: use {ACCEPTED} or none"
            ))),
        }
    }

    /// The encoding's name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Deflate => "deflate",
            Compression::Zstd => "zstd",
        }
    }
}

/// The refusal of a body larger than `limit` once decompressed.
pub fn too_large(limit: usize) -> IngestError {
    IngestError::TooLarge(format!(
        "request body exceeds max_request_bytes ({limit} bytes) after decompression"
    ))
}

/// Inflates `raw`, compressed with `compression`, charging the output to
/// `charge` as it grows (before each growth: a bomb is refused by the
/// budget or by the limit, whichever comes first, never inflated whole),
/// and stopping one byte past `limit` ([`too_large`]).
pub fn inflate_with(
    compression: Compression,
    raw: &[u8],
    limit: usize,
    charge: &mut Charge,
) -> Result<Bytes, IngestError> {
    let malformed = |e: std::io::Error| {
        IngestError::Malformed(format!("malformed {} body: {e}", compression.name()))
    };
    // The zstd decoder's window, charged before the decoder allocates it
    // and given back once it is dropped.
    let window = match compression {
        Compression::Zstd => zstd_window(raw, limit)?,
        Compression::Gzip | Compression::Deflate => 0,
    };
    charge.grow_to(charge.bytes().saturating_add(window))?;
    // Most OTLP bodies compress 4–10x: start there, then double.
    let mut out = ChargedBuf::with_capacity(charge, limit, raw.len().saturating_mul(4))?;
    match compression {
        Compression::Gzip => drain(flate2::read::MultiGzDecoder::new(raw), &mut out, malformed)?,
        Compression::Deflate => {
            let mut decoder = flate2::read::ZlibDecoder::new(raw);
            drain(&mut decoder, &mut out, malformed)?;
            // One zlib stream: bytes after it are refused, not ignored.
            let read = usize::try_from(decoder.total_in()).unwrap_or(usize::MAX);
            if read < raw.len() {
                return Err(IngestError::Malformed(format!(
                    "malformed deflate body: {} bytes after the end of the zlib stream",
                    raw.len() - read
                )));
            }
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(raw).map_err(malformed)?;
            decoder
                .window_log_max(window_log_max(limit))
                .map_err(malformed)?;
            drain(decoder, &mut out, malformed)?;
        }
    }
    let bytes = out.into_bytes();
    charge.shrink_to(charge.bytes().saturating_sub(window));
    Ok(bytes)
}

/// Reads `decoder` to its end into `out`, chunk by chunk.
fn drain(
    mut decoder: impl std::io::Read,
    out: &mut ChargedBuf<'_>,
    malformed: impl Fn(std::io::Error) -> IngestError,
) -> Result<(), IngestError> {
    let mut chunk = vec![0u8; INFLATE_CHUNK];
    loop {
        match decoder.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend(&chunk[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(malformed(e)),
        }
    }
}

/// How much is inflated between two charges.
const INFLATE_CHUNK: usize = 32 * 1024;

/// The largest zstd window accepted whatever the limit: what streaming
/// compressors commonly declare (zstd's levels up to 19 without long mode
/// use at most 8 MiB; so does the Go encoder the Collector uses).
const ZSTD_COMMON_WINDOW: u64 = 8 << 20;

/// The largest window log zstd decodes by default (128 MiB).
const ZSTD_WINDOW_LOG_DEFAULT_MAX: u32 = 27;

/// The window log the decoder allows for `limit`: a window never needs
/// to exceed the output, but a compressor that does not know the size
/// declares its level's window, so the common one is allowed too.
fn window_log_max(limit: usize) -> u32 {
    let wanted = (limit as u64).max(ZSTD_COMMON_WINDOW).max(1);
    // ⌈log2(wanted)⌉
    let log = u64::BITS - (wanted - 1).leading_zeros();
    log.clamp(10, ZSTD_WINDOW_LOG_DEFAULT_MAX)
}

/// The memory the zstd decoder will hold for the frames of `raw` (the
/// largest window any frame declares, or its content size when smaller),
/// or too large when a frame declares a window the limit does not allow.
/// Frames are walked by their headers and block headers only; a frame
/// that cannot be walked is left to the decoder to refuse.
fn zstd_window(raw: &[u8], limit: usize) -> Result<usize, IngestError> {
    let allowed = 1u64 << window_log_max(limit);
    let mut needed = 0u64;
    let mut at = 0;
    while at < raw.len() {
        let frame = &raw[at..];
        let Ok(len) = zstd::zstd_safe::find_frame_compressed_size(frame) else {
            break;
        };
        if let Some(window) = frame_window(frame) {
            if window > allowed {
                return Err(IngestError::TooLarge(format!(
                    "zstd frame declares a window of {window} bytes; max_request_bytes \
                     ({limit} bytes) allows at most {allowed}"
                )));
            }
            let content = zstd::zstd_safe::get_frame_content_size(frame)
                .ok()
                .flatten()
                .unwrap_or(window);
            // The decoder also holds up to two blocks (128 KiB each).
            needed = needed.max(window.min(content) + ZSTD_BLOCK_BUFFERS);
        }
        at += len.max(1);
    }
    Ok(usize::try_from(needed).unwrap_or(usize::MAX))
}

/// What the zstd decoder holds besides its window.
const ZSTD_BLOCK_BUFFERS: u64 = 256 * 1024;

/// The window a zstd frame declares (RFC 8878 §3.1.1.1): its window
/// descriptor, or its content size for a single-segment frame; `None` for
/// a skippable frame or a header that cannot be read.
fn frame_window(frame: &[u8]) -> Option<u64> {
    const MAGIC: u32 = 0xFD2F_B528;
    let magic = u32::from_le_bytes(frame.get(..4)?.try_into().ok()?);
    if magic != MAGIC {
        return None;
    }
    let descriptor = *frame.get(4)?;
    if descriptor & 0x20 == 0 {
        // Window_Descriptor: exponent (5 bits) and mantissa (3 bits).
        let wd = *frame.get(5)?;
        let base = 1u64 << (10 + u32::from(wd >> 3));
        return Some(base + base / 8 * u64::from(wd & 7));
    }
    // Single segment: the window is the content size, after the
    // dictionary id.
    let dict = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let fcs = [1, 2, 4, 8][usize::from(descriptor >> 6)];
    let bytes = frame.get(5 + dict..5 + dict + fcs)?;
    let size = bytes
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    Some(if fcs == 2 { size + 256 } else { size })
}

/// Inflates `raw` like [`inflate_with`] on a budget of its own, as large
/// as the limit (and a zstd window): for callers that hold no request
/// budget (fuzzing, tests).
#[allow(dead_code)] // the server always inflates with a request's charge
pub fn inflate(compression: Compression, raw: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let budget = Budget::new((limit as u64).saturating_mul(2) + (256 << 20));
    inflate_with(compression, raw, limit, &mut budget.charge("none"))
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

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(data).expect("in memory");
        z.finish().expect("in memory")
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(data, 19).expect("in memory")
    }

    #[test]
    fn every_member_is_inflated() {
        let mut raw = gzip(b"first ");
        raw.extend(gzip(b"second "));
        raw.extend(gzip(b"third"));
        assert_eq!(
            inflate(Compression::Gzip, &raw, 1024).as_deref(),
            Ok(&b"first second third"[..])
        );
    }

    #[test]
    fn every_zstd_frame_is_inflated() {
        let mut raw = zstd(b"first ");
        raw.extend(zstd(b"second "));
        raw.extend(zstd(b"third"));
        assert_eq!(
            inflate(Compression::Zstd, &raw, 1024).as_deref(),
            Ok(&b"first second third"[..])
        );
    }

    /// A body cut short (a lost trailer byte, a frame's last block) is
    /// refused, never accepted as if it were whole: the invariant the
    /// `deflate` and `zstd` fuzz targets check on any cut.
    #[test]
    fn bodies_cut_short_are_refused() {
        let data = b"resourceSpans checkout 2.1.0 ".repeat(20);
        for compression in [Compression::Gzip, Compression::Deflate, Compression::Zstd] {
            let whole = match compression {
                Compression::Gzip => gzip(&data),
                Compression::Deflate => deflate(&data),
                Compression::Zstd => zstd(&data),
            };
            for cut in 1..whole.len() {
                let got = inflate(compression, &whole[..whole.len() - cut], 1 << 20);
                assert!(
                    matches!(got, Err(IngestError::Malformed(_))),
                    "{compression:?} cut by {cut}: {got:?}"
                );
            }
        }
    }

    /// A body whose checksum does not match its data (zlib's Adler-32,
    /// gzip's CRC-32) is refused. (Fuzzing builds of the decoder skip the
    /// Adler-32 check, so this holds here, not in the `deflate` target.)
    #[test]
    fn a_wrong_checksum_is_refused() {
        let data = b"resourceSpans checkout 2.1.0 ".repeat(20);
        for compression in [Compression::Gzip, Compression::Deflate] {
            let whole = match compression {
                Compression::Gzip => gzip(&data),
                _ => deflate(&data),
            };
            // gzip ends with CRC-32 then the length; zlib with Adler-32.
            let at = match compression {
                Compression::Gzip => whole.len() - 8,
                _ => whole.len() - 1,
            };
            let mut bad = whole.clone();
            bad[at] ^= 0x5a;
            let got = inflate(compression, &bad, 1 << 20);
            assert!(
                matches!(got, Err(IngestError::Malformed(_))),
                "{compression:?} with a wrong checksum: {got:?}"
            );
        }
    }

    #[test]
    fn deflate_is_the_zlib_format() {
        assert_eq!(
            inflate(Compression::Deflate, &deflate(b"spans"), 1024).as_deref(),
            Ok(&b"spans"[..])
        );
        // Raw deflate (no zlib header) and bytes after the stream are
        // refused, not silently cut.
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        raw.write_all(b"spans").expect("in memory");
        let raw = raw.finish().expect("in memory");
        assert!(matches!(
            inflate(Compression::Deflate, &raw, 1024),
            Err(IngestError::Malformed(_))
        ));
        let mut two = deflate(b"first");
        two.extend(deflate(b"second"));
        let err = inflate(Compression::Deflate, &two, 1024);
        assert!(
            matches!(&err, Err(IngestError::Malformed(m)) if m.contains("after the end")),
            "{err:?}"
        );
    }

    #[test]
    fn the_limit_holds_over_all_members() {
        let mut raw = gzip(&[0u8; 600]);
        raw.extend(gzip(&[0u8; 600]));
        assert_eq!(
            inflate(Compression::Gzip, &raw, 1200).map(|b| b.len()),
            Ok(1200)
        );
        assert!(matches!(
            inflate(Compression::Gzip, &raw, 1199),
            Err(IngestError::TooLarge(_))
        ));
        let mut raw = zstd(&[0u8; 600]);
        raw.extend(zstd(&[0u8; 600]));
        assert_eq!(
            inflate(Compression::Zstd, &raw, 1200).map(|b| b.len()),
            Ok(1200)
        );
        assert!(matches!(
            inflate(Compression::Zstd, &raw, 1199),
            Err(IngestError::TooLarge(_))
        ));
    }

    /// 16 MiB of zeros compress to a few KiB in every encoding; inflating
    /// stops at the limit.
    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 16 << 20];
        let bombs = [
            (Compression::Gzip, gzip(&zeros)),
            (Compression::Deflate, deflate(&zeros)),
            (Compression::Zstd, zstd(&zeros)),
        ];
        for (compression, bomb) in bombs {
            assert!(bomb.len() < 64 * 1024, "{compression:?}: {}", bomb.len());
            let err = inflate(compression, &bomb, 64 * 1024);
            assert!(
                matches!(&err, Err(IngestError::TooLarge(m)) if m.contains("after decompression")),
                "{compression:?}: {err:?}"
            );
        }
    }

    #[test]
    fn a_zstd_window_beyond_the_limit_is_refused_before_decoding() {
        // A streaming compressor with a 128 MiB window: a frame of a few
        // bytes that would make the decoder take 128 MiB.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        enc.window_log(27).expect("window log");
        enc.long_distance_matching(true).expect("ldm");
        enc.write_all(b"tiny").expect("in memory");
        let raw = enc.finish().expect("in memory");
        assert_eq!(frame_window(&raw), Some(128 << 20));
        let err = inflate(Compression::Zstd, &raw, 20 << 20);
        assert!(
            matches!(&err, Err(IngestError::TooLarge(m)) if m.contains("window of 134217728 bytes")),
            "{err:?}"
        );
        // Its 8 MiB equivalent is what streaming compressors declare: fine
        // even with a small limit.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        enc.window_log(23).expect("window log");
        enc.write_all(b"tiny").expect("in memory");
        let raw = enc.finish().expect("in memory");
        assert_eq!(
            inflate(Compression::Zstd, &raw, 1024).as_deref(),
            Ok(&b"tiny"[..])
        );
    }

    #[test]
    fn the_zstd_window_is_charged_before_decoding() {
        // A frame without a content size declaring an 8 MiB window: with
        // less than that left in the budget, it is refused (retryable)
        // before the decoder allocates it.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
        enc.window_log(23).expect("window log");
        enc.include_contentsize(false).expect("no content size");
        enc.write_all(b"tiny").expect("in memory");
        let raw = enc.finish().expect("in memory");
        assert_eq!(zstd_window(&raw, 1024), Ok((8 << 20) + 256 * 1024));
        let budget = Budget::new(4 << 20);
        let err = inflate_with(Compression::Zstd, &raw, 1024, &mut budget.charge("http"));
        assert!(matches!(err, Err(IngestError::Memory(_))), "{err:?}");
        // With a content size, only that much is held.
        assert!(zstd_window(&zstd(b"tiny"), 1024).is_ok_and(|w| w < 300 * 1024));
    }

    #[test]
    fn window_logs_follow_the_limit() {
        assert_eq!(window_log_max(1024), 23);
        assert_eq!(window_log_max(20 << 20), 25);
        assert_eq!(window_log_max(32 << 20), 25);
        assert_eq!(window_log_max(1 << 40), 27);
    }

    #[test]
    fn broken_bodies_are_malformed() {
        let mut raw = gzip(b"first");
        raw.extend(b"\x1f\x8b\x08 not gzip");
        for (compression, raw) in [
            (Compression::Gzip, raw),
            (Compression::Gzip, b"plain text".to_vec()),
            (Compression::Deflate, b"plain text".to_vec()),
            (Compression::Zstd, b"plain text".to_vec()),
            (Compression::Zstd, zstd(b"spans")[..8].to_vec()),
        ] {
            let err = inflate(compression, &raw, 1024);
            assert!(
                matches!(&err, Err(IngestError::Malformed(m)) if m.contains(compression.name())),
                "{compression:?}: {err:?}"
            );
        }
    }

    #[test]
    fn encodings_by_header() {
        let of = |v: &str| Compression::from_header(Some(v.as_bytes()));
        assert_eq!(Compression::from_header(None), Ok(None));
        assert_eq!(of(""), Ok(None));
        assert_eq!(of("identity"), Ok(None));
        assert_eq!(of(" GZIP "), Ok(Some(Compression::Gzip)));
        assert_eq!(of("deflate"), Ok(Some(Compression::Deflate)));
        assert_eq!(of("zstd"), Ok(Some(Compression::Zstd)));
        let err = of("br");
        assert!(
            matches!(&err, Err(IngestError::UnsupportedEncoding(m)) if m.contains("\"br\"") && m.contains("zstd")),
            "{err:?}"
        );
    }
}
