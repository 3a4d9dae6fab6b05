//! Sends synthetic OTLP spans for two releases of a `checkout` service, with
//! the OpenTelemetry SDK, so a new user sees verdict decide within a minute:
//! `2.0.0` is healthy and gets PROMOTED, `2.1.0` is slow and gets ROLLED_BACK.
//!
//! ```sh
//! cargo run --example send_spans                       # gRPC to 127.0.0.1:4317
//! cargo run --example send_spans -- --http http://127.0.0.1:4318 --seconds 90
//! ```

use std::time::{Duration, SystemTime};

use clap::Parser;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// Send demo spans to verdict.
#[derive(Debug, Parser)]
struct Args {
    /// OTLP/gRPC endpoint (used unless --http is given).
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    grpc: String,
    /// OTLP/HTTP base URL (e.g. http://127.0.0.1:4318); switches to HTTP.
    #[arg(long)]
    http: Option<String>,
    /// How long to send.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Requests per second per release.
    #[arg(long, default_value_t = 50)]
    rate: u64,
}

fn provider(args: &Args, version: &str) -> Result<SdkTracerProvider, Box<dyn std::error::Error>> {
    let exporter = match &args.http {
        Some(base) => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')))
            .build()?,
        None => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&args.grpc)
            .build()?,
    };
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("service.version", version.to_string()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_simple_exporter(exporter)
        .build())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // (version, typical latency in ms, one error every N requests)
    let releases = [("2.0.0", 40u64, 500u64), ("2.1.0", 900, 500)];
    let providers = releases
        .iter()
        .map(|(v, _, _)| provider(&args, v))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "sending {} spans/s for checkout 2.0.0 (healthy) and 2.1.0 (slow) for {}s…",
        args.rate, args.seconds
    );
    let handle = {
        let providers = providers.clone();
        let (seconds, rate) = (args.seconds, args.rate);
        tokio::task::spawn_blocking(move || {
            let mut n: u64 = 0;
            for _ in 0..seconds * 10 {
                for (p, (_, latency, error_every)) in providers.iter().zip(releases) {
                    let tracer = p.tracer("send_spans");
                    for _ in 0..rate.div_ceil(10) {
                        n += 1;
                        let end = SystemTime::now();
                        let jitter = (n * 7919) % (latency / 2 + 1);
                        let start = end - Duration::from_millis(latency + jitter);
                        let mut span = tracer
                            .span_builder("POST /api/checkout")
                            .with_kind(SpanKind::Server)
                            .with_start_time(start)
                            .with_attributes([
                                KeyValue::new("http.route", "/api/checkout"),
                                KeyValue::new("validation.converted", n.is_multiple_of(4)),
                            ])
                            .start(&tracer);
                        if n.is_multiple_of(error_every) {
                            span.set_status(Status::error("payment declined"));
                        }
                        span.end_with_timestamp(end);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    handle.await?;
    for p in providers {
        tokio::task::spawn_blocking(move || p.shutdown()).await??;
    }
    println!("done");
    Ok(())
}
