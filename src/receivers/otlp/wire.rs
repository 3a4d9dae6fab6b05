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
//! checked. A test compares it with the prost path on generated requests,
//! and the `wire_traces` fuzz target on arbitrary bytes.
//!
//! It follows prost's reading rules wherever they can change a sample, so
//! that the same bytes never mean two things depending on the decoder:
//! - a singular scalar or string field given twice: the last one wins;
//! - a singular message field given twice (a span's `status`, a
//!   `KeyValue`'s `value`): the occurrences merge, field by field, as if
//!   their bytes were concatenated; a oneof member replaces the member set
//!   before it (`AnyValue`);
//! - unknown fields of every wire type are skipped, groups (wire types 3
//!   and 4) included, with prost's nesting limit (100 levels in all, counted
//!   from the request, as prost's `DecodeContext` does), so a request is
//!   never refused by one decoder and accepted by the other for them;
//! - a varint's tenth byte may only carry the 64th bit.
//!
//! Where it differs, it is more lenient, and only inside fields it does not
//! read: their strings are not UTF-8 checked and their nested messages are
//! framed, not decoded (span names, trace state, events, links, the status
//! message, the scope, resource entity refs, array and kvlist attribute
//! values, and span attributes no contract looks at).

use std::borrow::Cow;

use super::convert::{convert_span, targets, Converted, Origin, SpanView, HTTP_STATUS_KEYS};
use crate::config::Source;
use crate::model::UnixNanos;
use crate::receivers::PipelineInput;

/// Malformed protobuf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct WireError(pub(super) &'static str);

pub(super) const VARINT: u8 = 0;
pub(super) const FIXED64: u8 = 1;
pub(super) const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
pub(super) const FIXED32: u8 = 5;

/// prost's nesting limit (`prost::RECURSION_LIMIT`): how many levels of
/// messages and groups a request may nest, counted from the request.
const RECURSION_LIMIT: u32 = 100;

/// A cursor over one message's bytes.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    /// Levels of nesting left below this message (prost's
    /// `DecodeContext::recurse_count`): skipping a field needs one.
    budget: u32,
}

impl<'a> Reader<'a> {
    /// The reader of a whole request.
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            budget: RECURSION_LIMIT,
        }
    }

    /// The reader of a message nested in this one.
    pub(super) fn nested(&self, buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            budget: self.budget.saturating_sub(1),
        }
    }

    /// True when every byte was read.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not read yet.
    pub(super) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Passes over `n` bytes of [`Reader::rest`] read by the caller.
    pub(super) fn advance(&mut self, n: usize) {
        self.buf = self.buf.get(n..).unwrap_or_default();
    }

    #[inline(always)]
    pub(super) fn varint(&mut self) -> Result<u64, WireError> {
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
                // The tenth byte holds bit 63 only: anything more would
                // overflow, and prost refuses it.
                if i == 9 && b >= 0x02 {
                    return Err(WireError("varint overflows 64 bits"));
                }
                return Ok(value);
            }
        }
        Err(WireError("varint longer than 10 bytes"))
    }

    /// The next field number and wire type, `None` at the end.
    #[inline(always)]
    pub(super) fn key(&mut self) -> Result<Option<(u32, u8)>, WireError> {
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

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError("length beyond the end of the message"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| WireError("length too large"))?)
    }

    pub(super) fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips field `field` of wire type `wt`, as prost's `skip_field`
    /// does: a group (wire type 3) up to its matching end (wire type 4),
    /// each level of nesting taking one level of the budget.
    pub(super) fn skip(&mut self, field: u32, wt: u8) -> Result<(), WireError> {
        if self.budget == 0 {
            return Err(WireError("recursion limit reached"));
        }
        match wt {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            START_GROUP => self.skip_group(field),
            END_GROUP => Err(WireError("unexpected end group tag")),
            _ => Err(WireError("invalid wire type")),
        }
    }

    /// Skips the rest of group `field`, its end tag included. Recursion is
    /// bounded by the budget (at most [`RECURSION_LIMIT`] levels).
    fn skip_group(&mut self, field: u32) -> Result<(), WireError> {
        let mut inner = self.nested(self.buf);
        loop {
            let Some((f, wt)) = inner.key()? else {
                return Err(WireError("group without its end tag"));
            };
            if wt == END_GROUP {
                if f != field {
                    return Err(WireError("unexpected end group tag"));
                }
                break;
            }
            inner.skip(f, wt)?;
        }
        self.buf = inner.buf;
        Ok(())
    }

    /// A length-delimited field; anything else under this number is malformed.
    pub(super) fn expect_len(&mut self, wt: u8) -> Result<&'a [u8], WireError> {
        if wt != LEN {
            return Err(WireError("wrong wire type for a message or string field"));
        }
        self.bytes()
    }

    /// An embedded message field, as a reader one level deeper.
    pub(super) fn expect_message(&mut self, wt: u8) -> Result<Reader<'a>, WireError> {
        let buf = self.expect_len(wt)?;
        Ok(self.nested(buf))
    }

    pub(super) fn expect_varint(&mut self, wt: u8) -> Result<u64, WireError> {
        if wt != VARINT {
            return Err(WireError("wrong wire type for an integer field"));
        }
        self.varint()
    }

    pub(super) fn expect_fixed64(&mut self, wt: u8) -> Result<u64, WireError> {
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

pub(super) fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError("invalid UTF-8 in a string field"))
}

/// A scalar `AnyValue`, borrowed.
pub(super) enum Scalar<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Other,
}

/// Reads an `AnyValue` into `out`, which holds what earlier occurrences of
/// the same value field set: its members form a oneof, so each one read
/// replaces the one before, and a second `AnyValue` merges into the first.
fn any_value_into<'a>(mut r: Reader<'a>, out: &mut Scalar<'a>) -> Result<(), WireError> {
    while let Some((field, wt)) = r.key()? {
        *out = match field {
            1 => Scalar::Str(utf8(r.expect_len(wt)?)?),
            2 => Scalar::Bool(r.expect_varint(wt)? != 0),
            3 => Scalar::Int(r.expect_varint(wt)? as i64),
            4 => Scalar::Double(f64::from_bits(r.expect_fixed64(wt)?)),
            // array, kvlist, bytes: not scalar text; skipped unread.
            5..=7 => {
                r.expect_len(wt)?;
                Scalar::Other
            }
            // string_value_strindex (profiles only): no text here, but it
            // is a member of the oneof all the same.
            8 => {
                r.expect_varint(wt)?;
                Scalar::Other
            }
            _ => {
                r.skip(field, wt)?;
                continue;
            }
        };
    }
    Ok(())
}

/// `(key, value)` of a `KeyValue`, both read (resource attributes).
pub(super) fn key_value<'a>(mut r: Reader<'a>) -> Result<(&'a str, Scalar<'a>), WireError> {
    let (mut key, mut value) = ("", Scalar::Other);
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => key = utf8(r.expect_len(wt)?)?,
            2 => any_value_into(r.expect_message(wt)?, &mut value)?,
            3 => drop(r.expect_varint(wt)?),
            _ => r.skip(field, wt)?,
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

/// The key of a `KeyValue`, not decoded, after checking the framing of
/// all its fields; its value is read only when the key matters
/// ([`kv_value`]).
pub(super) fn kv_key<'a>(mut r: Reader<'a>) -> Result<&'a [u8], WireError> {
    let mut key: &[u8] = &[];
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => key = r.expect_len(wt)?,
            2 => drop(r.expect_len(wt)?),
            3 => drop(r.expect_varint(wt)?),
            _ => r.skip(field, wt)?,
        }
    }
    Ok(key)
}

/// The value of a `KeyValue`, every occurrence of its value field merged.
pub(super) fn kv_value<'a>(mut r: Reader<'a>) -> Result<Scalar<'a>, WireError> {
    let mut value = Scalar::Other;
    while let Some((field, wt)) = r.key()? {
        match field {
            2 => any_value_into(r.expect_message(wt)?, &mut value)?,
            _ => r.skip(field, wt)?,
        }
    }
    Ok(value)
}

/// One span as the wire has it.
struct WireSpan<'a> {
    /// The span's fields, for a second look ([`View::converted`]).
    fields: Reader<'a>,
    kind: i32,
    start: u64,
    end: u64,
    /// The status code, every occurrence of `status` merged.
    status_code: i32,
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

pub(super) fn http_status(v: &Scalar<'_>) -> Option<i64> {
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
    fn parse(fields: Reader<'a>, interest: &Interest<'_>) -> Result<WireSpan<'a>, WireError> {
        let mut s = WireSpan {
            fields,
            kind: 0,
            start: 0,
            end: 0,
            status_code: 0,
            http_error: false,
            converted: 0,
        };
        let mut r = fields;
        while let Some((field, wt)) = r.key()? {
            match field {
                // ids, trace state, name: framed, not read.
                1..=5 => drop(r.expect_len(wt)?),
                6 => s.kind = r.expect_varint(wt)? as i32,
                7 => s.start = r.expect_fixed64(wt)?,
                8 => s.end = r.expect_fixed64(wt)?,
                9 => {
                    let kv = r.expect_message(wt)?;
                    let key = kv_key(kv)?;
                    let status = HTTP_STATUS_KEYS.iter().any(|k| k.as_bytes() == key);
                    let conversion = interest.conversion.iter().position(|k| k.as_bytes() == key);
                    if status || conversion.is_some() {
                        let value = kv_value(kv)?;
                        s.http_error |= status && http_status(&value).is_some_and(|c| c >= 500);
                        if let Some(i) = conversion.filter(|_| is_true(&value)) {
                            s.converted |= 1 << i;
                        }
                    }
                }
                // dropped counts.
                10 | 12 | 14 => drop(r.expect_varint(wt)?),
                // events and links: framed, not read (nothing a contract uses).
                11 | 13 => drop(r.expect_len(wt)?),
                15 => status_code_into(r.expect_message(wt)?, &mut s.status_code)?,
                16 => r.expect_fixed32(wt)?,
                _ => r.skip(field, wt)?,
            }
        }
        Ok(s)
    }
}

/// Reads a `Status` into `code`, which holds the code of earlier
/// occurrences of the field (they merge: a later status without a code
/// keeps the earlier code).
fn status_code_into(mut r: Reader<'_>, code: &mut i32) -> Result<(), WireError> {
    while let Some((field, wt)) = r.key()? {
        match field {
            2 => drop(r.expect_len(wt)?),
            3 => *code = r.expect_varint(wt)? as i32,
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
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
        self.span.status_code == 2
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
        let mut r = self.span.fields;
        while let Ok(Some((field, wt))) = r.key() {
            if (field, wt) == (9, LEN) {
                let Ok(kv) = r.expect_message(wt) else {
                    break;
                };
                if kv_key(kv).is_ok_and(|key| key == attribute.as_bytes())
                    && kv_value(kv).is_ok_and(|v| is_true(&v))
                {
                    return true;
                }
            } else if r.skip(field, wt).is_err() {
                break;
            }
        }
        false
    }
}

pub(super) fn scalar_text<'a>(v: Scalar<'a>) -> Option<Cow<'a, str>> {
    match v {
        Scalar::Str(s) => Some(Cow::Borrowed(s)),
        Scalar::Bool(b) => Some(Cow::Owned(b.to_string())),
        Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
        Scalar::Double(d) => Some(Cow::Owned(d.to_string())),
        Scalar::Other => None,
    }
}

/// Reads a `ResourceSpans` or `ResourceMetrics` (their fields are the
/// same): the resource's scalar attributes as text into `attrs`, every
/// attribute's bytes to `raw`, and the scope messages into `scopes` (both
/// cleared first). Resource and scopes may come in any order, so the
/// scopes are collected; a resource given twice merges (its attributes add
/// up). Returns how many attributes the resource had, `None` without a
/// resource.
pub(super) fn resource_and_scopes<'a>(
    mut r: Reader<'a>,
    attrs: &mut Vec<(&'a str, Cow<'a, str>)>,
    scopes: &mut Vec<Reader<'a>>,
    mut raw: impl FnMut(&'a [u8]),
) -> Result<Option<u64>, WireError> {
    scopes.clear();
    attrs.clear();
    let mut resource = None;
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => {
                let mut res = r.expect_message(wt)?;
                let n = resource.get_or_insert(0);
                while let Some((f, wt)) = res.key()? {
                    match f {
                        1 => {
                            let kv = res.expect_len(wt)?;
                            raw(kv);
                            *n += 1;
                            let (k, v) = key_value(res.nested(kv))?;
                            if let Some(v) = scalar_text(v) {
                                attrs.push((k, v));
                            }
                        }
                        2 => drop(res.expect_varint(wt)?),
                        3 => drop(res.expect_len(wt)?),
                        _ => res.skip(f, wt)?,
                    }
                }
            }
            2 => scopes.push(r.expect_message(wt)?),
            3 => drop(utf8(r.expect_len(wt)?)?),
            _ => r.skip(field, wt)?,
        }
    }
    Ok(resource)
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
    let mut scopes: Vec<Reader<'_>> = Vec::new();
    let mut attrs: Vec<(&str, Cow<'_, str>)> = Vec::new();
    let mut req = Reader::new(body);
    while let Some((field, wt)) = req.key()? {
        if field != 1 {
            req.skip(field, wt)?;
            continue;
        }
        let r = req.expect_message(wt)?;
        resource_and_scopes(r, &mut attrs, &mut scopes, |_| {})?;
        let targets = targets(&attrs, pipelines, Source::Spans, &mut out.missing);
        let origin = Origin::spans(&attrs);
        for scope in &scopes {
            let mut r = *scope;
            while let Some((field, wt)) = r.key()? {
                match field {
                    1 => drop(r.expect_len(wt)?),
                    2 => {
                        let span = WireSpan::parse(r.expect_message(wt)?, &interest)?;
                        out.items += 1;
                        let view = View {
                            span: &span,
                            interest: &interest,
                        };
                        convert_span(&view, &targets, pipelines, now, &origin, &mut out);
                    }
                    3 => drop(utf8(r.expect_len(wt)?)?),
                    _ => r.skip(field, wt)?,
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
