//! The real binary as a child process: its `log` exporter writes verdict
//! events as JSON lines on stdout, and it stops cleanly on SIGTERM (exit 0,
//! listeners closed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_with_exit_0_and_closes_listeners() {
    let pipeline = crate::TempFile::new(
        "sigterm",
        "pipeline.yaml",
        &crate::config(
            "    match: { service.name: x }\n    max_p95_latency_ms: 10\n",
            "size: 1s",
        ),
    );
    let file = &pipeline.path;
    let mut child = crate::spawn_run(file);
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    let events = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut http = None;
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
                if v["fields"]["component"] == "otlp-http" {
                    http = Some(a);
                }
            }
        }
        if v["fields"]["message"] == "verdict is ready." {
            break;
        }
    }
    assert_eq!(addrs.len(), 4, "grpc, http, prometheus and api listen");
    post_span(http.expect("the OTLP/HTTP listener was logged"));
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
    // The first sample started a run: one §5.5 event on stdout.
    let events = events.join().expect("stdout reader");
    let event: serde_json::Value = events
        .iter()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON event on stdout: {events:?}"));
    assert_eq!(event["state"], "VALIDATING", "{event}");
    assert_eq!(event["previous_state"], "PENDING");
    assert_eq!(event["contract"], "checkout");
    assert_eq!(event["subject"]["service.name"], "x");
    assert!(event["event_id"].as_str().is_some_and(|id| id.len() == 26));
    assert!(event["emitted_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
}

/// One OTLP/JSON span over plain HTTP/1.1.
fn post_span(addr: SocketAddr) {
    let now = crate::now_ns();
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "x"}},
            {"key": "service.version", "value": {"stringValue": "1"}}]},
        "scopeSpans": [{"spans": [{"kind": 2, "startTimeUnixNano": (now - 1_000_000).to_string(), "endTimeUnixNano": now.to_string()}]}]
    }]})
    .to_string();
    let mut stream = TcpStream::connect(addr).expect("connects");
    write!(
        stream,
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("writes");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reads");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
