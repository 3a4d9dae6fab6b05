//! OTLP/JSON decoding: OTLP/HTTP request bodies sent as `application/json` →
//! the same `opentelemetry-proto` prost types (`ExportTraceServiceRequest`,
//! `ExportMetricsServiceRequest`, `ExportLogsServiceRequest`) that the protobuf
//! path produces, so everything downstream of the receiver handles exactly one
//! representation regardless of the wire encoding.
//!
//! # Why not `opentelemetry-proto`'s own serde support
//!
//! The crate's `with-serde` feature is known to lose metric data and to reject
//! int64 values encoded as decimal strings, which the OTLP specification
//! requires (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>).
//! We therefore deserialize into private mirror structs that follow the
//! proto3 JSON mapping plus the OTLP deviations, and convert those into the
//! prost-generated types. The crate is used with `default-features = false`
//! and without `with-serde`.
//!
//! # Accepted encoding
//!
//! * Field names in lowerCamelCase or in the proto's snake_case; unknown fields
//!   are ignored; `null` for any field means "not set" (the default).
//! * `traceId` / `spanId` / `parentSpanId` (spans, links, log records,
//!   exemplars) are hex strings, case-insensitive, **not** base64; `""` is an
//!   empty id; any other length than 16 bytes (trace) / 8 bytes (span) is an
//!   error.
//! * 64-bit integers (timestamps, counts, `asInt`, `intValue`, bucket counts…)
//!   as decimal strings or JSON numbers; 32-bit integers likewise. Numbers with
//!   a fraction or exponent are accepted only when they denote an integer that
//!   a double represents exactly (≤ 2^53); anything else is rejected.
//! * Doubles as JSON numbers, numeric strings, or `"NaN"`, `"Infinity"`,
//!   `"-Infinity"`.
//! * Enums (span kind, status code, aggregation temporality, severity number)
//!   and flag fields as integers, or leniently as their proto value names
//!   (`"SPAN_KIND_SERVER"`, `"DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK"`,
//!   matched case-insensitively). Unknown integer enum values are kept (proto3
//!   enums are open); unknown names are an error.
//! * `bytesValue` is base64 (standard alphabet; URL-safe and unpadded input is
//!   accepted too, as the proto3 JSON mapping asks of parsers).
//! * A oneof (`AnyValue`, `Metric.data`, data point / exemplar values) with more
//!   than one member set is an error, as in the reference proto3 parsers; an
//!   `AnyValue` of `{}` is a value with no variant.
//!
//! Errors carry the JSON path of the offending field (as spelled in the input)
//! and serde_json's line/column, e.g.
//! `resourceSpans[0].scopeSpans[0].spans[2].traceId: invalid hex in trace id:
//! Invalid character 'z' at position 3 at line 12 column 58`.

use std::fmt;
use std::marker::PhantomData;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine as _, GeneralPurpose, GeneralPurposeConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{
    LogRecord, LogRecordFlags, ResourceLogs, ScopeLogs, SeverityNumber,
};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point, metric, number_data_point, summary_data_point,
    AggregationTemporality, DataPointFlags, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, SpanFlags, Status,
};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` body.
pub fn decode_traces(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonDecodeError> {
    let raw: RawTraceRequest = decode::<Obj<_>>(body)?.0;
    Ok(ExportTraceServiceRequest {
        resource_spans: list(raw.resource_spans),
    })
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest` body.
pub fn decode_metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonDecodeError> {
    let raw: RawMetricsRequest = decode::<Obj<_>>(body)?.0;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: list(raw.resource_metrics),
    })
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest` body.
pub fn decode_logs(body: &[u8]) -> Result<ExportLogsServiceRequest, JsonDecodeError> {
    let raw: RawLogsRequest = decode::<Obj<_>>(body)?.0;
    Ok(ExportLogsServiceRequest {
        resource_logs: list(raw.resource_logs),
    })
}

/// Why an OTLP/JSON body was rejected.
///
/// `Display` gives the JSON path of the offending field when known (as spelled
/// in the input, e.g. `resourceSpans[0].scopeSpans[0].spans[2].traceId`),
/// followed by the reason and serde_json's line/column.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JsonDecodeError {
    message: String,
    path: Option<String>,
    line: usize,
    column: usize,
}

impl JsonDecodeError {
    /// JSON path of the field that failed to decode, if the error is not at the
    /// document root.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// 1-based line of the error in the body (0 if unknown).
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column of the error in the body (0 if unknown).
    pub fn column(&self) -> usize {
        self.column
    }

    fn new(path: Option<String>, inner: &serde_json::Error) -> Self {
        let message = match &path {
            Some(path) => format!("{path}: {inner}"),
            None => inner.to_string(),
        };
        Self {
            message,
            path,
            line: inner.line(),
            column: inner.column(),
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, JsonDecodeError> {
    // RFC 8259 §8.1: parsers may ignore a leading byte order mark.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path();
        let path = if path.iter().next().is_some() {
            Some(path.to_string())
        } else {
            None
        };
        JsonDecodeError::new(path, err.inner())
    })?;
    de.end().map_err(|err| JsonDecodeError::new(None, &err))?;
    Ok(value)
}

// ---------------------------------------------------------------------------
// Messages must be JSON objects
// ---------------------------------------------------------------------------

/// A message: serde-derived structs also accept a JSON *array* (fields by
/// position), which is not proto3 JSON; `Obj` makes them accept objects only.
/// Every message-typed position (including the top level) is wrapped in it.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(ObjectOnly(deserializer)).map(Obj)
    }
}

/// Turns the derive's `deserialize_struct` request into `deserialize_map`.
struct ObjectOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }

    // Only `deserialize_struct` is ever requested by the derived impls.
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

// ---------------------------------------------------------------------------
// Scalar wrappers
// ---------------------------------------------------------------------------

/// A decoded JSON scalar wrapper; `Out` is what goes into the prost struct.
trait Scalar {
    type Out: Default;
    fn get(self) -> Self::Out;
}

/// Value of an optional scalar, default if absent or `null`.
fn val<S: Scalar>(v: Option<S>) -> S::Out {
    v.map(Scalar::get).unwrap_or_default()
}

/// Value of a proto3 `optional` scalar (`None` if absent or `null`).
fn opt<S: Scalar>(v: Option<S>) -> Option<S::Out> {
    v.map(Scalar::get)
}

/// Values of a repeated scalar field.
fn vals<S: Scalar>(v: Option<Vec<S>>) -> Vec<S::Out> {
    v.map(|v| v.into_iter().map(Scalar::get).collect())
        .unwrap_or_default()
}

/// Converts a repeated message field.
fn list<R, P: From<R>>(v: Option<Vec<Obj<R>>>) -> Vec<P> {
    v.map(|v| v.into_iter().map(|o| P::from(o.0)).collect())
        .unwrap_or_default()
}

/// Converts an optional (singular) message field.
fn msg<R, P: From<R>>(v: Option<Obj<R>>) -> Option<P> {
    v.map(|o| P::from(o.0))
}

/// Integer types a JSON integer may be decoded into.
trait IntTarget: Copy + Default + TryFrom<i128> {
    const PROTO_NAME: &'static str;
}

impl IntTarget for u64 {
    const PROTO_NAME: &'static str = "uint64";
}
impl IntTarget for i64 {
    const PROTO_NAME: &'static str = "int64";
}
impl IntTarget for u32 {
    const PROTO_NAME: &'static str = "uint32";
}
impl IntTarget for i32 {
    const PROTO_NAME: &'static str = "int32";
}

/// Largest integer magnitude up to which every integer is an exact `f64`.
const MAX_EXACT_F64_INT: f64 = 9_007_199_254_740_992.0; // 2^53

fn int_from_i128<T: IntTarget, E: de::Error>(v: i128) -> Result<T, E> {
    T::try_from(v).map_err(|_| {
        E::custom(format_args!(
            "integer {v} is out of range for {}",
            T::PROTO_NAME
        ))
    })
}

fn int_from_f64<T: IntTarget, E: de::Error>(v: f64) -> Result<T, E> {
    if !v.is_finite() || v.fract() != 0.0 {
        return Err(E::custom(format_args!("expected an integer, got {v:?}")));
    }
    // Integral, so exact in i128 unless it saturates (then it is out of range anyway).
    let value = T::try_from(v as i128).map_err(|_| {
        E::custom(format_args!(
            "integer {v:?} is out of range for {}",
            T::PROTO_NAME
        ))
    })?;
    // serde_json yields an f64 only for numbers written with a fraction or an
    // exponent, or beyond 64 bits; above 2^53 such a number may not be the one
    // the sender meant.
    if v.abs() > MAX_EXACT_F64_INT {
        return Err(E::custom(format_args!(
            "integer {v:?} written with a fraction or exponent is too large to be exact; \
             send it as a decimal string"
        )));
    }
    Ok(value)
}

fn int_from_str<T: IntTarget, E: de::Error>(s: &str) -> Result<T, E> {
    if let Ok(v) = s.parse::<i128>() {
        return int_from_i128(v);
    }
    // proto3 JSON parsers also accept "1e3" / "5.0" when integral.
    match parse_json_number(s) {
        Some(v) if v.is_finite() && v.fract() == 0.0 => int_from_f64(v),
        _ => Err(E::custom(format_args!(
            "invalid integer string {s:?}: expected a decimal integer"
        ))),
    }
}

/// Parses `s` if it is exactly a JSON number (no whitespace, no NaN/inf words).
fn parse_json_number(s: &str) -> Option<f64> {
    if s.is_empty() || s.trim() != s {
        return None;
    }
    serde_json::from_str::<f64>(s).ok()
}

/// An integer given as a JSON number or a decimal string.
struct Int<T>(T);

impl<T: IntTarget> Scalar for Int<T> {
    type Out = T;
    fn get(self) -> T {
        self.0
    }
}

impl<'de, T: IntTarget> Deserialize<'de> for Int<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: IntTarget> Visitor<'_> for V<T> {
            type Value = Int<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an {} as a JSON number or decimal string", T::PROTO_NAME)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                int_from_i128(i128::from(v)).map(Int)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                int_from_i128(i128::from(v)).map(Int)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                int_from_f64(v).map(Int)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                int_from_str(s).map(Int)
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// A double given as a JSON number, a numeric string, or one of the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"`.
struct F64(f64);

impl Scalar for F64 {
    type Out = f64;
    fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = F64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a double as a JSON number or one of \"NaN\", \"Infinity\", \"-Infinity\"",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<F64, E> {
                Ok(F64(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<F64, E> {
                match s {
                    "NaN" => Ok(F64(f64::NAN)),
                    "Infinity" => Ok(F64(f64::INFINITY)),
                    "-Infinity" => Ok(F64(f64::NEG_INFINITY)),
                    _ => parse_json_number(s).map(F64).ok_or_else(|| {
                        E::custom(format_args!(
                            "invalid double string {s:?}: expected a number, \"NaN\", \
                             \"Infinity\" or \"-Infinity\""
                        ))
                    }),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Proto enums whose value names are accepted in place of the integer.
trait NamedValues {
    const LABEL: &'static str;
    fn from_name(name: &str) -> Option<i32>;
}

macro_rules! named_values {
    ($($ty:ty => $label:literal),* $(,)?) => {$(
        impl NamedValues for $ty {
            const LABEL: &'static str = $label;
            fn from_name(name: &str) -> Option<i32> {
                <$ty>::from_str_name(name).map(|v| v as i32)
            }
        }
    )*};
}

named_values! {
    span::SpanKind => "SpanKind",
    status::StatusCode => "StatusCode",
    SpanFlags => "SpanFlags",
    AggregationTemporality => "AggregationTemporality",
    DataPointFlags => "DataPointFlags",
    SeverityNumber => "SeverityNumber",
    LogRecordFlags => "LogRecordFlags",
}

/// An enum or flags field: an integer (number or decimal string) or one of the
/// value names of the proto enum `E`, stored as `T`.
struct Named<E, T>(T, PhantomData<E>);

impl<E, T: IntTarget> Scalar for Named<E, T> {
    type Out = T;
    fn get(self) -> T {
        self.0
    }
}

impl<'de, E: NamedValues, T: IntTarget> Deserialize<'de> for Named<E, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<E, T>(PhantomData<(E, T)>);
        impl<E: NamedValues, T: IntTarget> Visitor<'_> for V<E, T> {
            type Value = Named<E, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} as an integer or value name", E::LABEL)
            }
            fn visit_u64<Er: de::Error>(self, v: u64) -> Result<Self::Value, Er> {
                int_from_i128(i128::from(v)).map(|v| Named(v, PhantomData))
            }
            fn visit_i64<Er: de::Error>(self, v: i64) -> Result<Self::Value, Er> {
                int_from_i128(i128::from(v)).map(|v| Named(v, PhantomData))
            }
            fn visit_f64<Er: de::Error>(self, v: f64) -> Result<Self::Value, Er> {
                int_from_f64(v).map(|v| Named(v, PhantomData))
            }
            fn visit_str<Er: de::Error>(self, s: &str) -> Result<Self::Value, Er> {
                let by_name = E::from_name(s).or_else(|| E::from_name(&s.to_ascii_uppercase()));
                if let Some(v) = by_name {
                    return int_from_i128(i128::from(v)).map(|v| Named(v, PhantomData));
                }
                if let Ok(v) = s.parse::<i128>() {
                    return int_from_i128(v).map(|v| Named(v, PhantomData));
                }
                Err(Er::custom(format_args!(
                    "unknown {} {s:?}: expected an integer or a value name",
                    E::LABEL
                )))
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// A trace id (`N` = 16) or span id (`N` = 8): hex, case-insensitive, `""` is empty.
struct Id<const N: usize>(Vec<u8>);

impl<const N: usize> Id<N> {
    const LABEL: &'static str = if N == 16 { "trace id" } else { "span id" };
}

impl<const N: usize> Scalar for Id<N> {
    type Out = Vec<u8>;
    fn get(self) -> Vec<u8> {
        self.0
    }
}

impl<'de, const N: usize> Deserialize<'de> for Id<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<const N: usize> Visitor<'_> for V<N> {
            type Value = Id<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a {} as a string of {} hex digits",
                    Id::<N>::LABEL,
                    2 * N
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id<N>, E> {
                if s.is_empty() {
                    return Ok(Id(Vec::new()));
                }
                if s.len() != 2 * N {
                    return Err(E::custom(format_args!(
                        "invalid {}: expected {} hex digits ({N} bytes), got {} characters \
                         (OTLP/JSON ids are hex, not base64)",
                        Id::<N>::LABEL,
                        2 * N,
                        s.chars().count()
                    )));
                }
                hex::decode(s).map(Id).map_err(|err| {
                    E::custom(format_args!("invalid hex in {}: {err}", Id::<N>::LABEL))
                })
            }
        }
        deserializer.deserialize_str(V::<N>)
    }
}

type TraceId = Id<16>;
type SpanId = Id<8>;

/// `AnyValue.bytesValue`: base64, standard or URL-safe alphabet, padding optional.
struct Base64Bytes(Vec<u8>);

const BASE64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, BASE64_CONFIG);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_CONFIG);

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Base64Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Base64Bytes, E> {
                let engine = if s.contains(['-', '_']) {
                    &BASE64_URL_SAFE
                } else {
                    &BASE64_STANDARD
                };
                engine
                    .decode(s)
                    .map(Base64Bytes)
                    .map_err(|err| E::custom(format_args!("invalid base64: {err}")))
            }
        }
        deserializer.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------
// Common messages
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Resource")]
struct RawResource {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
    #[serde(alias = "entity_refs")]
    entity_refs: Option<Vec<Obj<RawEntityRef>>>,
}

impl From<RawResource> for Resource {
    fn from(r: RawResource) -> Self {
        Resource {
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
            entity_refs: list(r.entity_refs),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for EntityRef")]
struct RawEntityRef {
    #[serde(alias = "schema_url")]
    schema_url: Option<String>,
    r#type: Option<String>,
    #[serde(alias = "id_keys")]
    id_keys: Option<Vec<String>>,
    #[serde(alias = "description_keys")]
    description_keys: Option<Vec<String>>,
}

impl From<RawEntityRef> for EntityRef {
    fn from(r: RawEntityRef) -> Self {
        EntityRef {
            schema_url: r.schema_url.unwrap_or_default(),
            r#type: r.r#type.unwrap_or_default(),
            id_keys: r.id_keys.unwrap_or_default(),
            description_keys: r.description_keys.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for InstrumentationScope")]
struct RawScope {
    name: Option<String>,
    version: Option<String>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
}

impl From<RawScope> for InstrumentationScope {
    fn from(r: RawScope) -> Self {
        InstrumentationScope {
            name: r.name.unwrap_or_default(),
            version: r.version.unwrap_or_default(),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for KeyValue")]
struct RawKeyValue {
    key: Option<String>,
    value: Option<Obj<JsonAnyValue>>,
    #[serde(alias = "key_strindex")]
    key_strindex: Option<Int<i32>>,
}

impl From<RawKeyValue> for KeyValue {
    fn from(r: RawKeyValue) -> Self {
        KeyValue {
            key: r.key.unwrap_or_default(),
            value: msg(r.value),
            key_strindex: val(r.key_strindex),
        }
    }
}

/// An `AnyValue`, validated (at most one variant) while deserializing so that
/// errors carry the JSON path.
#[derive(Deserialize)]
#[serde(try_from = "AnyValueFields")]
struct JsonAnyValue(AnyValue);

impl From<JsonAnyValue> for AnyValue {
    fn from(v: JsonAnyValue) -> Self {
        v.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for AnyValue")]
struct AnyValueFields {
    #[serde(alias = "string_value")]
    string_value: Option<String>,
    #[serde(alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(alias = "int_value")]
    int_value: Option<Int<i64>>,
    #[serde(alias = "double_value")]
    double_value: Option<F64>,
    #[serde(alias = "array_value")]
    array_value: Option<Obj<RawArrayValue>>,
    #[serde(alias = "kvlist_value")]
    kvlist_value: Option<Obj<RawKeyValueList>>,
    #[serde(alias = "bytes_value")]
    bytes_value: Option<Base64Bytes>,
    #[serde(alias = "string_value_strindex")]
    string_value_strindex: Option<Int<i32>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object for ArrayValue")]
struct RawArrayValue {
    values: Option<Vec<Obj<JsonAnyValue>>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object for KeyValueList")]
struct RawKeyValueList {
    values: Option<Vec<Obj<RawKeyValue>>>,
}

impl TryFrom<AnyValueFields> for JsonAnyValue {
    type Error = String;

    fn try_from(f: AnyValueFields) -> Result<Self, String> {
        use any_value::Value;
        let candidates = [
            ("stringValue", f.string_value.map(Value::StringValue)),
            ("boolValue", f.bool_value.map(Value::BoolValue)),
            ("intValue", f.int_value.map(|v| Value::IntValue(v.0))),
            (
                "doubleValue",
                f.double_value.map(|v| Value::DoubleValue(v.0)),
            ),
            (
                "arrayValue",
                f.array_value.map(|a| {
                    Value::ArrayValue(ArrayValue {
                        values: list(a.0.values),
                    })
                }),
            ),
            (
                "kvlistValue",
                f.kvlist_value.map(|kv| {
                    Value::KvlistValue(KeyValueList {
                        values: list(kv.0.values),
                    })
                }),
            ),
            ("bytesValue", f.bytes_value.map(|b| Value::BytesValue(b.0))),
            (
                "stringValueStrindex",
                f.string_value_strindex
                    .map(|v| Value::StringValueStrindex(v.0)),
            ),
        ];
        let value = single_oneof("AnyValue", candidates)?;
        Ok(JsonAnyValue(AnyValue { value }))
    }
}

/// Picks the one set member of a oneof; more than one set is an error.
fn single_oneof<V, const K: usize>(
    what: &str,
    candidates: [(&'static str, Option<V>); K],
) -> Result<Option<V>, String> {
    let mut chosen: Option<(&'static str, V)> = None;
    for (name, value) in candidates {
        if let Some(value) = value {
            if let Some((first, _)) = &chosen {
                return Err(format!(
                    "{what} has more than one value set ({first} and {name}); \
                     at most one is allowed"
                ));
            }
            chosen = Some((name, value));
        }
    }
    Ok(chosen.map(|(_, v)| v))
}

// ---------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExportTraceServiceRequest")]
struct RawTraceRequest {
    #[serde(alias = "resource_spans")]
    resource_spans: Option<Vec<Obj<RawResourceSpans>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ResourceSpans")]
struct RawResourceSpans {
    resource: Option<Obj<RawResource>>,
    #[serde(alias = "scope_spans")]
    scope_spans: Option<Vec<Obj<RawScopeSpans>>>,
    #[serde(alias = "schema_url")]
    schema_url: Option<String>,
}

impl From<RawResourceSpans> for ResourceSpans {
    fn from(r: RawResourceSpans) -> Self {
        ResourceSpans {
            resource: msg(r.resource),
            scope_spans: list(r.scope_spans),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ScopeSpans")]
struct RawScopeSpans {
    scope: Option<Obj<RawScope>>,
    spans: Option<Vec<Obj<RawSpan>>>,
    #[serde(alias = "schema_url")]
    schema_url: Option<String>,
}

impl From<RawScopeSpans> for ScopeSpans {
    fn from(r: RawScopeSpans) -> Self {
        ScopeSpans {
            scope: msg(r.scope),
            spans: list(r.spans),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Span")]
struct RawSpan {
    #[serde(alias = "trace_id")]
    trace_id: Option<TraceId>,
    #[serde(alias = "span_id")]
    span_id: Option<SpanId>,
    #[serde(alias = "trace_state")]
    trace_state: Option<String>,
    #[serde(alias = "parent_span_id")]
    parent_span_id: Option<SpanId>,
    flags: Option<Named<SpanFlags, u32>>,
    name: Option<String>,
    kind: Option<Named<span::SpanKind, i32>>,
    #[serde(alias = "start_time_unix_nano")]
    start_time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "end_time_unix_nano")]
    end_time_unix_nano: Option<Int<u64>>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
    events: Option<Vec<Obj<RawEvent>>>,
    #[serde(alias = "dropped_events_count")]
    dropped_events_count: Option<Int<u32>>,
    links: Option<Vec<Obj<RawLink>>>,
    #[serde(alias = "dropped_links_count")]
    dropped_links_count: Option<Int<u32>>,
    status: Option<Obj<RawStatus>>,
}

impl From<RawSpan> for Span {
    fn from(r: RawSpan) -> Self {
        Span {
            trace_id: val(r.trace_id),
            span_id: val(r.span_id),
            trace_state: r.trace_state.unwrap_or_default(),
            parent_span_id: val(r.parent_span_id),
            flags: val(r.flags),
            name: r.name.unwrap_or_default(),
            kind: val(r.kind),
            start_time_unix_nano: val(r.start_time_unix_nano),
            end_time_unix_nano: val(r.end_time_unix_nano),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
            events: list(r.events),
            dropped_events_count: val(r.dropped_events_count),
            links: list(r.links),
            dropped_links_count: val(r.dropped_links_count),
            status: msg(r.status),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Event")]
struct RawEvent {
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: Option<Int<u64>>,
    name: Option<String>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
}

impl From<RawEvent> for span::Event {
    fn from(r: RawEvent) -> Self {
        span::Event {
            time_unix_nano: val(r.time_unix_nano),
            name: r.name.unwrap_or_default(),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Link")]
struct RawLink {
    #[serde(alias = "trace_id")]
    trace_id: Option<TraceId>,
    #[serde(alias = "span_id")]
    span_id: Option<SpanId>,
    #[serde(alias = "trace_state")]
    trace_state: Option<String>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
    flags: Option<Named<SpanFlags, u32>>,
}

impl From<RawLink> for span::Link {
    fn from(r: RawLink) -> Self {
        span::Link {
            trace_id: val(r.trace_id),
            span_id: val(r.span_id),
            trace_state: r.trace_state.unwrap_or_default(),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
            flags: val(r.flags),
        }
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object for Status")]
struct RawStatus {
    message: Option<String>,
    code: Option<Named<status::StatusCode, i32>>,
}

impl From<RawStatus> for Status {
    fn from(r: RawStatus) -> Self {
        Status {
            message: r.message.unwrap_or_default(),
            code: val(r.code),
        }
    }
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExportMetricsServiceRequest")]
struct RawMetricsRequest {
    #[serde(alias = "resource_metrics")]
    resource_metrics: Option<Vec<Obj<RawResourceMetrics>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ResourceMetrics")]
struct RawResourceMetrics {
    resource: Option<Obj<RawResource>>,
    #[serde(alias = "scope_metrics")]
    scope_metrics: Option<Vec<Obj<RawScopeMetrics>>>,
    #[serde(alias = "schema_url")]
    schema_url: Option<String>,
}

impl From<RawResourceMetrics> for ResourceMetrics {
    fn from(r: RawResourceMetrics) -> Self {
        ResourceMetrics {
            resource: msg(r.resource),
            scope_metrics: list(r.scope_metrics),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ScopeMetrics")]
struct RawScopeMetrics {
    scope: Option<Obj<RawScope>>,
    metrics: Option<Vec<Obj<JsonMetric>>>,
    #[serde(alias = "schema_url")]
    schema_url: Option<String>,
}

impl From<RawScopeMetrics> for ScopeMetrics {
    fn from(r: RawScopeMetrics) -> Self {
        ScopeMetrics {
            scope: msg(r.scope),
            metrics: list(r.metrics),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

/// A `Metric`, validated (at most one data kind) while deserializing.
#[derive(Deserialize)]
#[serde(try_from = "MetricFields")]
struct JsonMetric(Metric);

impl From<JsonMetric> for Metric {
    fn from(m: JsonMetric) -> Self {
        m.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Metric")]
struct MetricFields {
    name: Option<String>,
    description: Option<String>,
    unit: Option<String>,
    metadata: Option<Vec<Obj<RawKeyValue>>>,
    gauge: Option<Obj<RawGauge>>,
    sum: Option<Obj<RawSum>>,
    histogram: Option<Obj<RawHistogram>>,
    #[serde(alias = "exponential_histogram")]
    exponential_histogram: Option<Obj<RawExponentialHistogram>>,
    summary: Option<Obj<RawSummary>>,
}

impl TryFrom<MetricFields> for JsonMetric {
    type Error = String;

    fn try_from(f: MetricFields) -> Result<Self, String> {
        use metric::Data;
        let candidates = [
            ("gauge", f.gauge.map(|g| Data::Gauge(g.0.into()))),
            ("sum", f.sum.map(|s| Data::Sum(s.0.into()))),
            (
                "histogram",
                f.histogram.map(|h| Data::Histogram(h.0.into())),
            ),
            (
                "exponentialHistogram",
                f.exponential_histogram
                    .map(|h| Data::ExponentialHistogram(h.0.into())),
            ),
            ("summary", f.summary.map(|s| Data::Summary(s.0.into()))),
        ];
        let data = single_oneof("Metric", candidates)?;
        Ok(JsonMetric(Metric {
            name: f.name.unwrap_or_default(),
            description: f.description.unwrap_or_default(),
            unit: f.unit.unwrap_or_default(),
            metadata: list(f.metadata),
            data,
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Gauge")]
struct RawGauge {
    #[serde(alias = "data_points")]
    data_points: Option<Vec<Obj<JsonNumberDataPoint>>>,
}

impl From<RawGauge> for Gauge {
    fn from(r: RawGauge) -> Self {
        Gauge {
            data_points: list(r.data_points),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Sum")]
struct RawSum {
    #[serde(alias = "data_points")]
    data_points: Option<Vec<Obj<JsonNumberDataPoint>>>,
    #[serde(alias = "aggregation_temporality")]
    aggregation_temporality: Option<Named<AggregationTemporality, i32>>,
    #[serde(alias = "is_monotonic")]
    is_monotonic: Option<bool>,
}

impl From<RawSum> for Sum {
    fn from(r: RawSum) -> Self {
        Sum {
            data_points: list(r.data_points),
            aggregation_temporality: val(r.aggregation_temporality),
            is_monotonic: r.is_monotonic.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Histogram")]
struct RawHistogram {
    #[serde(alias = "data_points")]
    data_points: Option<Vec<Obj<RawHistogramDataPoint>>>,
    #[serde(alias = "aggregation_temporality")]
    aggregation_temporality: Option<Named<AggregationTemporality, i32>>,
}

impl From<RawHistogram> for Histogram {
    fn from(r: RawHistogram) -> Self {
        Histogram {
            data_points: list(r.data_points),
            aggregation_temporality: val(r.aggregation_temporality),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExponentialHistogram")]
struct RawExponentialHistogram {
    #[serde(alias = "data_points")]
    data_points: Option<Vec<Obj<RawExponentialHistogramDataPoint>>>,
    #[serde(alias = "aggregation_temporality")]
    aggregation_temporality: Option<Named<AggregationTemporality, i32>>,
}

impl From<RawExponentialHistogram> for ExponentialHistogram {
    fn from(r: RawExponentialHistogram) -> Self {
        ExponentialHistogram {
            data_points: list(r.data_points),
            aggregation_temporality: val(r.aggregation_temporality),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Summary")]
struct RawSummary {
    #[serde(alias = "data_points")]
    data_points: Option<Vec<Obj<RawSummaryDataPoint>>>,
}

impl From<RawSummary> for Summary {
    fn from(r: RawSummary) -> Self {
        Summary {
            data_points: list(r.data_points),
        }
    }
}

/// A `NumberDataPoint`, validated (at most one of `asDouble`/`asInt`).
#[derive(Deserialize)]
#[serde(try_from = "NumberDataPointFields")]
struct JsonNumberDataPoint(NumberDataPoint);

impl From<JsonNumberDataPoint> for NumberDataPoint {
    fn from(p: JsonNumberDataPoint) -> Self {
        p.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for NumberDataPoint")]
struct NumberDataPointFields {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "start_time_unix_nano")]
    start_time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "as_double")]
    as_double: Option<F64>,
    #[serde(alias = "as_int")]
    as_int: Option<Int<i64>>,
    exemplars: Option<Vec<Obj<JsonExemplar>>>,
    flags: Option<Named<DataPointFlags, u32>>,
}

impl TryFrom<NumberDataPointFields> for JsonNumberDataPoint {
    type Error = String;

    fn try_from(f: NumberDataPointFields) -> Result<Self, String> {
        use number_data_point::Value;
        let value = single_oneof(
            "NumberDataPoint",
            [
                ("asDouble", f.as_double.map(|v| Value::AsDouble(v.0))),
                ("asInt", f.as_int.map(|v| Value::AsInt(v.0))),
            ],
        )?;
        Ok(JsonNumberDataPoint(NumberDataPoint {
            attributes: list(f.attributes),
            start_time_unix_nano: val(f.start_time_unix_nano),
            time_unix_nano: val(f.time_unix_nano),
            exemplars: list(f.exemplars),
            flags: val(f.flags),
            value,
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for HistogramDataPoint")]
struct RawHistogramDataPoint {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "start_time_unix_nano")]
    start_time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: Option<Int<u64>>,
    count: Option<Int<u64>>,
    sum: Option<F64>,
    #[serde(alias = "bucket_counts")]
    bucket_counts: Option<Vec<Int<u64>>>,
    #[serde(alias = "explicit_bounds")]
    explicit_bounds: Option<Vec<F64>>,
    exemplars: Option<Vec<Obj<JsonExemplar>>>,
    flags: Option<Named<DataPointFlags, u32>>,
    min: Option<F64>,
    max: Option<F64>,
}

impl From<RawHistogramDataPoint> for HistogramDataPoint {
    fn from(r: RawHistogramDataPoint) -> Self {
        HistogramDataPoint {
            attributes: list(r.attributes),
            start_time_unix_nano: val(r.start_time_unix_nano),
            time_unix_nano: val(r.time_unix_nano),
            count: val(r.count),
            sum: opt(r.sum),
            bucket_counts: vals(r.bucket_counts),
            explicit_bounds: vals(r.explicit_bounds),
            exemplars: list(r.exemplars),
            flags: val(r.flags),
            min: opt(r.min),
            max: opt(r.max),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExponentialHistogramDataPoint")]
struct RawExponentialHistogramDataPoint {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "start_time_unix_nano")]
    start_time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: Option<Int<u64>>,
    count: Option<Int<u64>>,
    sum: Option<F64>,
    scale: Option<Int<i32>>,
    #[serde(alias = "zero_count")]
    zero_count: Option<Int<u64>>,
    positive: Option<Obj<RawBuckets>>,
    negative: Option<Obj<RawBuckets>>,
    flags: Option<Named<DataPointFlags, u32>>,
    exemplars: Option<Vec<Obj<JsonExemplar>>>,
    min: Option<F64>,
    max: Option<F64>,
    #[serde(alias = "zero_threshold")]
    zero_threshold: Option<F64>,
}

impl From<RawExponentialHistogramDataPoint> for ExponentialHistogramDataPoint {
    fn from(r: RawExponentialHistogramDataPoint) -> Self {
        ExponentialHistogramDataPoint {
            attributes: list(r.attributes),
            start_time_unix_nano: val(r.start_time_unix_nano),
            time_unix_nano: val(r.time_unix_nano),
            count: val(r.count),
            sum: opt(r.sum),
            scale: val(r.scale),
            zero_count: val(r.zero_count),
            positive: msg(r.positive),
            negative: msg(r.negative),
            flags: val(r.flags),
            exemplars: list(r.exemplars),
            min: opt(r.min),
            max: opt(r.max),
            zero_threshold: val(r.zero_threshold),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Buckets")]
struct RawBuckets {
    offset: Option<Int<i32>>,
    #[serde(alias = "bucket_counts")]
    bucket_counts: Option<Vec<Int<u64>>>,
}

impl From<RawBuckets> for exponential_histogram_data_point::Buckets {
    fn from(r: RawBuckets) -> Self {
        exponential_histogram_data_point::Buckets {
            offset: val(r.offset),
            bucket_counts: vals(r.bucket_counts),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for SummaryDataPoint")]
struct RawSummaryDataPoint {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "start_time_unix_nano")]
    start_time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: Option<Int<u64>>,
    count: Option<Int<u64>>,
    sum: Option<F64>,
    #[serde(alias = "quantile_values")]
    quantile_values: Option<Vec<Obj<RawValueAtQuantile>>>,
    flags: Option<Named<DataPointFlags, u32>>,
}

impl From<RawSummaryDataPoint> for SummaryDataPoint {
    fn from(r: RawSummaryDataPoint) -> Self {
        SummaryDataPoint {
            attributes: list(r.attributes),
            start_time_unix_nano: val(r.start_time_unix_nano),
            time_unix_nano: val(r.time_unix_nano),
            count: val(r.count),
            sum: val(r.sum),
            quantile_values: list(r.quantile_values),
            flags: val(r.flags),
        }
    }
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object for ValueAtQuantile")]
struct RawValueAtQuantile {
    quantile: Option<F64>,
    value: Option<F64>,
}

impl From<RawValueAtQuantile> for summary_data_point::ValueAtQuantile {
    fn from(r: RawValueAtQuantile) -> Self {
        summary_data_point::ValueAtQuantile {
            quantile: val(r.quantile),
            value: val(r.value),
        }
    }
}

/// An `Exemplar`, validated (at most one of `asDouble`/`asInt`).
#[derive(Deserialize)]
#[serde(try_from = "ExemplarFields")]
struct JsonExemplar(Exemplar);

impl From<JsonExemplar> for Exemplar {
    fn from(e: JsonExemplar) -> Self {
        e.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Exemplar")]
struct ExemplarFields {
    #[serde(alias = "filtered_attributes")]
    filtered_attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "as_double")]
    as_double: Option<F64>,
    #[serde(alias = "as_int")]
    as_int: Option<Int<i64>>,
    #[serde(alias = "span_id")]
    span_id: Option<SpanId>,
    #[serde(alias = "trace_id")]
    trace_id: Option<TraceId>,
}

impl TryFrom<ExemplarFields> for JsonExemplar {
    type Error = String;

    fn try_from(f: ExemplarFields) -> Result<Self, String> {
        use exemplar::Value;
        let value = single_oneof(
            "Exemplar",
            [
                ("asDouble", f.as_double.map(|v| Value::AsDouble(v.0))),
                ("asInt", f.as_int.map(|v| Value::AsInt(v.0))),
            ],
        )?;
        Ok(JsonExemplar(Exemplar {
            filtered_attributes: list(f.filtered_attributes),
            time_unix_nano: val(f.time_unix_nano),
            span_id: val(f.span_id),
            trace_id: val(f.trace_id),
            value,
        }))
    }
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ExportLogsServiceRequest")]
struct RawLogsRequest {
    #[serde(alias = "resource_logs")]
    resource_logs: Option<Vec<Obj<RawResourceLogs>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ResourceLogs")]
struct RawResourceLogs {
    resource: Option<Obj<RawResource>>,
    #[serde(alias = "scope_logs")]
    scope_logs: Option<Vec<Obj<RawScopeLogs>>>,
    #[serde(alias = "schema_url")]
    schema_url: Option<String>,
}

impl From<RawResourceLogs> for ResourceLogs {
    fn from(r: RawResourceLogs) -> Self {
        ResourceLogs {
            resource: msg(r.resource),
            scope_logs: list(r.scope_logs),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for ScopeLogs")]
struct RawScopeLogs {
    scope: Option<Obj<RawScope>>,
    #[serde(alias = "log_records")]
    log_records: Option<Vec<Obj<RawLogRecord>>>,
    #[serde(alias = "schema_url")]
    schema_url: Option<String>,
}

impl From<RawScopeLogs> for ScopeLogs {
    fn from(r: RawScopeLogs) -> Self {
        ScopeLogs {
            scope: msg(r.scope),
            log_records: list(r.log_records),
            schema_url: r.schema_url.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for LogRecord")]
struct RawLogRecord {
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "observed_time_unix_nano")]
    observed_time_unix_nano: Option<Int<u64>>,
    #[serde(alias = "severity_number")]
    severity_number: Option<Named<SeverityNumber, i32>>,
    #[serde(alias = "severity_text")]
    severity_text: Option<String>,
    body: Option<Obj<JsonAnyValue>>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    #[serde(alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
    flags: Option<Named<LogRecordFlags, u32>>,
    #[serde(alias = "trace_id")]
    trace_id: Option<TraceId>,
    #[serde(alias = "span_id")]
    span_id: Option<SpanId>,
    #[serde(alias = "event_name")]
    event_name: Option<String>,
}

impl From<RawLogRecord> for LogRecord {
    fn from(r: RawLogRecord) -> Self {
        LogRecord {
            time_unix_nano: val(r.time_unix_nano),
            observed_time_unix_nano: val(r.observed_time_unix_nano),
            severity_number: val(r.severity_number),
            severity_text: r.severity_text.unwrap_or_default(),
            body: msg(r.body),
            attributes: list(r.attributes),
            dropped_attributes_count: val(r.dropped_attributes_count),
            flags: val(r.flags),
            trace_id: val(r.trace_id),
            span_id: val(r.span_id),
            event_name: r.event_name.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
