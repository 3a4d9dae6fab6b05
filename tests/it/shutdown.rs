//! The real binary stops cleanly on SIGTERM: exit 0, listeners closed.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_with_exit_0_and_closes_listeners() {
    let dir = std::env::temp_dir().join(format!("verdict-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("pipeline.yaml");
    std::fs::write(
        &file,
        crate::config(
            "    match: { service.name: x }\n    max_p95_latency_ms: 10\n",
            "size: 1s",
        ),
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["--log-format", "json", "run", "-c"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "server did not become ready");
        let Some(Ok(line)) = lines.next() else {
            panic!("server exited before it was ready");
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "Listening." {
            if let Some(a) = v["fields"]["addr"].as_str().and_then(|a| a.parse().ok()) {
                addrs.push(a);
            }
        }
        if v["fields"]["message"] == "verdict is ready." {
            break;
        }
    }
    assert_eq!(addrs.len(), 4, "grpc, http, prometheus and api listen");
    for a in &addrs {
        TcpStream::connect_timeout(a, Duration::from_secs(1)).expect("listening");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code.code(), Some(0), "exit code after SIGTERM");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("verdict stopped.")),
        "{rest:?}"
    );
    for a in &addrs {
        assert!(
            TcpStream::connect_timeout(a, Duration::from_millis(500)).is_err(),
            "{a} still open"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
