//! `verdict runs`: the real binary reading a live server's API, as a table,
//! as JSON, and followed with `--watch` until a run is decided.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::durable::{sqlite, write_pipeline, Verdict};
use crate::{get_json, verdict_command, TempDir};

/// `verdict runs ARGS…` against `api`, waited for.
async fn runs(args: &[&str]) -> Output {
    let args: Vec<String> = std::iter::once("runs".to_string())
        .chain(args.iter().map(|a| (*a).to_string()))
        .collect();
    tokio::task::spawn_blocking(move || verdict_command(&args).output().expect("runs"))
        .await
        .expect("joined")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_shows_the_api_as_tables_json_and_follows_a_run() {
    let dir = TempDir::new("console");
    let file = write_pipeline(
        &dir,
        &[],
        "    min_samples: 100\n    decision: windows\n    pass_windows: 3\n    fail_windows: 1",
    );
    let v = Verdict::start(&file);
    let api = format!("http://{}", v.api);
    v.spans("bad", 50, 500).await;
    v.run_until("bad", "bad to roll back", |r| r["state"] == "ROLLED_BACK")
        .await;
    v.spans("2.0/rc%1", 30, 10).await;
    v.run_until("2.0%252Frc%25251", "the escaped subject to validate", |r| {
        r["state"] == "VALIDATING"
    })
    .await;

    // Every run, as a table.
    let all = runs(&["--api", &api]).await;
    assert_eq!(all.status.code(), Some(0), "{all:?}");
    let table = stdout(&all);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("CONTRACT") && lines[0].contains("STATE"),
        "{table}"
    );
    let bad = lines
        .iter()
        .find(|l| l.contains(" bad "))
        .expect("bad listed");
    assert!(
        bad.contains("ROLLED_BACK") && bad.contains("500 ms"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("2.0%2Frc%251") && l.contains("VALIDATING")),
        "{table}"
    );

    // One run as JSON is the API's answer.
    let one = runs(&["checkout", "bad", "--api", &api, "--json"]).await;
    assert_eq!(one.status.code(), Some(0), "{one:?}");
    let json: Value = serde_json::from_str(&stdout(&one)).expect("json");
    let (_, from_api) = get_json(&v.api("/api/v1/runs/checkout/bad")).await;
    assert_eq!(json["run_id"], from_api["run_id"]);
    assert_eq!(json["windows"], from_api["windows"]);
    assert_eq!(json["transitions"], from_api["transitions"]);

    // One run as text: checks, windows and the transition.
    let one = runs(&["checkout", "bad", "--api", &api]).await;
    let text = stdout(&one);
    for want in [
        "state:    ROLLED_BACK",
        "WINDOW (UTC)",
        "fail",
        "-> ROLLED_BACK",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    // A value with '/' and '%' reaches its own run.
    let escaped = runs(&["checkout", "2.0%2Frc%251", "--api", &api, "--json"]).await;
    let json: Value = serde_json::from_str(&stdout(&escaped)).expect("json");
    assert_eq!(json["subject_attributes"]["service.version"], "2.0/rc%1");

    // Watching a decided run ends at once, with its verdict as exit code.
    let watched = runs(&["checkout", "bad", "--api", &api, "--watch"]).await;
    assert_eq!(watched.status.code(), Some(1), "{watched:?}");

    // Watching an open run follows it until it is promoted: exit 0.
    let follow = tokio::spawn(async move {
        runs(&[
            "checkout",
            "good",
            "--api",
            &api,
            "--watch",
            "--interval",
            "200ms",
        ])
        .await
    });
    for _ in 0..6 {
        v.spans("good", 60, 10).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        if follow.is_finished() {
            break;
        }
    }
    let followed = tokio::time::timeout(Duration::from_secs(30), follow)
        .await
        .expect("the watch ends once the run is promoted")
        .expect("joined");
    assert_eq!(followed.status.code(), Some(0), "{followed:?}");
    let text = stdout(&followed);
    // It followed the run through refreshes, and stopped at the verdict.
    assert!(text.matches("as of ").count() >= 2, "{text}");
    let last = text.rsplit("checkout good").next().unwrap_or("");
    assert!(last.contains("state:    PROMOTED"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_finds_the_api_in_the_pipeline_file_and_names_its_errors() {
    let dir = TempDir::new("console-config");
    let port = crate::durable::free_port();
    let yaml = crate::durable::pipeline(&sqlite(&dir.0), &[], "").replace(
        "api: { endpoint: \"127.0.0.1:0\"",
        &format!("api: {{ endpoint: \"0.0.0.0:{port}\""),
    );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml).expect("write");
    let v = Verdict::start(&file);
    let path = file.to_string_lossy().into_owned();
    let listed = runs(&["-c", &path, "checkout"]).await;
    assert_eq!(listed.status.code(), Some(0), "{listed:?}");
    assert_eq!(stdout(&listed), "no runs yet\n");

    let unknown = runs(&["-c", &path, "nope"]).await;
    assert_eq!(unknown.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("404") && err.contains("unknown contract"),
        "{err}"
    );
    drop(v);
    let down = runs(&["-c", &path]).await;
    assert_eq!(down.status.code(), Some(2));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(
        err.contains("cannot reach the verdict API") && err.contains("onnection refused"),
        "{err}"
    );
    let missing = runs(&["-c", "/nonexistent/pipeline.yaml"]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--api URL"));
}

/// Outside a checkout (no `pipelines/default.yaml` here, no `-c`), the
/// API is looked for at its documented default address.
#[tokio::test(flavor = "multi_thread")]
async fn runs_outside_a_checkout_asks_the_default_address() {
    let dir = TempDir::new("console-elsewhere");
    let out = tokio::task::spawn_blocking(move || {
        verdict_command(["runs", "--json"])
            .current_dir(&dir.0)
            .env_remove("VERDICT_API")
            .output()
            .expect("runs")
    })
    .await
    .expect("joined");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("cannot read"), "{err}");
    // Whatever listens there (usually nothing): it was asked.
    match out.status.code() {
        Some(0) => assert!(stdout(&out).contains("\"runs\""), "{out:?}"),
        _ => assert!(err.contains("http://127.0.0.1:8686/api/v1/runs"), "{err}"),
    }
}

/// A release named with a right-to-left override (`\u{202e}0.1.2`) would
/// display as `2.1.0`, another release's name: the table, the status page
/// and the page's title show the override escaped, never raw.
#[tokio::test(flavor = "multi_thread")]
async fn bidi_controls_in_subjects_are_shown_escaped() {
    let dir = TempDir::new("console-bidi");
    let file = write_pipeline(&dir, &[], "    decision: windows\n    pass_windows: 100");
    let v = Verdict::start(&file);
    let api = format!("http://{}", v.api);
    let spoof = "\u{202e}0.1.2";
    v.spans(spoof, 5, 10).await;
    v.run_until(spoof, "the run to validate", |r| r["state"] == "VALIDATING")
        .await;
    let table = stdout(&runs(&["--api", &api]).await);
    let html = |path: &'static str| {
        let url = format!("{api}{path}");
        async move {
            let resp = reqwest::get(url).await.expect("page");
            resp.text().await.expect("body")
        }
    };
    let overview = html("/").await;
    let page = html("/runs/checkout/%E2%80%AE0.1.2").await;
    assert!(
        page.contains(r"<title>checkout \u{202e}0.1.2 · verdict</title>"),
        "{page}"
    );
    for shown in [&table, &overview, &page] {
        assert!(shown.contains(r"\u{202e}0.1.2"), "{shown}");
        assert!(!shown.contains('\u{202e}'), "{shown}");
    }
}
