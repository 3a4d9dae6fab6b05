//! The protobuf hot path: reads an `ExportTraceServiceRequest` straight from
//! the wire, borrowing from the request body, and converts it to samples
//! without building the prost message tree.
//!
//! A full prost decode allocates every span, id, name and attribute only for
//! conversion to look at four fields of each span; this reader visits the
//! same bytes once and keeps what a contract needs: resource attributes (as
//! text), span kind, start/end time, status code, the HTTP status attributes
//! and the truthy attributes (conversion markers). Everything else is skipped
//! by its wire type. It checks what it reads — lengths, varints, UTF-8 of the
//! strings it uses — so malformed input is refused as it would be by prost;
//! a test compares it with the prost path on generated requests.

use std::borrow::Cow;

use super::convert::{
    convert_span, lookup, resource_targets, Converted, SpanView, HTTP_STATUS_KEYS,
};
use crate::model::UnixNanos;
use crate::receivers::PipelineInput;

/// Malformed protobuf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct WireError(&'static str);

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over one message's bytes.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(WireError("truncated varint"))?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError("varint longer than 10 bytes"))
    }

    /// The next field number and wire type, `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u8)>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        if field == 0 || key >> 3 > u64::from(u32::MAX >> 3) {
            return Err(WireError("invalid field number"));
        }
        Ok(Some((field, (key & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError("length beyond the end of the message"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| WireError("length too large"))?)
    }

    fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips a field of wire type `wt`.
    fn skip(&mut self, wt: u8) -> Result<(), WireError> {
        match wt {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => Err(WireError("unsupported wire type")),
        }
    }

    /// A length-delimited field; anything else under this number is malformed.
    fn expect_len(&mut self, wt: u8) -> Result<&'a [u8], WireError> {
        if wt != LEN {
            return Err(WireError("wrong wire type for a message or string field"));
        }
        self.bytes()
    }

    fn expect_varint(&mut self, wt: u8) -> Result<u64, WireError> {
        if wt != VARINT {
            return Err(WireError("wrong wire type for an integer field"));
        }
        self.varint()
    }

    fn expect_fixed64(&mut self, wt: u8) -> Result<u64, WireError> {
        if wt != FIXED64 {
            return Err(WireError("wrong wire type for a fixed64 field"));
        }
        self.fixed64()
    }

    fn expect_fixed32(&mut self, wt: u8) -> Result<(), WireError> {
        if wt != FIXED32 {
            return Err(WireError("wrong wire type for a fixed32 field"));
        }
        self.take(4).map(drop)
    }
}

fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError("invalid UTF-8 in a string field"))
}

/// A scalar `AnyValue`, borrowed.
enum Scalar<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Other,
}

fn any_value(buf: &[u8]) -> Result<Scalar<'_>, WireError> {
    let mut r = Reader::new(buf);
    let mut out = Scalar::Other;
    while let Some((field, wt)) = r.key()? {
        out = match field {
            1 => Scalar::Str(utf8(r.expect_len(wt)?)?),
            2 => Scalar::Bool(r.expect_varint(wt)? != 0),
            3 => Scalar::Int(r.expect_varint(wt)? as i64),
            4 => Scalar::Double(f64::from_bits(r.expect_fixed64(wt)?)),
            // array, kvlist, bytes: not scalar text; skipped unread.
            5..=7 => {
                r.expect_len(wt)?;
                Scalar::Other
            }
            _ => {
                r.skip(wt)?;
                continue;
            }
        };
    }
    Ok(out)
}

/// `(key, value)` of a `KeyValue`.
fn key_value(buf: &[u8]) -> Result<(&str, Scalar<'_>), WireError> {
    let mut r = Reader::new(buf);
    let (mut key, mut value) = ("", Scalar::Other);
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => key = utf8(r.expect_len(wt)?)?,
            2 => value = any_value(r.expect_len(wt)?)?,
            _ => r.skip(wt)?,
        }
    }
    Ok((key, value))
}

/// Truthy attribute keys kept inline per span (conversion markers are rare);
/// more than this falls back to a rescan of the span.
const INLINE_TRUE: usize = 4;

/// One span as the wire has it.
struct WireSpan<'a> {
    buf: &'a [u8],
    kind: i32,
    start: u64,
    end: u64,
    status_error: bool,
    http_error: bool,
    truthy: [&'a str; INLINE_TRUE],
    truthy_len: usize,
    truthy_overflow: bool,
}

fn is_true(v: &Scalar<'_>) -> bool {
    match v {
        Scalar::Bool(b) => *b,
        Scalar::Str(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn http_status(v: &Scalar<'_>) -> Option<i64> {
    match v {
        Scalar::Int(i) => Some(*i),
        Scalar::Str(s) => s.parse().ok(),
        Scalar::Double(d) => Some(*d as i64),
        _ => None,
    }
}

impl<'a> WireSpan<'a> {
    fn parse(buf: &'a [u8]) -> Result<WireSpan<'a>, WireError> {
        let mut s = WireSpan {
            buf,
            kind: 0,
            start: 0,
            end: 0,
            status_error: false,
            http_error: false,
            truthy: [""; INLINE_TRUE],
            truthy_len: 0,
            truthy_overflow: false,
        };
        let mut r = Reader::new(buf);
        while let Some((field, wt)) = r.key()? {
            match field {
                // trace id, span id, parent span id: bytes, not read.
                1 | 2 | 4 => drop(r.expect_len(wt)?),
                // trace state, name: strings, checked like any decoder would.
                3 | 5 => drop(utf8(r.expect_len(wt)?)?),
                6 => s.kind = r.expect_varint(wt)? as i32,
                7 => s.start = r.expect_fixed64(wt)?,
                8 => s.end = r.expect_fixed64(wt)?,
                9 => {
                    let (key, value) = key_value(r.expect_len(wt)?)?;
                    if HTTP_STATUS_KEYS.contains(&key) {
                        s.http_error |= http_status(&value).is_some_and(|c| c >= 500);
                    } else if is_true(&value) {
                        if s.truthy_len < INLINE_TRUE {
                            s.truthy[s.truthy_len] = key;
                            s.truthy_len += 1;
                        } else {
                            s.truthy_overflow = true;
                        }
                    }
                }
                // dropped counts.
                10 | 12 | 14 => drop(r.expect_varint(wt)?),
                // events and links: framed, not read (nothing a contract uses).
                11 | 13 => drop(r.expect_len(wt)?),
                15 => s.status_error = status_is_error(r.expect_len(wt)?)?,
                16 => r.expect_fixed32(wt)?,
                _ => r.skip(wt)?,
            }
        }
        Ok(s)
    }
}

fn status_is_error(buf: &[u8]) -> Result<bool, WireError> {
    let mut r = Reader::new(buf);
    let mut code = 0;
    while let Some((field, wt)) = r.key()? {
        match field {
            2 => drop(utf8(r.expect_len(wt)?)?),
            3 => code = r.expect_varint(wt)? as i32,
            _ => r.skip(wt)?,
        }
    }
    Ok(code == 2)
}

impl SpanView for WireSpan<'_> {
    fn kind(&self) -> i32 {
        self.kind
    }
    fn times(&self) -> (u64, u64) {
        (self.start, self.end)
    }
    fn status_error(&self) -> bool {
        self.status_error
    }
    fn http_error(&self) -> bool {
        self.http_error
    }
    fn converted(&self, attribute: &str) -> bool {
        if self.truthy[..self.truthy_len].contains(&attribute) {
            return true;
        }
        if !self.truthy_overflow || HTTP_STATUS_KEYS.contains(&attribute) {
            return false;
        }
        // Rare: more truthy attributes than kept inline.
        let mut r = Reader::new(self.buf);
        while let Ok(Some((field, wt))) = r.key() {
            if (field, wt) == (9, LEN) {
                if let Ok((key, value)) = r.bytes().and_then(key_value) {
                    if key == attribute && is_true(&value) {
                        return true;
                    }
                }
            } else if r.skip(wt).is_err() {
                break;
            }
        }
        false
    }
}

fn scalar_text<'a>(v: Scalar<'a>) -> Option<Cow<'a, str>> {
    match v {
        Scalar::Str(s) => Some(Cow::Borrowed(s)),
        Scalar::Bool(b) => Some(Cow::Owned(b.to_string())),
        Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
        Scalar::Double(d) => Some(Cow::Owned(d.to_string())),
        Scalar::Other => None,
    }
}

/// Converts a protobuf `ExportTraceServiceRequest` body into samples, like
/// [`super::convert::convert_traces`] does for the decoded message.
pub fn convert_traces(
    body: &[u8],
    pipelines: &[&PipelineInput],
    now: UnixNanos,
) -> Result<Converted, WireError> {
    let mut out = Converted::new(pipelines);
    let mut scopes: Vec<&[u8]> = Vec::new();
    let mut attrs: Vec<(&str, Cow<'_, str>)> = Vec::new();
    let mut req = Reader::new(body);
    while let Some((field, wt)) = req.key()? {
        if field != 1 {
            req.skip(wt)?;
            continue;
        }
        let rs = req.expect_len(wt)?;
        // Resource and scope spans may come in any order: collect first.
        scopes.clear();
        attrs.clear();
        let mut r = Reader::new(rs);
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => {
                    let mut res = Reader::new(r.expect_len(wt)?);
                    while let Some((f, wt)) = res.key()? {
                        match f {
                            1 => {
                                let (k, v) = key_value(res.expect_len(wt)?)?;
                                if let Some(v) = scalar_text(v) {
                                    attrs.push((k, v));
                                }
                            }
                            2 => drop(res.expect_varint(wt)?),
                            3 => drop(res.expect_len(wt)?),
                            _ => res.skip(wt)?,
                        }
                    }
                }
                2 => scopes.push(r.expect_len(wt)?),
                3 => drop(utf8(r.expect_len(wt)?)?),
                _ => r.skip(wt)?,
            }
        }
        let targets = resource_targets(|k| lookup(&attrs, k), pipelines, &mut out);
        for scope in &scopes {
            let mut r = Reader::new(scope);
            while let Some((field, wt)) = r.key()? {
                match field {
                    1 => drop(r.expect_len(wt)?),
                    2 => {
                        let span = WireSpan::parse(r.expect_len(wt)?)?;
                        out.items += 1;
                        convert_span(&span, &targets, pipelines, now, &mut out);
                    }
                    3 => drop(utf8(r.expect_len(wt)?)?),
                    _ => r.skip(wt)?,
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
