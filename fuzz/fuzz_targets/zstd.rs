//! Inflating zstd bodies (`receivers/otlp/inflate.rs`):
//!
//! - bodies made of several frames, empty ones included, inflate to all of
//!   their data, or are refused as too large exactly when that data is
//!   over `max_request_bytes`;
//! - on any bytes, the output is never over the limit, and when the body
//!   is accepted it is exactly what the zstd library's own streaming
//!   decoder reads (every frame); what that decoder refuses is refused.
#![no_main]

use std::io::Read as _;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use verdict::fuzzing::{inflate, Compression, IngestError};

#[derive(Debug, Arbitrary)]
enum Input {
    /// Frames compressed from these chunks (level 1–19), cut short by
    /// `cut` bytes, then `tail`: a truncated frame or trailing garbage
    /// must be refused, never silently dropped.
    Frames {
        limit: u16,
        frames: Vec<(Vec<u8>, u8)>,
        /// Bytes cut from the end of the body (a truncated frame).
        cut: u8,
        tail: Vec<u8>,
    },
    /// Any bytes.
    Raw { limit: u16, body: Vec<u8> },
}

fn zstd(data: &[u8], level: u8) -> Vec<u8> {
    zstd::stream::encode_all(data, i32::from(level % 19) + 1).expect("in memory")
}

/// What zstd's streaming decoder makes of `body` (every frame), reading
/// at most one byte past `limit` (as the receiver does).
fn reference(body: &[u8], limit: usize) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::with_buffer(body)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

fn check_any(body: &[u8], limit: usize) {
    let got = inflate(Compression::Zstd, body, limit);
    match (reference(body, limit), got) {
        (Ok(want), Ok(out)) => {
            assert!(
                out.len() <= limit,
                "{} bytes over the limit {limit}",
                out.len()
            );
            assert_eq!(&out[..], &want[..], "inflated data");
        }
        (Err(e), Ok(out)) => panic!("zstd refuses ({e}), receiver accepts {} bytes", out.len()),
        // Refusals: too large (the output, or a frame's declared window,
        // which the reference does not bound) or malformed.
        (_, Err(IngestError::TooLarge(_) | IngestError::Malformed(_))) => {}
        (_, Err(e)) => panic!("unexpected refusal: {e}"),
    }
}

fuzz_target!(|input: Input| match input {
    Input::Raw { limit, body } => check_any(&body, usize::from(limit)),
    Input::Frames {
        limit,
        frames,
        cut,
        tail,
    } => {
        let limit = usize::from(limit);
        let mut body: Vec<u8> = frames.iter().flat_map(|(d, l)| zstd(d, *l)).collect();
        let data: Vec<u8> = frames.iter().flat_map(|(d, _)| d.clone()).collect();
        let cut = usize::from(cut).min(body.len());
        body.truncate(body.len() - cut);
        body.extend_from_slice(&tail);
        check_any(&body, limit);
        if cut == 0 && tail.is_empty() && !frames.is_empty() {
            match inflate(Compression::Zstd, &body, limit) {
                Ok(out) => assert_eq!(&out[..], &data[..], "every frame inflated"),
                Err(IngestError::TooLarge(_)) => {
                    assert!(
                        data.len() > limit,
                        "{} bytes refused as too large",
                        data.len()
                    )
                }
                Err(e) => panic!("well-formed frames refused: {e}"),
            }
        }
    }
});
