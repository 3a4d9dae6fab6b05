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
    /// An error at `path` (may be empty) saying `message`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
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
