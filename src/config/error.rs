//! Configuration errors. Every problem found while loading a pipeline file is
//! one [`ConfigError`] that names the key it concerns
//! (`processors.contract/checkout.max_error_rate_percent: must be between 0 and 100, got 140`);
//! loading reports all of them at once as [`ConfigErrors`], in a stable order.

use std::fmt;

/// One problem in a pipeline file.
///
/// `path` is the dotted location of the key (`receivers.otlp.protocols.grpc.endpoint`,
/// `pipelines.checkout.receivers[0]`), or empty for problems that concern the
/// whole file (a YAML syntax error, a missing environment variable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Dotted path of the offending key; empty for file-level problems.
    pub path: String,
    /// What is wrong, as a sentence fragment (`unknown key`, `must be at least 1, got 0`).
    pub message: String,
}

impl ConfigError {
    /// An error at `path` (may be empty) saying `message`. Input quoted in
    /// either is shortened (see [`shorten`]): a pipeline file may hold a
    /// scalar of megabytes, and an error is one line for a person to read.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: shorten(shorten_keys(path.into())),
            message: shorten(message.into()),
        }
    }
}

/// The most characters of a quoted value (`"…"` or `` `…` ``) an error
/// keeps; a longer one is cut there and followed by its size.
pub const QUOTE_LIMIT: usize = 120;

/// The most characters of a message or path kept at all, whatever quotes
/// it has.
const TEXT_LIMIT: usize = 2000;

/// `text` with every quoted part longer than [`QUOTE_LIMIT`] characters
/// cut (`"aaaa…" (4194304 bytes)`), and then the whole cut at
/// [`TEXT_LIMIT`]. Done once here rather than at each `format!` so that no
/// message can forget it, serde's and config-rs's own included.
fn shorten(text: String) -> String {
    if text.len() <= QUOTE_LIMIT {
        return text;
    }
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(open) = rest.find(['"', '`']) {
        let quote = &rest[open..=open];
        out.push_str(&rest[..=open]);
        let inner = &rest[open + 1..];
        let close = closing(inner, quote);
        let value = &inner[..close.unwrap_or(inner.len())];
        match value.char_indices().nth(QUOTE_LIMIT) {
            Some((cut, _)) => {
                out.push_str(&value[..cut]);
                out.push('…');
                out.push_str(quote);
                out.push_str(&format!(" ({} bytes)", value.len()));
            }
            None => {
                out.push_str(value);
                if close.is_some() {
                    out.push_str(quote);
                }
            }
        }
        rest = close.map_or("", |end| &inner[end + 1..]);
    }
    out.push_str(rest);
    match out.char_indices().nth(TEXT_LIMIT) {
        Some((cut, _)) => format!("{}… ({} bytes)", &out[..cut], out.len()),
        None => out,
    }
}

/// A dotted path with every key longer than [`QUOTE_LIMIT`] characters
/// cut like a quoted value (`aaaa…(4194304 bytes)`): a key of megabytes
/// is input too.
fn shorten_keys(path: String) -> String {
    if path.len() <= QUOTE_LIMIT {
        return path;
    }
    path.split('.')
        .map(|key| match key.char_indices().nth(QUOTE_LIMIT) {
            Some((cut, _)) => format!("{}…({} bytes)", &key[..cut], key.len()),
            None => key.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Where the quote `quote` that opened `inner` closes: the next one not
/// escaped by a backslash (Rust's and serde's `"…"` quoting).
fn closing(inner: &str, quote: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            c if !escaped && quote.starts_with(c) => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a pipeline file (never empty when returned as an
/// error). Displayed one error per line, without a trailing newline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no problem (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in report order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(errors: Vec<ConfigError>) -> Self {
        Self(errors)
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_with_and_without_path() {
        assert_eq!(
            ConfigError::new("service.storage", "bad").to_string(),
            "service.storage: bad"
        );
        assert_eq!(ConfigError::new("", "bad").to_string(), "bad");
    }

    #[test]
    fn long_quoted_input_is_cut_and_sized() {
        let huge = "a".repeat(4 << 20);
        let e = ConfigError::new(
            format!("receivers.{huge}"),
            format!("invalid endpoint {huge:?}: expected `{huge}` or \"x\""),
        );
        let shown = e.to_string();
        assert!(shown.len() < 3000, "{} bytes", shown.len());
        let cut = format!("\"{}…\" ({} bytes)", "a".repeat(QUOTE_LIMIT), huge.len());
        assert!(shown.contains(&cut), "{shown}");
        assert!(shown.contains(&format!(
            "`{}…` ({} bytes)",
            "a".repeat(QUOTE_LIMIT),
            huge.len()
        )));
        assert!(shown.ends_with("or \"x\""), "{shown}");
        assert_eq!(
            e.path,
            format!(
                "receivers.{}…({} bytes)",
                "a".repeat(QUOTE_LIMIT),
                huge.len()
            )
        );
        // Short quotes, escaped quotes and stray quotes are left alone.
        let text = format!("{} \"a\\\"b\" and a ' and \"open", "x".repeat(200));
        assert_eq!(ConfigError::new("", text.clone()).message, text);
    }

    #[test]
    fn errors_display_one_per_line() {
        let errors = ConfigErrors(vec![
            ConfigError::new("a", "x"),
            ConfigError::new("", "y"),
            ConfigError::new("b.c", "z"),
        ]);
        assert_eq!(errors.to_string(), "a: x\ny\nb.c: z");
        assert_eq!(errors.len(), 3);
    }
}
