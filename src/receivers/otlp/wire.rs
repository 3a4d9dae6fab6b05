//! The protobuf hot path: reads an `ExportTraceServiceRequest` straight from
//! the wire, borrowing from the request body, and converts it to samples
//! without building the prost message tree.
//!
//! A full prost decode allocates every span, id, name and attribute only for
//! conversion to look at four fields of each span; this reader visits the
//! same bytes once and keeps what a contract needs: resource attributes (as
//! text), span kind, start/end time, status code, the HTTP status attributes
//! and the contracts' conversion attributes. Everything else is skipped by
//! its wire type. It checks the framing of everything (lengths, varints,
//! wire types) and the UTF-8 of the strings it uses, so malformed input is
//! refused as prost would refuse it; strings it does not use are not UTF-8
//! checked. A test compares it with the prost path on generated requests.

use std::borrow::Cow;

use super::convert::{convert_span, targets, Converted, Origin, SpanView, HTTP_STATUS_KEYS};
use crate::config::Source;
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

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags and short lengths are one byte: the common case inline.
        if let Some((&b, rest)) = self.buf.split_first() {
            if b < 0x80 {
                self.buf = rest;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
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
    #[inline(always)]
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

/// The span attributes conversion looks at: the HTTP status keys and the
/// conversion attribute of every contract (at most 64 distinct ones count).
/// An attribute with any other key is skipped without reading its value.
struct Interest<'p> {
    conversion: Vec<&'p str>,
}

impl<'p> Interest<'p> {
    fn of(pipelines: &[&'p PipelineInput]) -> Interest<'p> {
        let mut conversion: Vec<&str> = Vec::new();
        for c in pipelines.iter().flat_map(|p| &p.contracts) {
            let a = c.conversion_attribute.as_str();
            if !conversion.contains(&a) && conversion.len() < 64 {
                conversion.push(a);
            }
        }
        Interest { conversion }
    }
}

/// `(key, value)` bytes of a `KeyValue`, neither decoded.
fn key_value_raw(buf: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let mut r = Reader::new(buf);
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => key = r.expect_len(wt)?,
            2 => value = r.expect_len(wt)?,
            _ => r.skip(wt)?,
        }
    }
    Ok((key, value))
}

/// One span as the wire has it.
struct WireSpan<'a> {
    buf: &'a [u8],
    kind: i32,
    start: u64,
    end: u64,
    status_error: bool,
    http_error: bool,
    /// Bit i: the i-th conversion attribute of [`Interest`] is true.
    converted: u64,
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
    /// Reads a span. Strings it does not use (name, trace state, other
    /// attributes) are framed but not UTF-8 checked: like unknown fields,
    /// they cannot change a verdict, and checking them was a tenth of the
    /// ingest cost.
    fn parse(buf: &'a [u8], interest: &Interest<'_>) -> Result<WireSpan<'a>, WireError> {
        let mut s = WireSpan {
            buf,
            kind: 0,
            start: 0,
            end: 0,
            status_error: false,
            http_error: false,
            converted: 0,
        };
        let mut r = Reader::new(buf);
        while let Some((field, wt)) = r.key()? {
            match field {
                // ids, trace state, name: framed, not read.
                1..=5 => drop(r.expect_len(wt)?),
                6 => s.kind = r.expect_varint(wt)? as i32,
                7 => s.start = r.expect_fixed64(wt)?,
                8 => s.end = r.expect_fixed64(wt)?,
                9 => {
                    let (key, value) = key_value_raw(r.expect_len(wt)?)?;
                    if HTTP_STATUS_KEYS.iter().any(|k| k.as_bytes() == key) {
                        s.http_error |= http_status(&any_value(value)?).is_some_and(|c| c >= 500);
                    }
                    if let Some(i) = interest.conversion.iter().position(|k| k.as_bytes() == key) {
                        if is_true(&any_value(value)?) {
                            s.converted |= 1 << i;
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
            2 => drop(r.expect_len(wt)?),
            3 => code = r.expect_varint(wt)? as i32,
            _ => r.skip(wt)?,
        }
    }
    Ok(code == 2)
}

/// A span with the request's [`Interest`], as conversion sees it.
struct View<'s, 'a, 'p> {
    span: &'s WireSpan<'a>,
    interest: &'s Interest<'p>,
}

impl SpanView for View<'_, '_, '_> {
    fn kind(&self) -> i32 {
        self.span.kind
    }
    fn times(&self) -> (u64, u64) {
        (self.span.start, self.span.end)
    }
    fn status_error(&self) -> bool {
        self.span.status_error
    }
    fn http_error(&self) -> bool {
        self.span.http_error
    }
    fn converted(&self, attribute: &str) -> bool {
        if let Some(i) = self
            .interest
            .conversion
            .iter()
            .position(|k| *k == attribute)
        {
            return self.span.converted & (1 << i) != 0;
        }
        // Not one of the attributes read in the pass (beyond 64): rescan.
        let mut r = Reader::new(self.span.buf);
        while let Ok(Some((field, wt))) = r.key() {
            if (field, wt) == (9, LEN) {
                if let Ok((key, value)) = r.bytes().and_then(key_value_raw) {
                    if key == attribute.as_bytes() && any_value(value).is_ok_and(|v| is_true(&v)) {
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
    let interest = Interest::of(pipelines);
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
        let targets = targets(&attrs, pipelines, Source::Spans, &mut out.missing);
        let origin = Origin::spans(&attrs);
        for scope in &scopes {
            let mut r = Reader::new(scope);
            while let Some((field, wt)) = r.key()? {
                match field {
                    1 => drop(r.expect_len(wt)?),
                    2 => {
                        let span = WireSpan::parse(r.expect_len(wt)?, &interest)?;
                        out.items += 1;
                        let view = View {
                            span: &span,
                            interest: &interest,
                        };
                        convert_span(&view, &targets, pipelines, now, &origin, &mut out);
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
