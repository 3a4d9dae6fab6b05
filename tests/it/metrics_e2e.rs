//! End to end with a real SDK for `source: metrics`: the OpenTelemetry Rust
//! SDK records known latencies into `http.server.request.duration` with the
//! default explicit-bucket aggregation and with the base-2 exponential one,
//! cumulative temporality, and its periodic reader exports them over
//! OTLP/gRPC and OTLP/HTTP to the real server with 1 s windows.
//!
//! Every export carries exactly one batch of the same known latencies (the
//! test records a batch, then flushes), so every window holds whole copies of
//! that batch and its exact p95 and error rate are known: each window's p95
//! must lie within the bound the window reports, its error rate must be
//! exact, its conversions at most one batch off (the SDK stamps the counter
//! apart from the histogram), and each release must reach the verdict its
//! data calls for.
//!
//! The periodic reader exports from its own thread, which has no Tokio
//! context for the tonic and reqwest clients: [`OnRuntime`] runs each export
//! on the test's runtime. Its timer is set long and the test flushes it, so
//! that an export never falls in the middle of a batch.

use std::time::Duration;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, PeriodicReader, SdkMeterProvider, Stream, Temporality,
};
use opentelemetry_sdk::Resource;

use crate::{config, final_run_is, start};

/// Runs a push exporter's exports on a Tokio runtime.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    pub(crate) inner: E,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    fn export(
        &self,
        metrics: &ResourceMetrics,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Called from the reader's own thread (not a runtime thread), so
        // blocking on the runtime here is allowed.
        let result = self.runtime.block_on(self.inner.export(metrics));
        std::future::ready(result)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Buckets {
    /// The SDK's default explicit bounds (0, 5, 10, 25, 50, 75, 100, 250…),
    /// recorded in milliseconds, which those bounds are made for.
    Explicit,
    /// Base-2 exponential in seconds (the semantic-convention unit), with at
    /// most this many buckets.
    Exponential(u32),
}

#[derive(Clone, Copy)]
struct Release {
    version: &'static str,
    grpc: bool,
    buckets: Buckets,
    /// Added to every latency of the batch (ms).
    slower_by: f64,
    /// Requests of each batch of 40 that fail (HTTP 500).
    errors: usize,
}

/// One batch: 40 requests of 20, 21, … 59 ms (plus `slower_by`). Its
/// nearest-rank p95 (rank 38) is 57 ms, and any number of whole copies of
/// it has the same p95.
const BATCH: usize = 40;

/// Requests of each batch that convert: a quarter.
const CONVERTED: usize = BATCH / 4;

fn latencies(r: &Release) -> Vec<f64> {
    (0..BATCH).map(|i| 20.0 + i as f64 + r.slower_by).collect()
}

fn exact_p95(r: &Release) -> f64 {
    let mut v = latencies(r);
    v.sort_by(f64::total_cmp);
    v[(0.95 * BATCH as f64).ceil() as usize - 1]
}

fn provider(r: &Release, grpc: &str, http: &str) -> SdkMeterProvider {
    let exporter = if r.grpc {
        opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{grpc}"))
            .with_temporality(Temporality::Cumulative)
            .build()
    } else {
        opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("http://{http}/v1/metrics"))
            .with_temporality(Temporality::Cumulative)
            .build()
    }
    .expect("exporter builds");
    let exporter = OnRuntime {
        inner: exporter,
        runtime: tokio::runtime::Handle::current(),
    };
    let reader = PeriodicReader::builder(exporter)
        // The test flushes after each batch; the timer never fires first.
        .with_interval(Duration::from_secs(3600))
        .build();
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("service.version", r.version),
        ])
        .build();
    let mut builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader);
    if let Buckets::Exponential(max_size) = r.buckets {
        builder = builder.with_view(move |i: &Instrument| {
            (i.name() == "http.server.request.duration")
                .then(|| {
                    Stream::builder()
                        .with_aggregation(Aggregation::Base2ExponentialHistogram {
                            max_size,
                            max_scale: 20,
                            record_min_max: true,
                        })
                        .build()
                        .ok()
                })
                .flatten()
        });
    }
    builder.build()
}

/// Records one batch of the release's latencies.
fn record_batch(provider: &SdkMeterProvider, r: &Release) {
    let meter = provider.meter("io.opentelemetry.http");
    let unit = match r.buckets {
        Buckets::Explicit => "ms",
        Buckets::Exponential(_) => "s",
    };
    let histogram = meter
        .f64_histogram("http.server.request.duration")
        .with_unit(unit)
        .build();
    let conversions = meter.u64_counter("validation.conversions").build();
    for (i, ms) in latencies(r).into_iter().enumerate() {
        // The first request of every `step` fails, `errors` of them.
        let step = BATCH / r.errors.max(1);
        let status: i64 = if i.is_multiple_of(step) && i / step < r.errors {
            500
        } else {
            200
        };
        let attrs = [
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/api/checkout"),
            KeyValue::new("http.response.status_code", status),
        ];
        let value = if unit == "s" { ms / 1000.0 } else { ms };
        histogram.record(value, &attrs);
    }
    // A quarter of the requests convert.
    conversions.add(CONVERTED as u64, &[]);
}

/// Judged windows hold at least 4 batches, so one batch of conversions
/// crossing into the next window (see the per-window check below) leaves
/// at least 30 of 160 requests converted: above the 15 % minimum.
const CONTRACT: &str = r#"
    match: { service.name: checkout }
    subject_by: [service.name, service.version]
    source: metrics
    max_p95_latency_ms: 100
    max_error_rate_percent: 5
    min_conversion_rate_percent: 15
    min_samples: 200
    decision: windows
    min_window_samples: 160
    pass_windows: 2
    fail_windows: 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_histograms_reach_their_verdicts_within_the_reported_bounds() {
    let server = start(&config(CONTRACT, "size: 1s, allowed_lateness: 300ms")).await;
    let (grpc, http, api) = (server.grpc[0].1, server.http[0].1, server.api);

    let releases = [
        Release {
            version: "3.0.0",
            grpc: true,
            buckets: Buckets::Explicit,
            slower_by: 0.0,
            errors: 1,
        },
        Release {
            version: "3.1.0",
            grpc: false,
            // Few buckets: the SDK lands on scale 3, where the sketch's
            // bound is 4.3 %, and the window must say so.
            buckets: Buckets::Exponential(20),
            slower_by: 0.0,
            errors: 1,
        },
        Release {
            version: "3.2.0",
            grpc: true,
            buckets: Buckets::Exponential(160),
            slower_by: 200.0,
            errors: 1,
        },
        Release {
            version: "3.3.0",
            grpc: false,
            buckets: Buckets::Explicit,
            slower_by: 0.0,
            errors: 8,
        },
    ];
    let providers: Vec<SdkMeterProvider> = releases
        .iter()
        .map(|r| provider(r, &grpc.to_string(), &http.to_string()))
        .collect();

    // About 4.5 s of traffic: one batch per release every 100 ms, each
    // exported on its own.
    let sender = {
        let providers = providers.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..45 {
                for (p, r) in providers.iter().zip(&releases) {
                    record_batch(p, r);
                    p.force_flush().expect("export succeeds");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    sender.await.expect("sender finishes");

    let expect = [
        ("3.0.0", "PROMOTED", "consecutive windows"),
        ("3.1.0", "PROMOTED", "consecutive windows"),
        ("3.2.0", "ROLLED_BACK", "exceeds threshold 100ms"),
        ("3.3.0", "ROLLED_BACK", "exceeds threshold 5%"),
    ];
    for (r, (version, state, reason)) in releases.iter().zip(expect) {
        let body = final_run_is(api, &format!("checkout/{version}"), state, reason).await;

        let exact = exact_p95(r);
        let error_rate = r.errors as f64 * 100.0 / BATCH as f64;
        let windows = body["windows"].as_array().expect("window history");
        let with_data: Vec<&serde_json::Value> = windows
            .iter()
            .filter(|w| w["samples"].as_u64().unwrap_or(0) > 0)
            .collect();
        assert!(!with_data.is_empty(), "{version} has windows with data");
        let mut worst = 0.0f64;
        let (mut converted_total, mut samples_total) = (0i64, 0i64);
        for w in &with_data {
            let samples = w["samples"].as_u64().unwrap_or(0);
            assert_eq!(
                samples % BATCH as u64,
                0,
                "{version}: whole batches only: {w}"
            );
            let p95 = w["p95_latency_ms"].as_f64().unwrap_or(f64::NAN);
            let bound = w["p95_latency_error_ms"].as_f64().unwrap_or(f64::NAN);
            assert!(
                (p95 - exact).abs() <= bound,
                "{version}: window p95 {p95} vs exact {exact}, bound {bound}: {w}"
            );
            let rate = w["error_rate_percent"].as_f64().unwrap_or(f64::NAN);
            assert!(
                (rate - error_rate).abs() < 1e-9,
                "{version}: error rate {rate}: {w}"
            );
            // The SDK stamps each instrument with its own clock reading
            // when it collects, the counter just after the histogram: the
            // two can fall on either side of a window boundary, and then
            // one batch's conversions count in the next window (design §3:
            // conversions are matched to requests by window). So a window
            // holds whole batches of conversions, at most one batch off its
            // requests' quarter, and only ever moved forward in time.
            let conv = w["conversion_rate_percent"].as_f64().unwrap_or(f64::NAN);
            let converted = (conv * samples as f64 / 100.0).round() as i64;
            assert!(
                (conv * samples as f64 / 100.0 - converted as f64).abs() < 1e-6
                    && converted % CONVERTED as i64 == 0
                    && (converted - samples as i64 / 4).abs() <= CONVERTED as i64,
                "{version}: conversion rate {conv}: {w}"
            );
            converted_total += converted;
            samples_total += samples as i64;
            let rel = w["latency_relative_error"].as_f64().unwrap_or(1.0);
            worst = worst.max(rel);
            match r.buckets {
                Buckets::Explicit => {
                    assert_eq!(w["latency_approximate"], true, "{w}");
                    // 57 ms lies in the SDK's (50, 75] ms bucket.
                    assert!(bound >= 25.0, "{version}: bucket width bound {bound}");
                }
                Buckets::Exponential(max_size) => {
                    assert_eq!(w["latency_approximate"], false, "{w}");
                    if max_size == 20 {
                        assert!(rel > 0.04, "{version}: coarse scale bound {rel}");
                    }
                    assert!(bound <= rel * exact * 1.1, "{version}: bound {bound}");
                }
            }
        }
        // Moved forward only: the history lacks at most the one batch that
        // crossed out of its last window.
        let exact_total = samples_total / 4;
        assert!(
            converted_total <= exact_total && converted_total >= exact_total - CONVERTED as i64,
            "{version}: {converted_total} conversions for {samples_total} requests"
        );
        // The run's bound is the worst of its windows'.
        let run_rel = body["run"]["latency_relative_error"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(
            run_rel >= worst && run_rel > 0.0,
            "{version}: run bound {run_rel} < {worst}"
        );
        assert_eq!(
            body["run"]["latency_approximate"],
            r.buckets == Buckets::Explicit,
            "{version}"
        );
    }

    for p in providers {
        let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
    }
    server
        .shutdown(Duration::from_secs(10))
        .await
        .expect("clean shutdown");
}
