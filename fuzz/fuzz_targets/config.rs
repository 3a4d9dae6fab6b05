//! The pipeline file loader and validator (`config/`), on any text:
//!
//! - it never panics;
//! - a refusal has at least one error, each a non-empty message on one
//!   path: `path: message` for a key (its dotted path; keys may hold dots
//!   themselves, so the path is not checked further),
//!   or a message alone for what is not one key of the file (YAML syntax;
//!   an unset variable, `line N: …`; a `VERDICT__` override that cannot
//!   apply, `environment variable NAME: …`);
//! - loading is deterministic: the same text gives the same errors in the
//!   same order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict::config::load_str;
use verdict_fuzz::config_env;

/// Messages of errors that concern the whole file or the environment
/// rather than a key.
const FILE_LEVEL: &[&str] = &[
    "invalid YAML",
    "the file must be a YAML map",
    "line ",
    "environment variable ",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = config_env();
    let first = load_str(text, &env);
    let Err(errors) = &first else {
        return;
    };
    assert!(!errors.is_empty(), "a refusal says why");
    for e in errors.iter() {
        assert!(
            !e.message.trim().is_empty(),
            "empty message at {:?}",
            e.path
        );
        if e.path.is_empty() {
            assert!(
                FILE_LEVEL.iter().any(|p| e.message.starts_with(p)),
                "an error without a path that is not about the file: {}",
                e.message
            );
            assert_eq!(e.to_string(), e.message);
        } else {
            assert_eq!(e.to_string(), format!("{}: {}", e.path, e.message));
        }
    }
    let second = load_str(text, &env);
    assert_eq!(
        format!("{:?}", first.as_ref().err()),
        format!("{:?}", second.as_ref().err()),
        "deterministic"
    );
});
