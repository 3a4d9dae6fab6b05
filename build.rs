//! Compiles `proto/verdict/v1/verdict.proto` with `protox`, a protobuf
//! compiler written in Rust, so building verdict needs no system `protoc`.
//! The generated types derive `serde::Serialize`: their JSON is the JSON of
//! webhooks, log lines and the API (enums by name, see `src/proto.rs`).
//!
//! It also records the compiler's version for `verdict_build_info`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rustc-env=VERDICT_RUSTC_VERSION={}", rustc_version());
    let files = protox::compile(["verdict/v1/verdict.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    config
        .btree_map(["."])
        .type_attribute(".verdict.v1", "#[derive(serde::Serialize)]");
    for field in [
        "VerdictEvent.state",
        "VerdictEvent.previous_state",
        "Run.state",
    ] {
        config.field_attribute(
            format!(".verdict.v1.{field}"),
            "#[serde(serialize_with = \"crate::proto::run_state_name\")]",
        );
    }
    config.field_attribute(
        ".verdict.v1.Window.result",
        "#[serde(serialize_with = \"crate::proto::window_result_name\")]",
    );
    config.compile_fds(files)?;
    Ok(())
}

/// `1.88.0` from `rustc 1.88.0 (6b00bc388 2025-06-23)`, or `unknown`.
fn rustc_version() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
