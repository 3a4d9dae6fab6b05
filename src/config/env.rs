//! The environment's two ways into a pipeline file.
//!
//! 1. [`substitute`]: `${env:VAR}` and `${env:VAR:-default}` in the raw text,
//!    before the YAML is parsed (design §2). `$$` is a literal `$`; a `$` not
//!    followed by `$` or `{` is kept as it is. The default applies when VAR is
//!    unset *or empty* (shell `:-` semantics) and is literal text up to the
//!    first `}` (no nesting). Whole-line comments (first non-blank character
//!    `#`) are copied untouched, so a commented-out `${env:X}` needs no X.
//!    A value containing a line break is refused: it would shift the line
//!    numbers of syntax errors and could inject YAML structure. Because the
//!    substitution is textual, a value with YAML-special characters (`: `,
//!    ` #`, a leading `*`, `&`, `!`, `{`, `[`…) should be quoted in the file:
//!    `token: "${env:VERDICT_API_TOKEN}"`.
//!
//! 2. [`apply_overrides`]: `VERDICT__SECTION__KEY=value` sets
//!    `section.key` in the parsed tree, in the same form as config-rs's
//!    `Environment::with_prefix("VERDICT").prefix_separator("__").separator("__")`,
//!    but done here because config-rs cannot address our keys: it lowercases
//!    the variable and parses it as a dotted path expression, so a component id
//!    with `/` (`contract/checkout`) silently becomes a new top-level key
//!    `"processors.contract/checkout.min_samples"`, a key containing `.`
//!    (`match: { service.name: … }`) is split in two, an upper-case component
//!    name is unreachable, and `try_parsing` turns a token `00123` into the
//!    number 123. Here only `__` separates segments, a segment matches an
//!    existing key exactly or else ASCII-case-insensitively (`OTLP/EDGE` finds
//!    `otlp/Edge`) or else with `_` standing for any character an exported
//!    name cannot hold (`CONTRACT_DEFAULT` finds `contract/default`, since a
//!    shell refuses to `export` a name with `/`, `.` or `-`; `env 'NAME=…'`
//!    passes such names as they are), a missing key is created in lower case, and the value stays
//!    a string: the typed fields parse numbers, sizes, durations, booleans and
//!    comma-separated lists from strings. Variables are applied in sorted order;
//!    override values are not `${env:…}`-substituted.

use std::collections::HashMap;

use config::{Map, Value, ValueKind};

use super::error::ConfigError;

/// Prefix of the environment variables that override file keys (compared
/// ASCII-case-insensitively, like config-rs does).
pub(crate) const OVERRIDE_PREFIX: &str = "VERDICT__";

/// Separator between key segments in an override variable.
const OVERRIDE_SEPARATOR: &str = "__";

/// Replaces every `${env:…}` and `$$` in `text`. Returns all the problems
/// (one per bad substitution, with its line number) when there is any.
pub(crate) fn substitute(
    text: &str,
    env: &HashMap<String, String>,
) -> Result<String, Vec<ConfigError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(open) = after.strip_prefix('{') {
                match open.find('}') {
                    Some(end) => {
                        match expand(&open[..end], env) {
                            Ok(value) => out.push_str(&value),
                            Err(message) => errors.push(line_error(line_no, message)),
                        }
                        rest = &open[end + 1..];
                    }
                    None => {
                        errors.push(line_error(
                            line_no,
                            "\"${\" without a closing \"}\" on the same line (write $$ for a literal $)"
                                .to_string(),
                        ));
                        out.push_str(&rest[pos..]);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn line_error(line_no: usize, message: String) -> ConfigError {
    ConfigError::new("", format!("line {line_no}: {message}"))
}

/// The value of one `${…}` whose inside is `body`.
fn expand(body: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let Some(spec) = body.strip_prefix("env:") else {
        return Err(format!(
            "unsupported substitution \"${{{body}}}\": write ${{env:NAME}} or ${{env:NAME:-default}}, or $$ for a literal $"
        ));
    };
    let (name, default) = match spec.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (spec, None),
    };
    if !is_env_name(name) {
        return Err(format!(
            "invalid environment variable name {name:?} in \"${{{body}}}\" (a default is written ${{env:NAME:-default}})"
        ));
    }
    if default.is_some_and(|d| d.contains("${")) {
        return Err(format!(
            "nested substitutions are not supported in \"${{{body}}}\""
        ));
    }
    let value = match (env.get(name), default) {
        (Some(value), _) if !value.is_empty() => value.as_str(),
        (_, Some(default)) => default,
        (Some(value), None) => value.as_str(),
        (None, None) => {
            return Err(format!(
                "environment variable {name} is not set and \"${{{body}}}\" has no default"
            ))
        }
    };
    if value.contains(['\n', '\r']) {
        return Err(format!(
            "environment variable {name} contains a line break, which cannot be substituted into YAML"
        ));
    }
    Ok(value.to_string())
}

/// `[A-Za-z_][A-Za-z0-9_]*`, the portable environment variable names.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A `VERDICT__…` variable applied to the tree: the key it set, so that
/// problems with that key can name the variable (the file does not have
/// the value, so a person reading only the file would not find it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The dotted path of the key it set, as the key is spelled in the file.
    pub path: String,
    /// The variable's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl Applied {
    /// `error` with this variable named, when it is about the key the
    /// variable set or a key under it.
    fn names(&self, error: &ConfigError) -> bool {
        error
            .path
            .strip_prefix(&self.path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    }

    /// How the variable is quoted in an error: its value shortened, and
    /// hidden when the key holds a secret (a token, a password) or the
    /// value is a URL with credentials.
    fn shown(&self) -> String {
        let key = self.path.rsplit('.').next().unwrap_or(&self.path);
        let value = if super::print::is_secret_param(key) {
            super::print::REDACTED.to_string()
        } else {
            super::validated::redact_password(&self.value)
        };
        format!("{}={value}", self.name)
    }
}

/// `errors` with each problem about a key a `VERDICT__…` variable set
/// naming that variable (the longest matching key wins):
/// `processors.window.size: VERDICT__PROCESSORS__WINDOW__SIZE=abc: invalid duration …`.
pub(crate) fn name_variables(errors: Vec<ConfigError>, applied: &[Applied]) -> Vec<ConfigError> {
    errors
        .into_iter()
        .map(|error| {
            match applied
                .iter()
                .filter(|a| a.names(&error))
                .max_by_key(|a| a.path.len())
            {
                Some(var) => ConfigError::new(
                    error.path.clone(),
                    format!("{}: {}", var.shown(), error.message),
                ),
                None => error,
            }
        })
        .collect()
}

/// Applies every `VERDICT__A__B…` variable of `env` to the parsed tree
/// `root`, in sorted variable order. Returns the variables that could not be
/// applied.
#[cfg(test)]
pub(crate) fn apply_overrides(
    root: &mut Map<String, Value>,
    env: &HashMap<String, String>,
) -> Vec<ConfigError> {
    apply_overrides_traced(root, env).1
}

/// [`apply_overrides`], also returning the variables applied and the keys
/// they set.
pub(crate) fn apply_overrides_traced(
    root: &mut Map<String, Value>,
    env: &HashMap<String, String>,
) -> (Vec<Applied>, Vec<ConfigError>) {
    let mut vars: Vec<(&String, &String)> = env
        .iter()
        .filter(|(name, _)| {
            name.get(..OVERRIDE_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(OVERRIDE_PREFIX))
        })
        .collect();
    vars.sort();
    let mut errors = Vec::new();
    let mut applied = Vec::new();
    for (name, value) in vars {
        let segments: Vec<&str> = name[OVERRIDE_PREFIX.len()..]
            .split(OVERRIDE_SEPARATOR)
            .collect();
        let result = if segments.iter().any(|s| s.is_empty()) {
            Err("empty key segment (segments are separated by a double underscore, e.g. VERDICT__SERVICE__API__ENDPOINT)".to_string())
        } else {
            set_path(root, &segments, value, "")
        };
        match result {
            Ok(path) => applied.push(Applied {
                path,
                name: name.clone(),
                value: value.clone(),
            }),
            Err(message) => errors.push(ConfigError::new(
                "",
                format!("environment variable {name}: {message}"),
            )),
        }
    }
    (applied, errors)
}

/// Sets `segments` (relative to `table`, found at `parent`) to the string
/// `value`; returns the dotted path of the key set.
fn set_path(
    table: &mut Map<String, Value>,
    segments: &[&str],
    value: &str,
    parent: &str,
) -> Result<String, String> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(parent.to_string());
    };
    let key = resolve_key(table, first)?;
    let path = if parent.is_empty() {
        key.clone()
    } else {
        format!("{parent}.{key}")
    };
    if rest.is_empty() {
        table.insert(key, Value::new(None, ValueKind::String(value.to_string())));
        return Ok(path);
    }
    let entry = table
        .entry(key)
        .or_insert_with(|| Value::new(None, ValueKind::Table(Map::new())));
    // A key written with no value (`log:`) or set empty by an earlier
    // variable can still receive nested keys.
    let empty = match &entry.kind {
        ValueKind::Nil => true,
        ValueKind::String(s) => s.is_empty(),
        _ => false,
    };
    if empty {
        entry.kind = ValueKind::Table(Map::new());
    }
    match &mut entry.kind {
        ValueKind::Table(inner) => set_path(inner, rest, value, &path),
        _ => Err(format!("cannot set a key under {path}, which is not a map")),
    }
}

/// The key of `table` that `segment` names: the exact key, else the only key
/// equal to it ignoring ASCII case, else the only key equal to it once every
/// character that is not a letter or digit is read as `_` (so the exportable
/// `CONTRACT_DEFAULT` finds `contract/default`, and `SERVICE_NAME` finds
/// `service.name`), else `segment` in lower case (a new key).
fn resolve_key(table: &Map<String, Value>, segment: &str) -> Result<String, String> {
    if table.contains_key(segment) {
        return Ok(segment.to_string());
    }
    let alike = |how: &str, matches: Vec<&String>| -> Result<Option<String>, String> {
        match matches.as_slice() {
            [] => Ok(None),
            [only] => Ok(Some((*only).clone())),
            several => {
                let mut names: Vec<&str> = several.iter().map(|s| s.as_str()).collect();
                names.sort_unstable();
                Err(format!(
                    "{segment:?} matches several keys ({}); they differ only {how}",
                    names.join(", ")
                ))
            }
        }
    };
    let by_case = table
        .keys()
        .filter(|k| k.eq_ignore_ascii_case(segment))
        .collect();
    if let Some(key) = alike("in case", by_case)? {
        return Ok(key);
    }
    let wanted = exportable(segment);
    let by_spelling = table.keys().filter(|k| exportable(k) == wanted).collect();
    if let Some(key) = alike(
        "in case and in characters a variable name cannot hold",
        by_spelling,
    )? {
        return Ok(key);
    }
    Ok(segment.to_ascii_lowercase())
}

/// How a key is spelled in a variable name a shell can export: ASCII
/// letters and digits in lower case, anything else (`/`, `.`, `-`) as `_`.
fn exportable(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn messages(errors: Vec<ConfigError>) -> Vec<String> {
        errors.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn substitutes_set_variable() {
        let e = env(&[("TOKEN", "s3cret")]);
        assert_eq!(
            substitute("token: ${env:TOKEN}\n", &e).unwrap(),
            "token: s3cret\n"
        );
    }

    #[test]
    fn substituted_values_are_not_substituted_again() {
        let e = env(&[("A", "x$$y${env:B}"), ("B", "no")]);
        assert_eq!(substitute("a: ${env:A}", &e).unwrap(), "a: x$$y${env:B}");
    }

    #[test]
    fn substitutes_inside_other_text() {
        let e = env(&[("HOST", "ci.internal"), ("PORT", "8080")]);
        assert_eq!(
            substitute("url: http://${env:HOST}:${env:PORT}/api?x=1\n", &e).unwrap(),
            "url: http://ci.internal:8080/api?x=1\n"
        );
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        let e = env(&[("EMPTY", "")]);
        assert_eq!(
            substitute(
                "a: ${env:NOPE:-fallback}\nb: ${env:EMPTY:-x}\nc: ${env:NOPE:-}|\n",
                &e
            )
            .unwrap(),
            "a: fallback\nb: x\nc: |\n"
        );
        // A set value wins over the default.
        let e = env(&[("SET", "v")]);
        assert_eq!(substitute("${env:SET:-d}", &e).unwrap(), "v");
    }

    #[test]
    fn default_may_contain_colons_and_slashes() {
        assert_eq!(
            substitute("endpoint: ${env:EP:-0.0.0.0:4317}", &env(&[])).unwrap(),
            "endpoint: 0.0.0.0:4317"
        );
        assert_eq!(
            substitute("url: ${env:U:-http://x:1/a}", &env(&[])).unwrap(),
            "url: http://x:1/a"
        );
    }

    #[test]
    fn empty_variable_without_default_is_empty() {
        let e = env(&[("EMPTY", "")]);
        assert_eq!(substitute("t: ${env:EMPTY}", &e).unwrap(), "t: ");
    }

    #[test]
    fn missing_variable_names_it_and_the_line() {
        let errors = substitute(
            "a: 1\nb: ${env:VERDICT_MISSING}\nc: ${env:OTHER}\n",
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(
            messages(errors),
            [
                "line 2: environment variable VERDICT_MISSING is not set and \"${env:VERDICT_MISSING}\" has no default",
                "line 3: environment variable OTHER is not set and \"${env:OTHER}\" has no default",
            ]
        );
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        let e = env(&[("X", "1")]);
        assert_eq!(
            substitute("p: a$$b $$${env:X} $$$$ cost$5 $\n", &e).unwrap(),
            "p: a$b $1 $$ cost$5 $\n"
        );
        // `$${env:X}` is a literal `${env:X}`, not a substitution.
        assert_eq!(
            substitute("p: $${env:X}", &env(&[])).unwrap(),
            "p: ${env:X}"
        );
    }

    #[test]
    fn comment_lines_are_not_substituted() {
        let text = "# token: ${env:UNSET_IN_COMMENT}\n  # $$ stays\na: 1\n";
        assert_eq!(substitute(text, &env(&[])).unwrap(), text);
    }

    #[test]
    fn malformed_substitutions_are_errors() {
        let errors = substitute(
            "a: ${HOME}\nb: ${env:}\nc: ${env:A B}\nd: ${env:X:-${env:Y}}\ne: ${env:X\n",
            &env(&[]),
        )
        .unwrap_err();
        let got = messages(errors);
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].starts_with("line 1: unsupported substitution \"${HOME}\""));
        assert!(got[1].starts_with("line 2: invalid environment variable name \"\""));
        assert!(got[2].starts_with("line 3: invalid environment variable name \"A B\""));
        assert!(got[3].starts_with("line 4: nested substitutions are not supported"));
        assert!(got[4].starts_with("line 5: \"${\" without a closing"));
    }

    #[test]
    fn values_with_line_breaks_are_refused() {
        let e = env(&[("ML", "a\nservice: {}")]);
        let errors = substitute("token: ${env:ML}", &e).unwrap_err();
        assert_eq!(
            messages(errors),
            ["line 1: environment variable ML contains a line break, which cannot be substituted into YAML"]
        );
    }

    #[test]
    fn crlf_lines_are_counted() {
        let errors = substitute("a: 1\r\nb: ${env:NOPE}\r\n", &env(&[])).unwrap_err();
        assert!(messages(errors)[0].starts_with("line 2: "));
    }

    fn tree(yaml: &str) -> Map<String, Value> {
        crate::config::parse_yaml(yaml).unwrap()
    }

    fn get<'a>(root: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
        let (first, rest) = path.split_first()?;
        let mut value = root.get(*first)?;
        for key in rest {
            match &value.kind {
                ValueKind::Table(t) => value = t.get(*key)?,
                _ => return None,
            }
        }
        Some(value)
    }

    fn string_at(root: &Map<String, Value>, path: &[&str]) -> Option<String> {
        match &get(root, path)?.kind {
            ValueKind::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn override_sets_existing_and_new_keys_as_strings() {
        let mut root = tree("service:\n  api: { endpoint: 127.0.0.1:8686 }\n");
        let errors = apply_overrides(
            &mut root,
            &env(&[
                ("VERDICT__SERVICE__API__ENDPOINT", "0.0.0.0:9000"),
                ("VERDICT__SERVICE__API__TOKEN", "00123"),
                ("VERDICT__SERVICE__MAX_INFLIGHT_BYTES", "1MiB"),
                // Not overrides: single underscore, other prefix.
                ("VERDICT_API_TOKEN", "x"),
                ("VERDICTX__SERVICE__STORAGE", "x"),
            ]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            string_at(&root, &["service", "api", "endpoint"]).as_deref(),
            Some("0.0.0.0:9000")
        );
        // Kept as a string: no `try_parsing` turning it into 123.
        assert_eq!(
            string_at(&root, &["service", "api", "token"]).as_deref(),
            Some("00123")
        );
        assert_eq!(
            string_at(&root, &["service", "max_inflight_bytes"]).as_deref(),
            Some("1MiB")
        );
        assert!(get(&root, &["service", "storage"]).is_none());
    }

    #[test]
    fn override_reaches_keys_with_slashes_dots_and_upper_case() {
        let mut root = tree(
            "processors:\n  contract/Checkout:\n    match: { service.name: checkout }\n    min_samples: 10\n",
        );
        let errors = apply_overrides(
            &mut root,
            &env(&[
                ("VERDICT__PROCESSORS__CONTRACT/CHECKOUT__MIN_SAMPLES", "500"),
                (
                    "VERDICT__PROCESSORS__CONTRACT/CHECKOUT__MATCH__SERVICE.NAME",
                    "pay*",
                ),
            ]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            string_at(&root, &["processors", "contract/Checkout", "min_samples"]).as_deref(),
            Some("500")
        );
        assert_eq!(
            string_at(
                &root,
                &["processors", "contract/Checkout", "match", "service.name"]
            )
            .as_deref(),
            Some("pay*")
        );
        // Nothing was created beside the existing keys.
        let ValueKind::Table(processors) = &root["processors"].kind else {
            panic!("processors is not a table")
        };
        assert_eq!(processors.len(), 1);
    }

    #[test]
    fn override_fills_a_null_component() {
        let mut root = tree("exporters:\n  prometheus:\n");
        let errors = apply_overrides(
            &mut root,
            &env(&[("VERDICT__EXPORTERS__PROMETHEUS__ENDPOINT", "127.0.0.1:9999")]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            string_at(&root, &["exporters", "prometheus", "endpoint"]).as_deref(),
            Some("127.0.0.1:9999")
        );
    }

    #[test]
    fn override_problems_are_reported() {
        let mut root = tree(
            "service:\n  storage: \"memory:\"\nprocessors:\n  contract/a: {}\n  contract/A: {}\n",
        );
        let errors = apply_overrides(
            &mut root,
            &env(&[
                ("VERDICT__SERVICE__STORAGE__X", "1"),
                ("VERDICT__SERVICE____API", "1"),
                ("VERDICT__PROCESSORS__CONTRACT/a__MIN_SAMPLES", "1"),
                ("VERDICT__PROCESSORS__CONTRACT/A__MIN_SAMPLES", "1"),
            ]),
        );
        assert_eq!(
            messages(errors),
            [
                "environment variable VERDICT__PROCESSORS__CONTRACT/A__MIN_SAMPLES: \"CONTRACT/A\" matches several keys (contract/A, contract/a); they differ only in case",
                "environment variable VERDICT__PROCESSORS__CONTRACT/a__MIN_SAMPLES: \"CONTRACT/a\" matches several keys (contract/A, contract/a); they differ only in case",
                "environment variable VERDICT__SERVICE__STORAGE__X: cannot set a key under service.storage, which is not a map",
                "environment variable VERDICT__SERVICE____API: empty key segment (segments are separated by a double underscore, e.g. VERDICT__SERVICE__API__ENDPOINT)",
            ]
        );
    }

    #[test]
    fn exportable_spelling_finds_keys_with_slashes_dots_and_dashes() {
        let mut root = tree(
            "processors:\n  contract/check-out:\n    match: { service.name: checkout }\n    min_samples: 10\nexporters:\n  webhook/deploy:\n    url: http://x\n",
        );
        let errors = apply_overrides(
            &mut root,
            &env(&[
                (
                    "VERDICT__PROCESSORS__CONTRACT_CHECK_OUT__MIN_SAMPLES",
                    "500",
                ),
                (
                    "VERDICT__PROCESSORS__CONTRACT_CHECK_OUT__MATCH__SERVICE_NAME",
                    "pay*",
                ),
                ("VERDICT__EXPORTERS__WEBHOOK_DEPLOY__TIMEOUT", "9s"),
            ]),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            string_at(&root, &["processors", "contract/check-out", "min_samples"]).as_deref(),
            Some("500")
        );
        assert_eq!(
            string_at(
                &root,
                &["processors", "contract/check-out", "match", "service.name"]
            )
            .as_deref(),
            Some("pay*")
        );
        assert_eq!(
            string_at(&root, &["exporters", "webhook/deploy", "timeout"]).as_deref(),
            Some("9s")
        );
        // Found, not created beside.
        let ValueKind::Table(processors) = &root["processors"].kind else {
            panic!("processors is not a table")
        };
        assert_eq!(processors.len(), 1);
    }

    #[test]
    fn an_exportable_spelling_of_two_keys_is_refused() {
        let mut root = tree("processors:\n  contract/a-b: {}\n  contract/a.b: {}\n");
        let errors = apply_overrides(
            &mut root,
            &env(&[("VERDICT__PROCESSORS__CONTRACT_A_B__MIN_SAMPLES", "1")]),
        );
        assert_eq!(
            messages(errors),
            ["environment variable VERDICT__PROCESSORS__CONTRACT_A_B__MIN_SAMPLES: \"CONTRACT_A_B\" matches several keys (contract/a-b, contract/a.b); they differ only in case and in characters a variable name cannot hold"]
        );
    }
}
