//! Messages every signal shares: resource, scope, attributes and their values.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for Resource")]
pub(super) struct RawResource {
    attributes: Option<Vec<Obj<RawKeyValue>>>,
    dropped_attributes_count: Option<Int<u32>>,
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
pub(super) struct RawEntityRef {
    schema_url: Option<String>,
    r#type: Option<String>,
    id_keys: Option<Vec<String>>,
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
pub(super) struct RawScope {
    name: Option<String>,
    version: Option<String>,
    attributes: Option<Vec<Obj<RawKeyValue>>>,
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
pub(super) struct RawKeyValue {
    key: Option<String>,
    value: Option<Obj<JsonAnyValue>>,
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
pub(super) struct JsonAnyValue(pub(super) AnyValue);

impl From<JsonAnyValue> for AnyValue {
    fn from(v: JsonAnyValue) -> Self {
        v.0
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(expecting = "a JSON object for AnyValue")]
pub(super) struct AnyValueFields {
    string_value: Option<String>,
    bool_value: Option<bool>,
    int_value: Option<Int<i64>>,
    double_value: Option<F64>,
    array_value: Option<Obj<RawArrayValue>>,
    kvlist_value: Option<Obj<RawKeyValueList>>,
    bytes_value: Option<Base64Bytes>,
    string_value_strindex: Option<Int<i32>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object for ArrayValue")]
pub(super) struct RawArrayValue {
    values: Option<Vec<Obj<JsonAnyValue>>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object for KeyValueList")]
pub(super) struct RawKeyValueList {
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
pub(super) fn single_oneof<V, const K: usize>(
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
