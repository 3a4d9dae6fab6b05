//! Every test runs its servers on storage of its own. Without `storage:` a
//! server opens `data/verdict.db` under the working directory — for `cargo
//! test`, the repository's, which is the README walkthrough's database — so
//! a test that forgot it shared runs with the user and with other tests, and
//! could pass on stale ones. [`crate::start`] and [`crate::verdict_command`]
//! refuse such a config; these tests check that they do, and that no test
//! starts a server any other way.

use std::ffi::OsStr;
use std::path::Path;

use crate::{foreign_storage, start, verdict_command, TempDir, TempFile};

/// A valid config with `storage` as its `service.storage` line (none when
/// empty).
fn config(storage: &str) -> String {
    format!(
        r#"
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:0" }} }} }}
processors:
  contract/checkout:
    match: {{ service.name: checkout }}
    max_error_rate_percent: 5
pipelines:
  checkout: {{ receivers: [otlp], processors: [contract/checkout] }}
service:
  api: {{ endpoint: "127.0.0.1:0" }}
  {storage}
"#
    )
}

fn load(yaml: &str) -> verdict::config::ValidatedConfig {
    verdict::config::load_str(yaml, &std::collections::HashMap::new()).expect("valid")
}

#[test]
fn only_memory_or_a_temp_dir_is_a_tests_own_storage() {
    let why = foreign_storage(&load(&config(""))).expect("the default is refused");
    assert!(why.contains("sqlite://data/verdict.db"), "{why}");
    assert!(why.contains("memory:"), "{why}");
    for shared in [
        "storage: sqlite://data/other.db",
        "storage: sqlite:///var/lib/verdict/verdict.db",
    ] {
        assert!(
            foreign_storage(&load(&config(shared))).is_some(),
            "{shared}"
        );
    }
    let dir = TempDir::new("isolation");
    for own in [
        "storage: \"memory:\"".to_string(),
        format!("storage: sqlite://{}/v.db", dir.0.display()),
    ] {
        assert_eq!(foreign_storage(&load(&config(&own))), None, "{own}");
    }
}

/// The in-process helper refuses before anything is opened.
#[test]
fn start_refuses_a_config_without_storage() {
    let refused = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async { start(&config("")).await.api })
    })
    .join();
    let panic = refused.expect_err("refused");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("data/verdict.db"), "{message}");
}

/// The binary helper refuses a `run` whose pipeline file has no storage of
/// the test's own, however the file is given; other commands are not
/// servers.
#[test]
fn verdict_command_refuses_a_run_without_storage() {
    let file = TempFile::new("isolation", "pipeline.yaml", &config(""));
    let path = file.path.as_os_str();
    let flag = format!("--config={}", file.path.display());
    let runs: [Vec<&OsStr>; 3] = [
        vec![OsStr::new("run"), OsStr::new("-c"), path],
        vec![
            OsStr::new("--log-format"),
            OsStr::new("json"),
            OsStr::new("run"),
            OsStr::new(&flag),
        ],
        // No -c: the default pipeline file, which has no storage.
        vec![OsStr::new("run")],
    ];
    for args in runs {
        let refused = std::panic::catch_unwind(|| verdict_command(&args));
        assert!(refused.is_err(), "{args:?} was not refused");
    }
    verdict_command([OsStr::new("validate"), OsStr::new("-c"), path]);
    let own = TempFile::new(
        "isolation",
        "pipeline.yaml",
        &config("storage: \"memory:\""),
    );
    verdict_command([OsStr::new("run"), OsStr::new("-c"), own.path.as_os_str()]);
}

/// No test starts a server or runs the binary except through the helpers
/// of `main.rs`, which check the storage.
#[test]
fn servers_start_only_through_the_checked_helpers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    // Spelled in pieces so that this file does not match itself.
    let needles = [
        ["CARGO_BIN_EXE_", "verdict"].concat(),
        ["Server::", "start("].concat(),
    ];
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/it is readable") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "main.rs")
            || path.extension().is_none_or(|e| e != "rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        for needle in &needles {
            if text.contains(needle.as_str()) {
                offenders.push(format!("{}: {needle}", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "start servers with crate::start and the binary with crate::verdict_command \
         (they check that the test has storage of its own):\n{}",
        offenders.join("\n")
    );
}
