//! `verdict probe` against wrk, the reference HTTP load generator, on the
//! same local endpoints in the same run (`cargo bench --bench probe`).
//!
//! 1. Throughput: requests per second at concurrency 64 against a trivial
//!    endpoint (answers `ok` at once). Goal: the probe sustains ≥ 70 % of
//!    wrk's rate.
//! 2. Measurement: p95 latency at concurrency 64 against an endpoint whose
//!    latency is spread evenly over 5–25 ms (so the true p95 is about 24 ms
//!    whatever the load generator's own speed). Goal: the probe's p95 within
//!    5 % of wrk's.
//!
//! Both tools are separate processes (the real `verdict` binary, built with
//! the bench profile, and `/usr/bin/wrk -t2`) against one in-process axum
//! server with two worker threads; each measurement runs five times,
//! alternating wrk and the probe so that both see the same background load,
//! and every figure is printed with the median of the per-round ratios.
//! `VERDICT_BENCH_SECONDS` sets the length of each measurement (default 5),
//! `VERDICT_BENCH_ROUNDS` the number of rounds (default 5). Without wrk (`apt-get install wrk`) the
//! bench says so and exits.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CONCURRENCY: u32 = 64;
/// Rounds by default; `VERDICT_BENCH_ROUNDS` overrides.
const ROUNDS: usize = 5;

/// A wrk script that prints what its summary leaves out: the p95.
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests %d errors %d p95_us %d\n",
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(95.0)))
end
"#;

/// One tool's figures for one measurement.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p95_ms: f64,
    errors: u64,
}

fn serve() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let counter = Arc::new(AtomicU64::new(0));
            let app = axum::Router::new()
                .route("/", axum::routing::get(|| async { "ok" }))
                .route(
                    "/spread",
                    axum::routing::get(move || {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        async move {
                            // An even spread over 5–25 ms in 0.1 ms steps,
                            // scrambled so neighbours differ.
                            let tenth_ms = (n.wrapping_mul(7919)) % 201;
                            tokio::time::sleep(Duration::from_micros(5_000 + tenth_ms * 100)).await;
                            "ok"
                        }
                    }),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    rx.recv().expect("server address")
}

fn wrk(url: &str, seconds: u64, script: &std::path::Path) -> Figures {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CONCURRENCY}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let bench: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("no BENCH line in wrk output:\n{text}"))
        .split_whitespace()
        .collect();
    let field = |name: &str| -> f64 {
        bench
            .iter()
            .position(|w| *w == name)
            .and_then(|i| bench.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Figures {
        rps,
        p95_ms: field("p95_us") / 1000.0,
        errors: field("errors") as u64,
    }
}

fn probe(url: &str, seconds: u64) -> Figures {
    let out = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args([
            "probe",
            "--json",
            "--url",
            url,
            "--duration",
            &format!("{seconds}s"),
            "--concurrency",
            &CONCURRENCY.to_string(),
            // Only the figures are read; a probe needs a threshold to run.
            "--max-error-rate-percent",
            "100",
        ])
        .output()
        .expect("verdict probe runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verdict probe printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Figures {
        rps: json["requests_per_second"].as_f64().unwrap_or(f64::NAN),
        p95_ms: json["p95_latency_ms"].as_f64().unwrap_or(f64::NAN),
        errors: json["requests_failed"].as_u64().unwrap_or(u64::MAX),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk not found (apt-get install wrk): probe bench skipped");
        return;
    }
    let seconds: u64 = std::env::var("VERDICT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rounds: usize = std::env::var("VERDICT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(ROUNDS);
    let script = std::env::temp_dir().join(format!("verdict-bench-{}.lua", std::process::id()));
    std::fs::write(&script, WRK_SCRIPT).expect("write wrk script");
    let addr = serve();
    println!(
        "probe vs wrk: concurrency {CONCURRENCY}, {seconds}s per run, {rounds} rounds, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, path) in [("trivial", "/"), ("spread 5-25ms", "/spread")] {
        let url = format!("http://{addr}{path}");
        let (mut w, mut p) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let wf = wrk(&url, seconds, &script);
            let pf = probe(&url, seconds);
            println!(
                "  {name:<14} round {}: wrk {:>9.0} req/s p95 {:>7.3} ms ({} errors) | probe {:>9.0} req/s p95 {:>7.3} ms ({} errors)",
                round + 1,
                wf.rps,
                wf.p95_ms,
                wf.errors,
                pf.rps,
                pf.p95_ms,
                pf.errors
            );
            w.push(wf);
            p.push(pf);
        }
        let rate = median(w.iter().zip(&p).map(|(w, p)| p.rps / w.rps).collect());
        let p95 = median(
            w.iter()
                .zip(&p)
                .map(|(w, p)| p.p95_ms / w.p95_ms - 1.0)
                .collect(),
        );
        println!(
            "  {name:<14} median of rounds: probe rate = {:.1} % of wrk's, probe p95 {:+.1} % from wrk's",
            rate * 100.0,
            p95 * 100.0
        );
    }
    let _ = std::fs::remove_file(&script);
}
