//! How `verdict validate` and `verdict run` word the problems of a pipeline
//! file that a person has to act on: the variable behind an overridden
//! key, numbers exactly as written, huge values cut to a readable size,
//! and never a password.

use std::process::Output;

use crate::{config, verdict_command, TempFile};

/// A valid pipeline with `contract` as the contract's body.
fn pipeline(tag: &str, contract: &str) -> TempFile {
    TempFile::new(
        tag,
        "pipeline.yaml",
        &config(contract, "size: 1s, allowed_lateness: 0s"),
    )
}

fn verdict(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = verdict_command(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("verdict runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A key set by a `VERDICT__…` variable is not in the file: its problem
/// names the variable, in `validate` and in `run` alike.
#[test]
fn an_override_error_names_its_variable() {
    let file = pipeline("env-error", "    max_p95_latency_ms: 100");
    let path = file.path.to_string_lossy().into_owned();
    let env = [("VERDICT__PROCESSORS__WINDOW__SIZE", "abc")];
    for args in [vec!["validate", "-c", &path], vec!["run", "-c", &path]] {
        let out = verdict(&args, &env);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.contains("processors.window.size: VERDICT__PROCESSORS__WINDOW__SIZE=abc: "),
            "{args:?}: {err}"
        );
    }
    // A secret is named, not shown.
    let out = verdict(
        &["validate", "-c", &path],
        &[("VERDICT__SERVICE__API__TOKEN", "short\u{1}secret")],
    );
    let err = stderr(&out);
    assert!(
        err.contains("VERDICT__SERVICE__API__TOKEN=<redacted>") && !err.contains("secret"),
        "{err}"
    );
}

/// A number too large for its field is quoted as written, not as the
/// nearest float.
#[test]
fn a_huge_integer_is_quoted_exactly() {
    let file = pipeline(
        "u64-max",
        "    max_p95_latency_ms: 100\n    min_samples: 18446744073709551615",
    );
    let out = verdict(&["validate", "-c", &file.path.to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("18446744073709551615"), "{err}");
    assert!(!err.contains("18446744073709552000"), "{err}");
}

/// A scalar of megabytes is quoted cut, with its size.
#[test]
fn a_huge_value_is_quoted_cut() {
    let huge = "x".repeat(3 << 20);
    let file = pipeline(
        "huge-value",
        &format!("    max_p95_latency_ms: 100\n    decision: \"{huge}\""),
    );
    let out = verdict(&["validate", "-c", &file.path.to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.len() < 10_000, "{} bytes of errors", err.len());
    assert!(
        err.contains(&format!("…\" ({} bytes)", huge.len())),
        "{err}"
    );
}

/// A storage URL in an error keeps its password to itself.
#[test]
fn a_storage_error_hides_the_password() {
    let file = TempFile::new(
        "pg-secret",
        "pipeline.yaml",
        &config("    max_p95_latency_ms: 100", "size: 1s").replace(
            "storage: \"memory:\"",
            "storage: \"postgres://verdict@db:5432/verdict?password=hunter2\"",
        ),
    );
    let out = verdict(&["validate", "-c", &file.path.to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("service.storage"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// A "billion laughs" file: nine levels of ten aliases each.
pub(crate) fn alias_bomb() -> String {
    let mut text =
        String::from("a0: &a0 [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for level in 1..9 {
        let items = vec![format!("*a{}", level - 1); 10].join(",");
        text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    text + "receivers: *a8\n"
}

/// A few hundred bytes of nested YAML aliases would expand to a billion
/// nodes: `validate` refuses them by name and with the limit, in little
/// memory (run under a 1 GiB address-space limit, which the expansion
/// would need many times over).
#[test]
fn a_yaml_alias_bomb_is_refused_without_expanding_it() {
    let file = TempFile::new("alias-bomb", "pipeline.yaml", &alias_bomb());
    let verdict = crate::verdict_command(["validate"])
        .get_program()
        .to_owned();
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 1048576; exec \"$0\" validate -c \"$1\""])
        .arg(verdict)
        .arg(&file.path)
        .output()
        .expect("sh runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("YAML aliases") && err.contains("more than 100000 nodes (the limit)"),
        "{err}"
    );
}
