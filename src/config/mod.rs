//! The pipeline file (design §2): YAML in, [`ValidatedConfig`] out, with every
//! problem reported at once and by path. Pure apart from reading the file.
//!
//! Loading runs in four steps:
//!
//! 1. **Substitute** `${env:VAR}`, `${env:VAR:-default}` and `$$` in the raw
//!    text (`env.rs`), so a missing variable is reported with its line.
//! 2. **Parse** the YAML with the `config` crate
//!    (`config::File::from_str(text, FileFormat::Yaml)`), which keeps keys
//!    exactly as written (`contract/checkout`, `service.name`, upper case) and
//!    in file order, and reports syntax errors with line and column.
//! 3. **Override** keys from `VERDICT__SECTION__KEY=value` variables
//!    (`VERDICT__SERVICE__API__ENDPOINT` sets `service.api.endpoint`), applied
//!    to the parsed tree by `env.rs` rather than by config-rs's `Environment`
//!    source, which cannot address component ids with `/`, keys with `.` or
//!    upper-case names, and turns string values such as tokens into numbers
//!    (details in `env.rs`).
//! 4. **Validate** (`validate.rs`): each section and component is read with
//!    the serde types of `raw.rs`; unknown keys, type errors, bounds,
//!    references and listener conflicts are all collected into
//!    [`ConfigErrors`]; defaults are filled in.
//!
//! ```text
//! text ─substitute─> text ─config-rs YAML─> tree ─VERDICT__ overrides─> tree ─validate─> ValidatedConfig
//! ```

use std::collections::HashMap;
use std::path::Path;

pub mod probe_plan;
pub mod validated;

mod select;

mod aliases;
mod defaults;
mod env;
mod error;
pub mod print;
mod raw;
mod signature;
pub mod summary;
mod validate;
pub mod validity;
mod yaml;

#[cfg(test)]
mod tests;

pub use defaults::{
    DEFAULT_API_ENDPOINT, DEFAULT_PG_GRACE, DEFAULT_PG_POOL_SIZE, DEFAULT_PG_STATEMENT_TIMEOUT,
};
pub use error::{ConfigError, ConfigErrors};
pub use probe_plan::{Amount, ProbePlan, SYNTHETIC_ATTRIBUTE};
pub use select::{select_resource, AttributeMatch, Selection};
pub(crate) use validate::tls::{read_certificates, read_key, tls_pair_error};
pub use validated::*;

/// Reads, substitutes, layers env overrides, parses and validates a pipeline file.
///
/// The process environment (`std::env::vars_os()`, entries that are not
/// UTF-8 skipped) serves both `${env:VAR}` and `VERDICT__…` overrides. A file
/// that cannot be read is one error naming the file and the I/O error.
pub fn load_file(path: &Path) -> Result<ValidatedConfig, ConfigErrors> {
    let text = read_bounded(path).map_err(|e| ConfigError::new("", e))?;
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    load_str(&text, &env)
}

/// The largest pipeline file read. Real ones are a few KiB; the bound keeps
/// a wrong path (`/dev/zero`, a log file) from exhausting memory at start or,
/// worse, on a reload of a running server.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads at most [`MAX_CONFIG_BYTES`] of `path` as UTF-8 text.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "cannot read {}: larger than {} MiB; a pipeline file is a few KiB, is this the right file?",
            path.display(),
            MAX_CONFIG_BYTES >> 20
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("cannot read {}: not UTF-8 text ({e})", path.display()))
}

/// Same from text, with an explicit environment (for tests and `validate`): `env` is used both for
/// `${env:VAR}` substitution and for `VERDICT__SECTION__KEY` overrides.
pub fn load_str(
    text: &str,
    env: &HashMap<String, String>,
) -> Result<ValidatedConfig, ConfigErrors> {
    let text = env::substitute(text, env).map_err(ConfigErrors)?;
    let mut root = parse_yaml(&text)?;
    let (applied, override_errors) = env::apply_overrides_traced(&mut root, env);
    if !override_errors.is_empty() {
        return Err(ConfigErrors(override_errors));
    }
    validate::validate(root).map_err(|errors| ConfigErrors(env::name_variables(errors.0, &applied)))
}

/// Parses YAML text into config-rs's ordered tree, keys kept as written
/// and integers exact (`yaml.rs`); a file that does not parse is reported
/// in config-rs's words.
pub(crate) fn parse_yaml(text: &str) -> Result<config::Map<String, config::Value>, ConfigErrors> {
    use config::Source as _;
    aliases::check(text).map_err(|message| ConfigErrors(vec![ConfigError::new("", message)]))?;
    if let Some(root) = yaml::parse(text) {
        return Ok(root);
    }
    config::File::from_str(text, config::FileFormat::Yaml)
        .collect()
        .map_err(|error| {
            let message = match &error {
                // The top level parsed but is not a map.
                config::ConfigError::FileParse { cause, .. }
                    if cause.is::<config::ConfigError>()
                        || cause.is::<Box<config::ConfigError>>() =>
                {
                    format!("the file must be a YAML map of sections: {cause}")
                }
                config::ConfigError::FileParse { cause, .. } => format!("invalid YAML: {cause}"),
                other => format!("invalid YAML: {other}"),
            };
            ConfigErrors(vec![ConfigError::new("", message)])
        })
}
