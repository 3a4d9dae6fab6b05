//! Messages are JSON objects, with field names in either spelling.

use super::*;

/// A message: serde-derived structs also accept a JSON *array* (fields by
/// position), which is not proto3 JSON; `Obj` makes them accept objects only.
/// Every message-typed position (including the top level) is wrapped in it.
pub(super) struct Obj<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(ObjectOnly(deserializer)).map(Obj)
    }
}

/// Turns the derive's `deserialize_struct` request into `deserialize_map`,
/// with every key read through [`CamelKeys`].
pub(super) struct ObjectOnly<D>(pub(super) D);

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
        self.0.deserialize_map(CamelKeys(visitor))
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

/// Field names in either spelling: the messages derive lowerCamelCase
/// names (`rename_all`), and this map visitor hands them each key with any
/// proto `snake_case` spelling turned into lowerCamelCase first
/// (`dropped_attributes_count` → `droppedAttributesCount`), so one rule
/// covers every field instead of an alias per field. Paths in errors keep
/// the key as the input spelled it.
pub(super) struct CamelKeys<V>(pub(super) V);

impl<'de, V: Visitor<'de>> Visitor<'de> for CamelKeys<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(CamelMap(map))
    }
}

/// The map of [`CamelKeys`].
pub(super) struct CamelMap<A>(pub(super) A);

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for CamelMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(CamelKey(seed))
    }

    fn next_value_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// One key of a [`CamelMap`].
pub(super) struct CamelKey<K>(pub(super) K);

impl<'de, K: de::DeserializeSeed<'de>> de::DeserializeSeed<'de> for CamelKey<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: de::DeserializeSeed<'de>> Visitor<'de> for CamelKey<K> {
    type Value = K::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<K::Value, E> {
        if !is_proto_snake_case(key) {
            // Anything else (`_comment`, `trace__id`, `spanId_`) is read as
            // written: an unknown key is ignored, never taken for a field.
            return self
                .0
                .deserialize(de::value::StrDeserializer::<E>::new(key));
        }
        let mut camel = String::with_capacity(key.len());
        let mut upper = false;
        for c in key.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                camel.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                camel.push(c);
            }
        }
        self.0
            .deserialize(de::value::StringDeserializer::<E>::new(camel))
    }
}

/// A proto field name in snake_case with at least two words: lower-case
/// letters and digits in non-empty words joined by single `_`, starting
/// with a letter (`dropped_attributes_count`). Exactly the spellings the
/// OTLP protos have, so no other key is rewritten.
fn is_proto_snake_case(key: &str) -> bool {
    key.contains('_')
        && key.as_bytes()[0].is_ascii_lowercase()
        && key.split('_').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}
