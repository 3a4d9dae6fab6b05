//! Scalars as OTLP/JSON writes them: 64-bit integers as strings or numbers, doubles with their special names, enums by number or name, hex ids, base64 bytes.

use super::*;

/// A decoded JSON scalar wrapper; `Out` is what goes into the prost struct.
pub(super) trait Scalar {
    type Out: Default;
    fn get(self) -> Self::Out;
}

/// Value of an optional scalar, default if absent or `null`.
pub(super) fn val<S: Scalar>(v: Option<S>) -> S::Out {
    v.map(Scalar::get).unwrap_or_default()
}

/// Value of a proto3 `optional` scalar (`None` if absent or `null`).
pub(super) fn opt<S: Scalar>(v: Option<S>) -> Option<S::Out> {
    v.map(Scalar::get)
}

/// Values of a repeated scalar field.
pub(super) fn vals<S: Scalar>(v: Option<Vec<S>>) -> Vec<S::Out> {
    v.map(|v| v.into_iter().map(Scalar::get).collect())
        .unwrap_or_default()
}

/// Converts a repeated message field.
pub(super) fn list<R, P: From<R>>(v: Option<Vec<Obj<R>>>) -> Vec<P> {
    v.map(|v| v.into_iter().map(|o| P::from(o.0)).collect())
        .unwrap_or_default()
}

/// Converts an optional (singular) message field.
pub(super) fn msg<R, P: From<R>>(v: Option<Obj<R>>) -> Option<P> {
    v.map(|o| P::from(o.0))
}

/// Integer types a JSON integer may be decoded into.
pub(super) trait IntTarget: Copy + Default + TryFrom<i128> {
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
pub(super) const MAX_EXACT_F64_INT: f64 = 9_007_199_254_740_992.0; // 2^53

pub(super) fn int_from_i128<T: IntTarget, E: de::Error>(v: i128) -> Result<T, E> {
    T::try_from(v).map_err(|_| {
        E::custom(format_args!(
            "integer {v} is out of range for {}",
            T::PROTO_NAME
        ))
    })
}

pub(super) fn int_from_f64<T: IntTarget, E: de::Error>(v: f64) -> Result<T, E> {
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

pub(super) fn int_from_str<T: IntTarget, E: de::Error>(s: &str) -> Result<T, E> {
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
pub(super) fn parse_json_number(s: &str) -> Option<f64> {
    if s.is_empty() || s.trim() != s {
        return None;
    }
    serde_json::from_str::<f64>(s).ok()
}

/// An integer given as a JSON number or a decimal string.
pub(super) struct Int<T>(pub(super) T);

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
pub(super) struct F64(pub(super) f64);

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
pub(super) trait NamedValues {
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
pub(super) struct Named<E, T>(pub(super) T, PhantomData<E>);

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
pub(super) struct Id<const N: usize>(pub(super) Vec<u8>);

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

pub(super) type TraceId = Id<16>;
pub(super) type SpanId = Id<8>;

/// `AnyValue.bytesValue`: base64, standard or URL-safe alphabet, padding optional.
pub(super) struct Base64Bytes(pub(super) Vec<u8>);

pub(super) const BASE64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
pub(super) const BASE64_STANDARD: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, BASE64_CONFIG);
pub(super) const BASE64_URL_SAFE: GeneralPurpose =
    GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_CONFIG);

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
