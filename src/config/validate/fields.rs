//! The error machinery of validation: problems collected with their paths,
//! each component deserialized on its own with unknown keys and type errors
//! reported by path, and component ids parsed.

use super::*;

/// The problems found so far.
#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Puts the errors found since `mark` about the map at `prefix` in the
    /// order its `keys` appear in the file (stable; errors about the map as
    /// a whole, or about keys it does not have, go last).
    pub(super) fn file_order_since(&mut self, mark: usize, prefix: &str, keys: &[String]) {
        let rank = |path: &str| -> usize {
            let field = path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|rest| rest.split(['.', '[']).next().unwrap_or(rest));
            field
                .and_then(|field| keys.iter().position(|k| k == field))
                .unwrap_or(keys.len())
        };
        self.0[mark..].sort_by_cached_key(|e| rank(&e.path));
    }
}

/// The keys of a map value, in file order (empty for anything else).
pub(super) fn table_keys(value: &Value) -> Vec<String> {
    match &value.kind {
        ValueKind::Table(table) => table.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `prefix.key`, or `key` when `prefix` is empty.
pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The value of a field: `None` when absent; a value that could not be read
/// is reported at `path` and also gives `None`.
pub(super) fn take<T>(field: Field<T>, path: &str, errors: &mut Errors) -> Option<T> {
    match field? {
        Checked(Ok(value)) => Some(value),
        Checked(Err(message)) => {
            errors.push(path, message);
            None
        }
    }
}

/// The entries of a section that maps ids (or names) to settings.
pub(super) fn section_entries(
    section: &str,
    value: Option<Value>,
    errors: &mut Errors,
) -> Vec<(String, Value)> {
    let Some(value) = value else {
        return Vec::new();
    };
    match value.kind {
        ValueKind::Table(table) => table.into_iter().collect(),
        ValueKind::Nil => Vec::new(),
        ValueKind::String(s) if s.is_empty() => Vec::new(),
        other => {
            errors.push(section, format!("expected a map, got {}", describe(&other)));
            Vec::new()
        }
    }
}

/// "a string", "a list", … for messages about the wrong kind of value.
pub(super) fn describe(kind: &ValueKind) -> &'static str {
    match kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "an integer"
        }
        ValueKind::Float(_) => "a number",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a map",
        ValueKind::Array(_) => "a list",
    }
}

/// Deserializes `value` (a component, a pipeline, the service section) into
/// `T`, reporting every unknown key with its path under `path`. Bad field
/// values do not fail here (they are kept in `Checked` fields, see `raw`), so
/// the only error `serde_path_to_error` can see is a value that is not a map
/// at all, before anything was read. A key written with no value counts as
/// an empty map.
pub(super) fn deserialize<T: DeserializeOwned>(
    value: Value,
    path: &str,
    errors: &mut Errors,
) -> Option<T> {
    let value = match &value.kind {
        ValueKind::Nil => Value::new(None, ValueKind::Table(Map::new())),
        ValueKind::String(s) if s.is_empty() => Value::new(None, ValueKind::Table(Map::new())),
        _ => value,
    };
    let mut unknown = Vec::new();
    let mut on_ignored =
        |ignored: serde_ignored::Path<'_>| unknown.push(join(path, &ignored_path(&ignored)));
    let result: Result<MapOnly<T>, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut on_ignored));
    for key in unknown {
        errors.push(key, "unknown key");
    }
    match result {
        Ok(MapOnly(value)) => Some(value),
        Err(error) => {
            errors.push(
                error_path(path, error.path()),
                config_error_message(error.inner()),
            );
            None
        }
    }
}

/// Dotted rendering of a `serde_ignored` path (`a.b[0].c`).
pub(super) fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => join(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// `prefix` followed by a `serde_path_to_error` path (`a.b[0].c`).
pub(super) fn error_path(prefix: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = prefix.to_string();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } => out = join(&out, key),
            Segment::Enum { variant } => out = join(&out, variant),
            Segment::Unknown => out = join(&out, "?"),
        }
    }
    out
}

/// A config-rs deserialization error without the ` for key …` suffix that
/// config-rs adds (the path is reported separately).
pub(super) fn config_error_message(error: &config::ConfigError) -> String {
    match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}"),
        config::ConfigError::At { error, .. } => config_error_message(error),
        other => other.to_string(),
    }
}

/// A component id split into its type and optional name.
pub(super) struct ComponentId<'a> {
    pub(super) kind: &'a str,
    pub(super) name: Option<&'a str>,
}

/// Parses `type` or `type/name`. Names may contain letters, digits, `_`,
/// `-` and `.` (they appear in API paths and metric labels), but are not
/// `.` or `..`.
pub(super) fn parse_id(id: &str) -> Result<ComponentId<'_>, String> {
    let (kind, name) = match id.split_once('/') {
        Some((kind, name)) => (kind, Some(name)),
        None => (id, None),
    };
    if kind.is_empty() {
        return Err(format!(
            "invalid component id {id:?}: expected type or type/name"
        ));
    }
    if let Some(name) = name {
        if name.is_empty() {
            return Err(format!(
                "invalid component id {id:?}: the name after \"/\" is empty"
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "invalid component id {id:?}: a name may contain only letters, digits, \"_\", \"-\" and \".\""
            ));
        }
        // In a URL `.` and `..` are dot segments that browsers and URL
        // libraries resolve away: `/runs/../x/1` would never reach the run.
        if matches!(name, "." | "..") {
            return Err(format!(
                "invalid component id {id:?}: {name:?} cannot be a name (it means a directory in a URL path); use letters or digits too"
            ));
        }
    }
    Ok(ComponentId { kind, name })
}

/// The components of a section (`receivers`, `processors`, `exporters`):
/// each id parsed, then built by `build` from its type. `build` answers
/// `None` for a type it does not know (reported here as an unknown
/// `what` type), else the component (`None` when it had problems, which
/// `build` reported). Errors about one component are put in the order its
/// keys appear in the file.
pub(super) fn components<T>(
    section_name: &str,
    what: &str,
    section: Option<Value>,
    errors: &mut Errors,
    mut build: impl FnMut(&str, &ComponentId<'_>, Value, &str, &mut Errors) -> Option<Option<T>>,
) -> Defined<T> {
    let mut defined = Defined::new();
    for (id, value) in section_entries(section_name, section, errors) {
        let path = join(section_name, &id);
        let (mark, keys) = (errors.len(), table_keys(&value));
        let spec = match parse_id(&id) {
            Err(message) => {
                errors.push(&path, message);
                None
            }
            Ok(cid) => match build(&id, &cid, value, &path, errors) {
                Some(spec) => spec,
                None => {
                    errors.push(&path, format!("unknown {what} type {:?}", cid.kind));
                    None
                }
            },
        };
        errors.file_order_since(mark, &path, &keys);
        defined.insert(id, spec);
    }
    defined
}
