//! Compiles `proto/verdict/v1/verdict.proto` with `protox`, a protobuf
//! compiler written in Rust, so building verdict needs no system `protoc`.
//! The generated types derive `serde::Serialize`: their JSON is the JSON of
//! webhooks, log lines and the API (enums by name, see `src/proto.rs`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
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
