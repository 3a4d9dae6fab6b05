//! Commands whose output is piped into a reader that stops early
//! (`verdict validate --print-config | head -1`): the reader going away
//! ends them quietly, with the exit code they would have had, never with
//! a panic.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn pipeline(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name)
        .display()
        .to_string()
}

/// Runs `command` with its stdout and stderr pipes closed on our side
/// before it writes anything, as `| head -1` leaves them once satisfied;
/// returns its exit code and whether it panicked (a panic message cannot
/// be read once stderr is closed, but its exit code 101 can).
fn with_closed_pipes(mut command: Command) -> Option<i32> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn verdict");
    drop(child.stdout.take());
    drop(child.stderr.take());
    child.wait().expect("wait").code()
}

#[test]
fn validate_and_simulate_end_quietly_when_the_reader_is_gone() {
    let valid = pipeline("default.yaml");
    let cases: Vec<(Vec<String>, i32)> = vec![
        (vec!["validate".into(), "-c".into(), valid.clone()], 0),
        (
            vec![
                "validate".into(),
                "-c".into(),
                valid.clone(),
                "--print-config".into(),
            ],
            0,
        ),
        (
            vec![
                "validate".into(),
                "-c".into(),
                "/nonexistent/pipeline.yaml".into(),
            ],
            1,
        ),
        (
            vec![
                "simulate".into(),
                "-c".into(),
                valid,
                "--requests-per-window".into(),
                "400".into(),
                "--runs".into(),
                "5".into(),
                "--threads".into(),
                "1".into(),
            ],
            0,
        ),
    ];
    for (args, want) in cases {
        let code = with_closed_pipes(crate::verdict_command(&args));
        assert_eq!(code, Some(want), "verdict {}", args.join(" "));
    }
}
