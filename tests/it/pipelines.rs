//! Every example in pipelines/ loads and validates, and `verdict validate`
//! agrees with the library on valid and invalid files.

use std::collections::HashMap;
use std::ffi::OsStr;

fn pipeline_files() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("pipelines/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_pipeline_file_is_valid() {
    let files = pipeline_files();
    assert!(files.len() >= 3, "pipelines/ has the default and examples");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        if let Err(e) = verdict::config::load_str(&text, &HashMap::new()) {
            panic!("{} is invalid:\n{e}", file.display());
        }
        let out =
            crate::verdict_command([OsStr::new("validate"), OsStr::new("-c"), file.as_os_str()])
                .env_remove("VERDICT_INGEST_TOKEN")
                .output()
                .expect("runs");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
}

#[test]
fn validate_reports_every_problem_and_exits_1() {
    let bad = crate::TempFile::new(
        "validate",
        "bad.yaml",
        r#"
receivers:
  otlp: { protocols: { http: { endpoint: "127.0.0.1:0" } } }
processors:
  contract/checkout:
    match: { service.name: checkout }
    max_error_rate_percent: 140
    max_p95_latncy_ms: 5
pipelines:
  p: { receivers: [otlp], processors: [contract/checkout, contract/nope], exporters: [] }
"#,
    );
    let file = &bad.path;
    let out = crate::verdict_command([OsStr::new("validate"), OsStr::new("-c"), file.as_os_str()])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("processors.contract/checkout.max_error_rate_percent: must be between 0 and 100, got 140"),
        "{stderr}"
    );
    assert!(stderr.contains("max_p95_latncy_ms"), "{stderr}");
    assert!(stderr.contains("contract/nope"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid"));

    // `run` with an invalid config prints the problems and exits 1 too.
    let out = crate::verdict_command([OsStr::new("run"), OsStr::new("-c"), file.as_os_str()])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be between 0 and 100"));

    // A missing file is invalid, not a crash.
    let out = crate::verdict_command(["validate", "-c", "/nonexistent/verdict.yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn help_on_every_command() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["validate", "--help"],
        vec!["probe", "--help"],
    ] {
        let out = crate::verdict_command(&args).output().expect("runs");
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--log-format"), "{args:?}: {text}");
    }
}

/// Defaults that protect: every shipped contract rolls back at most 5 % of
/// healthy releases (80 % of its limits), counting releases that time out
/// into ROLLED_BACK, at the traffic its comments assume — as
/// `verdict simulate` shows. (The same engine in-process, 100 runs per file
/// to stay quick in a debug build; benches/RESULTS.md has 1000-run figures.)
#[test]
fn every_pipeline_protects_a_healthy_release() {
    use verdict::simulate::command::{contract, scenarios, Plan};
    use verdict::simulate::{windows_for, Shape, Simulation, DEFAULT_MAX_WINDOWS};
    // Requests per window each file's comments assume.
    let traffic = |name: &str| match name {
        "default.yaml" => 50,
        "strict-slo.yaml" => 1000,
        _ => 200,
    };
    for file in pipeline_files() {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let text = std::fs::read_to_string(&file).expect("readable");
        let config = verdict::config::load_str(&text, &HashMap::new()).expect("valid");
        for c in config.pipelines.iter().flat_map(|p| &p.contracts) {
            let plan = Plan {
                file: file.clone(),
                contract: Some(c.name.clone()),
                requests_per_window: traffic(&name),
                p95_ms: None,
                shape: Shape::Lognormal(0.5),
                error_rate_percent: None,
                conversion_rate_percent: None,
                baseline_share_percent: None,
                baseline_p95_ms: None,
                baseline_error_rate_percent: None,
                runs: 100,
                seed: 7,
                max_windows: DEFAULT_MAX_WINDOWS,
                threads: 2,
                json: true,
            };
            let (spec, window) = contract(&plan).expect("contract");
            let [(_, healthy), _] = scenarios(&plan, &spec).expect("scenarios");
            let s = Simulation {
                spec: &spec,
                window: &window,
                runs: plan.runs,
                seed: plan.seed,
                max_windows: windows_for(&spec, &window, plan.max_windows).0,
                threads: plan.threads,
            }
            .summarize(&healthy, &|| {});
            // At a true rate of 5 %, 11 or more of 100 happen with
            // probability ~1 %.
            assert!(
                s.rolled_back <= 0.10,
                "{name} contract {}: {s:?} of healthy releases rolled back",
                c.name
            );
        }
    }
}
