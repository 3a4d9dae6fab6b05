//! Inflating gzip bodies (`receivers/otlp/inflate.rs`):
//!
//! - bodies made of several members, empty ones included, inflate to all
//!   of their data, or are refused as too large exactly when that data is
//!   over `max_request_bytes`;
//! - on any bytes, the output is never over the limit, and it equals what
//!   flate2's `MultiGzDecoder` reads whenever that is within the limit.
#![no_main]

use std::io::{Read as _, Write as _};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use verdict::fuzzing::{inflate, Compression, IngestError};

#[derive(Debug, Arbitrary)]
enum Input {
    /// Members compressed from these chunks (level 0–9), cut short by
    /// `cut` bytes, then `tail`: a truncated member or trailing garbage
    /// must be refused as flate2 refuses it, never silently dropped.
    Members {
        limit: u16,
        members: Vec<(Vec<u8>, u8)>,
        /// Bytes cut from the end of the body (a truncated member).
        cut: u8,
        tail: Vec<u8>,
    },
    /// Any bytes.
    Raw { limit: u16, body: Vec<u8> },
}

fn gzip(data: &[u8], level: u8) -> Vec<u8> {
    let mut gz =
        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(u32::from(level % 10)));
    gz.write_all(data).expect("in memory");
    gz.finish().expect("in memory")
}

/// What flate2's multi-member decoder makes of `body`, reading at most one
/// byte past `limit` (as the receiver does).
fn reference(body: &[u8], limit: usize) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

fn check_any(body: &[u8], limit: usize) {
    let got = inflate(Compression::Gzip, body, limit);
    if let Ok(out) = &got {
        assert!(
            out.len() <= limit,
            "{} bytes over the limit {limit}",
            out.len()
        );
    }
    match (reference(body, limit), got) {
        (Ok(want), Ok(out)) => assert_eq!(&out[..], &want[..], "inflated data"),
        (Ok(want), Err(IngestError::TooLarge(_))) => {
            assert!(want.len() > limit, "too large at {} bytes", want.len())
        }
        (Err(_), Err(IngestError::Malformed(_))) => {}
        (want, got) => panic!("flate2: {want:?}, receiver: {got:?}"),
    }
}

fuzz_target!(|input: Input| match input {
    Input::Raw { limit, body } => check_any(&body, usize::from(limit)),
    Input::Members {
        limit,
        members,
        cut,
        tail,
    } => {
        let limit = usize::from(limit);
        let mut body: Vec<u8> = members.iter().flat_map(|(d, l)| gzip(d, *l)).collect();
        let data: Vec<u8> = members.iter().flat_map(|(d, _)| d.clone()).collect();
        let cut = usize::from(cut).min(body.len());
        body.truncate(body.len() - cut);
        body.extend_from_slice(&tail);
        check_any(&body, limit);
        if cut == 0 && tail.is_empty() && !members.is_empty() {
            match inflate(Compression::Gzip, &body, limit) {
                Ok(out) => assert_eq!(&out[..], &data[..], "every member inflated"),
                Err(IngestError::TooLarge(_)) => {
                    assert!(
                        data.len() > limit,
                        "{} bytes refused as too large",
                        data.len()
                    )
                }
                Err(e) => panic!("well-formed members refused: {e}"),
            }
        }
    }
});
