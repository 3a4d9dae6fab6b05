//! The YAML tree of a pipeline file, as config-rs builds it but for one
//! thing: an integer too large for an `i64` (`18446744073709551615`)
//! stays that integer. The YAML reader (yaml-rust2) hands such a number
//! over as text marked "real", and config-rs turns every real into an
//! `f64`, so a message about it would quote `18446744073709552000`, a
//! number nobody wrote; here it becomes an unsigned or 128-bit integer, or
//! when even that is too small, the text itself.
//!
//! Only a file that parses is converted here; one that does not is left to
//! config-rs, whose messages are the ones verdict reports.

use config::{Map, Value, ValueKind};
use yaml_rust2::{Yaml, YamlLoader};

/// The file's top-level map, or `None` when config-rs should be asked why
/// it is not one (a syntax error, several documents, another root).
pub(super) fn parse(text: &str) -> Option<Map<String, Value>> {
    let mut docs = YamlLoader::load_from_str(text).ok()?;
    let root = match docs.len() {
        0 => return Some(Map::new()),
        1 => docs.pop()?,
        _ => return None,
    };
    match convert(&root)?.kind {
        ValueKind::Table(map) => Some(map),
        _ => None,
    }
}

/// One node, as config-rs converts it (same keys, same kinds).
fn convert(node: &Yaml) -> Option<Value> {
    let kind = match node {
        Yaml::String(s) => ValueKind::String(s.clone()),
        Yaml::Real(text) => real(text)?,
        Yaml::Integer(i) => ValueKind::I64(*i),
        Yaml::Boolean(b) => ValueKind::Boolean(*b),
        Yaml::Hash(table) => {
            let mut map = Map::new();
            for (key, value) in table {
                let key = match key {
                    Yaml::String(k) | Yaml::Real(k) => k.clone(),
                    Yaml::Integer(k) => k.to_string(),
                    Yaml::Boolean(k) => k.to_string(),
                    _ => return None,
                };
                map.insert(key, convert(value)?);
            }
            ValueKind::Table(map)
        }
        Yaml::Array(items) => {
            ValueKind::Array(items.iter().map(convert).collect::<Option<Vec<_>>>()?)
        }
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => ValueKind::Nil,
    };
    Some(Value::new(None, kind))
}

/// A YAML "real": an integer too large for `i64` as the widest integer
/// that holds it (or its text beyond that), anything else as config-rs
/// reads it (`f64`, or not at all).
fn real(text: &str) -> Option<ValueKind> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let unsigned = text.strip_prefix('+').unwrap_or(text);
        return Some(if let Ok(u) = unsigned.parse::<u64>() {
            ValueKind::U64(u)
        } else if let Ok(i) = unsigned.parse::<i128>() {
            ValueKind::I128(i)
        } else if let Ok(u) = unsigned.parse::<u128>() {
            ValueKind::U128(u)
        } else {
            ValueKind::String(text.to_string())
        });
    }
    text.parse::<f64>().ok().map(ValueKind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> ValueKind {
        let map = parse(&format!("a: {text}\n")).expect("parses");
        map["a"].kind.clone()
    }

    #[test]
    fn integers_beyond_i64_stay_exact() {
        assert_eq!(value("18446744073709551615"), ValueKind::U64(u64::MAX));
        assert_eq!(
            value("-9223372036854775809"),
            ValueKind::I128(-9_223_372_036_854_775_809)
        );
        assert_eq!(
            value("340282366920938463463374607431768211455"),
            ValueKind::U128(u128::MAX)
        );
        assert_eq!(
            value("3402823669209384634633746074317682114550"),
            ValueKind::String("3402823669209384634633746074317682114550".into())
        );
    }

    #[test]
    fn everything_else_reads_as_config_rs_reads_it() {
        use config::Source as _;
        let text =
            "a: 1\nb: 2.5\nc: x\nd: [1, true, ~]\ne: { 1: y, true: z, 1.5: w }\nf: 1e3\ng: -7\n";
        let ours = parse(text).expect("parses");
        let theirs = config::File::from_str(text, config::FileFormat::Yaml)
            .collect()
            .expect("parses");
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
        assert_eq!(parse("- a\n"), None);
        assert_eq!(parse("a: [\n"), None);
        assert_eq!(parse("a: .inf\n"), None);
        assert_eq!(parse("").map(|m| m.len()), Some(0));
    }
}
