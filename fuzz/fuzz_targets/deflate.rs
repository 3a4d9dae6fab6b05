//! Inflating deflate bodies (`receivers/otlp/inflate.rs`; the zlib format,
//! RFC 1950, as HTTP and gRPC mean `deflate`):
//!
//! - a well-formed stream inflates to all of its data, or is refused as
//!   too large exactly when that data is over `max_request_bytes`;
//! - bytes after the stream, or a stream cut short, are refused, never
//!   ignored (the oracle below compares with flate2 on every body);
//! - on any bytes, the output is never over the limit, and it equals what
//!   flate2's `ZlibDecoder` reads whenever that is within the limit and
//!   the stream ends where the body does.
#![no_main]

use std::io::{Read as _, Write as _};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use verdict::fuzzing::{inflate, Compression, IngestError};

#[derive(Debug, Arbitrary)]
enum Input {
    /// A stream compressed from `data` (level 0–9), cut short by `cut`
    /// bytes, then `tail`.
    Stream {
        limit: u16,
        data: Vec<u8>,
        level: u8,
        /// Bytes cut from the end of the body (a truncated stream).
        cut: u8,
        tail: Vec<u8>,
    },
    /// Any bytes.
    Raw { limit: u16, body: Vec<u8> },
}

fn zlib(data: &[u8], level: u8) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::new(),
        flate2::Compression::new(u32::from(level % 10)),
    );
    z.write_all(data).expect("in memory");
    z.finish().expect("in memory")
}

/// What flate2's zlib decoder makes of `body`, reading at most one byte
/// past `limit` (as the receiver does), and whether it read all of it.
fn reference(body: &[u8], limit: usize) -> Result<(Vec<u8>, bool), std::io::Error> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::ZlibDecoder::new(body);
    (&mut decoder)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    let whole = decoder.total_in() == body.len() as u64;
    Ok((out, whole))
}

fn check_any(body: &[u8], limit: usize) {
    let got = inflate(Compression::Deflate, body, limit);
    if let Ok(out) = &got {
        assert!(
            out.len() <= limit,
            "{} bytes over the limit {limit}",
            out.len()
        );
    }
    match (reference(body, limit), got) {
        (Ok((want, true)), Ok(out)) => assert_eq!(&out[..], &want[..], "inflated data"),
        (Ok((want, _)), Err(IngestError::TooLarge(_))) => {
            assert!(want.len() > limit, "too large at {} bytes", want.len())
        }
        // Trailing bytes, or a stream flate2 refuses.
        (Ok((_, false)) | Err(_), Err(IngestError::Malformed(_))) => {}
        (want, got) => panic!("flate2: {want:?}, receiver: {got:?}"),
    }
}

fuzz_target!(|input: Input| match input {
    Input::Raw { limit, body } => check_any(&body, usize::from(limit)),
    Input::Stream {
        limit,
        data,
        level,
        cut,
        tail,
    } => {
        let limit = usize::from(limit);
        let mut body = zlib(&data, level);
        let cut = usize::from(cut).min(body.len());
        body.truncate(body.len() - cut);
        body.extend_from_slice(&tail);
        check_any(&body, limit);
        let got = inflate(Compression::Deflate, &body, limit);
        if cut == 0 && tail.is_empty() {
            match got {
                Ok(out) => assert_eq!(&out[..], &data[..], "the whole stream inflated"),
                Err(IngestError::TooLarge(_)) => {
                    assert!(
                        data.len() > limit,
                        "{} bytes refused as too large",
                        data.len()
                    )
                }
                Err(e) => panic!("a well-formed stream refused: {e}"),
            }
        } else if cut > 0 && tail.is_empty() && data.len() <= limit {
            // Cut short with nothing after it: refused, never accepted
            // as if whole. (With a tail, the body may be another stream
            // of the same data; and fuzzing builds of the decoder skip
            // the Adler-32 check, `cfg(fuzzing)` in miniz_oxide, so a
            // replaced trailer is a unit test of `inflate.rs` instead.)
            assert!(
                matches!(got, Err(IngestError::Malformed(_))),
                "a stream cut by {cut} bytes: {got:?}"
            );
        }
    }
});
