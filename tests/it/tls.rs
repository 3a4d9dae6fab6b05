//! TLS on every listener of the real binary, with certificates generated
//! here: the OpenTelemetry SDK sends spans over TLS with a client
//! certificate (mutual TLS on OTLP/gRPC), curl reads the API, the status
//! page and `/metrics` over https, a plain-text client is told the port
//! speaks TLS instead of hanging, a client without a certificate is
//! refused, and a renewed certificate is served without a restart.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::durable::Verdict;
use crate::TempDir;

/// A CA and what it signs, as PEM files in a directory.
struct Pki {
    dir: std::path::PathBuf,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &std::path::Path) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "verdict test CA");
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write");
        Pki {
            dir: dir.to_path_buf(),
            ca: Issuer::new(params, key),
        }
    }

    /// Writes `<name>.pem` and `<name>-key.pem`, signed by the CA, for
    /// `localhost` and 127.0.0.1, with `cn` as common name.
    fn issue(&self, name: &str, cn: &str) {
        self.issue_with(name, cn, &["localhost", "127.0.0.1"], None);
    }

    /// [`Pki::issue`] for `hosts`, valid from the first to the second
    /// (year, month, day) of `validity` (rcgen's default when `None`).
    #[allow(clippy::type_complexity)]
    fn issue_with(
        &self,
        name: &str,
        cn: &str,
        hosts: &[&str],
        validity: Option<((i32, u8, u8), (i32, u8, u8))>,
    ) {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("params");
        if let Some(((y0, m0, d0), (y1, m1, d1))) = validity {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("signed");
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(
            self.dir.join(format!("{name}-key.pem")),
            key.serialize_pem(),
        )
        .expect("write");
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

/// Writes `pipeline.yaml` in `dir`: the tests' pipeline with its API
/// served over TLS with `cert` and `key` (`extra`: more `tls:` settings).
fn api_tls_pipeline(
    dir: &std::path::Path,
    cert: &str,
    key: &str,
    extra: &str,
) -> std::path::PathBuf {
    let tls = format!("{{ cert_file: \"{cert}\", key_file: \"{key}\"{extra} }}");
    let yaml = crate::durable::pipeline(&crate::durable::sqlite(dir), &[], "").replace(
        "api: { endpoint: \"127.0.0.1:0\",",
        &format!("api: {{ endpoint: \"127.0.0.1:0\", tls: {tls},"),
    );
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, &yaml).expect("write");
    file
}

/// `verdict validate -c file`, which must find it valid: its stderr (the
/// warnings).
fn valid_with_warnings(file: &std::path::Path) -> String {
    let out = crate::verdict_command(["validate", "-c"])
        .arg(file)
        .output()
        .expect("validate runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

/// curl with `args`; (exit status, stdout, stderr).
fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_speaks_tls_and_otlp_can_require_client_certificates() {
    let dir = TempDir::new("tls");
    let pki = Pki::new(&dir.0);
    pki.issue("server", "verdict one");
    pki.issue("client", "checkout service");
    let tls = format!(
        "{{ cert_file: \"{}\", key_file: \"{}\", reload_interval: 200ms }}",
        pki.path("server.pem"),
        pki.path("server-key.pem")
    );
    let mtls = format!(
        "{{ cert_file: \"{}\", key_file: \"{}\", client_ca_file: \"{}\" }}",
        pki.path("server.pem"),
        pki.path("server-key.pem"),
        pki.path("ca.pem")
    );
    let yaml = crate::durable::pipeline(&crate::durable::sqlite(&dir.0), &[], "")
        .replace(
            "http: { endpoint: \"127.0.0.1:0\" }",
            &format!(
                "http: {{ endpoint: \"127.0.0.1:0\", tls: {tls} }}\n      grpc: {{ endpoint: \"127.0.0.1:0\", tls: {mtls} }}"
            ),
        )
        .replace(
            "prometheus: { endpoint: \"127.0.0.1:0\" }",
            &format!("prometheus: {{ endpoint: \"127.0.0.1:0\", tls: {tls} }}"),
        )
        .replace(
            &format!("api: {{ endpoint: \"127.0.0.1:0\", token: \"{}\" }}", crate::durable::TOKEN),
            &format!("api: {{ endpoint: \"127.0.0.1:0\", tls: {tls} }}"),
        );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let v = Verdict::start(&file);
    let grpc = v.grpc.expect("gRPC");
    let ca = pki.path("ca.pem");

    // The OpenTelemetry SDK over TLS with its client certificate.
    let read = |f: &str| std::fs::read_to_string(pki.dir.join(f)).expect("pem");
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://localhost:{}", grpc.port()))
        .with_tls_config(
            ClientTlsConfig::new()
                .domain_name("localhost")
                .ca_certificate(Certificate::from_pem(read("ca.pem")))
                .identity(Identity::from_pem(
                    read("client.pem"),
                    read("client-key.pem"),
                )),
        )
        .build()
        .expect("exporter");
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("service.name", "checkout"),
                    KeyValue::new("service.version", "tls-1"),
                ])
                .build(),
        )
        .with_simple_exporter(exporter)
        .build();
    let tracer = provider.tracer("tls");
    for _ in 0..20 {
        let end = SystemTime::now();
        let mut span = tracer
            .span_builder("GET /")
            .with_kind(SpanKind::Server)
            .with_start_time(end - Duration::from_millis(5))
            .start(&tracer);
        span.end_with_timestamp(end);
    }
    provider.shutdown().expect("flushed");

    // The API over https sees them.
    let api = format!("https://localhost:{}", v.api.port());
    let run_url = format!("{api}/api/v1/runs/checkout/tls-1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body, err) = curl(&["--cacert", &ca, &run_url]);
        assert_eq!(code, 0, "{err}");
        let run: serde_json::Value = serde_json::from_str(&body).expect("json");
        if run["run"]["samples"] == 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans over TLS not counted: {run}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The status page and /metrics too.
    let (code, page, err) = curl(&["--cacert", &ca, &format!("{api}/")]);
    assert!(code == 0 && page.contains("tls-1"), "{err}{page}");
    let metrics = format!("https://localhost:{}/metrics", v.prometheus.port());
    let (code, text, err) = curl(&["--cacert", &ca, &metrics]);
    assert!(code == 0 && text.contains("verdict_run_state"), "{err}");
    // OTLP/HTTP over TLS needs no client certificate here.
    let (code, _, err) = curl(&[
        "--cacert",
        &ca,
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data",
        "{}",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://localhost:{}/v1/traces", v.http.port()),
    ]);
    assert_eq!(code, 0, "{err}");

    // Plain text on a TLS port: told so at once, no hang.
    let started = Instant::now();
    let (code, body, err) = curl(&[&format!("http://127.0.0.1:{}/healthz", v.api.port())]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        body.contains("This port speaks TLS") || err.contains("This port speaks TLS"),
        "{code} {body} {err}"
    );
    // No client certificate on the mutual-TLS port: refused.
    let (code, _, err) = curl(&[
        "--cacert",
        &ca,
        "--http2-prior-knowledge",
        &format!("https://localhost:{}/", grpc.port()),
    ]);
    assert_ne!(code, 0, "{err}");

    // `verdict probe` over https: with the CA it passes; without it every
    // request fails on the certificate.
    let probe = |extra: &[&str]| {
        let mut args = vec![
            "probe".to_string(),
            "--url".into(),
            format!("{api}/healthz"),
            "-n".into(),
            "20".into(),
            "--max-p95-latency-ms".into(),
            "1000".into(),
            "--max-error-rate-percent".into(),
            "1".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        crate::verdict_command(&args).output().expect("probe runs")
    };
    let trusted = probe(&["--ca-file", &ca]);
    assert_eq!(trusted.status.code(), Some(0), "{trusted:?}");
    let result: serde_json::Value = serde_json::from_slice(&trusted.stdout).expect("json");
    assert_eq!(result["status_codes"]["200"], 20, "{result}");
    let untrusted = probe(&[]);
    assert_eq!(untrusted.status.code(), Some(1), "{untrusted:?}");

    // A renewed certificate is served without a restart.
    let (_, _, before) = curl(&["--cacert", &ca, "-v", &format!("{api}/healthz")]);
    assert!(before.contains("verdict one"), "{before}");
    pki.issue("server", "verdict two");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, after) = curl(&["--cacert", &ca, "-v", &format!("{api}/healthz")]);
        if after.contains("verdict two") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served: {after}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// An https server on loopback with `cert`/`key` that records the bodies
/// POSTed to it; its port.
async fn https_receiver(
    pki: &Pki,
    got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) -> u16 {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(pki.dir.join("receiver.pem"))
        .expect("pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.dir.join("receiver-key.pem"))
        .expect("key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let got = got.clone();
            async move {
                got.lock()
                    .expect("lock")
                    .push(serde_json::from_slice(&body).unwrap_or_default());
                "ok"
            }
        }),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_delivered_over_https_to_a_configured_ca_only() {
    let dir = TempDir::new("tls-webhook");
    let pki = Pki::new(&dir.0);
    pki.issue("receiver", "hooks");
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = https_receiver(&pki, got.clone()).await;
    let trusted = crate::durable::webhook(
        &format!("https://localhost:{port}/hook"),
        &format!(", tls: {{ ca_file: \"{}\" }}", pki.path("ca.pem")),
    );
    // The system's roots alone do not know the test CA.
    let untrusted = crate::durable::webhook(&format!("https://localhost:{port}/hook"), "");
    let yaml = crate::durable::pipeline(
        &crate::durable::sqlite(&dir.0),
        &[
            ("webhook/trusted", trusted),
            ("webhook/untrusted", untrusted),
        ],
        "    decision: windows\n    fail_windows: 1",
    );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, yaml).expect("write");
    let v = Verdict::start(&file);
    v.spans("bad", 40, 500).await;
    v.run_until("bad", "bad to roll back", |r| r["state"] == "ROLLED_BACK")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no event delivered over https");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(got.lock().expect("lock")[0]["state"], "ROLLED_BACK");
    // The other target's attempts fail on the certificate, and say so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, d) = crate::get_json(&v.api("/api/v1/deliveries")).await;
        let errors = d["deliveries"].to_string();
        if errors.contains("webhook/untrusted") && errors.to_lowercase().contains("certificate") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate error reported: {d}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Bad certificates, each told for what it is while nothing stops serving:
/// an expired server certificate is warned about (with its date) by
/// `verdict validate` and at start, `verdict probe` names the certificate
/// problem of a target (expired, unknown issuer, name mismatch) instead of
/// "connection failed", and a re-read certificate file whose key is of
/// another pair, or missing, keeps the previous certificate (logged).
#[tokio::test(flavor = "multi_thread")]
async fn bad_certificates_are_named_and_nothing_stops_serving() {
    let dir = TempDir::new("tls-bad");
    let pki = Pki::new(&dir.0);
    pki.issue_with(
        "server",
        "expired",
        &["localhost", "127.0.0.1"],
        Some(((2020, 1, 1), (2021, 6, 1))),
    );
    let file = api_tls_pipeline(
        &dir.0,
        &pki.path("server.pem"),
        &pki.path("server-key.pem"),
        ", reload_interval: 100ms",
    );

    // `verdict validate`: valid (it is served), with a warning and the date.
    let stderr = valid_with_warnings(&file);
    let expected = format!(
        "warning: service.api.tls.cert_file: the certificate in {} expired on 2021-06-01T00:00:00Z: clients refuse it",
        pki.path("server.pem")
    );
    assert!(stderr.contains(&expected), "{expected:?} not in {stderr}");

    // At start: a WARN line with the date.
    let v = Verdict::start(&file);
    let logged = v.stderr.lock().expect("lock").join("\n");
    assert!(
        logged.contains("\"level\":\"WARN\"") && logged.contains("expired on 2021-06-01T00:00:00Z"),
        "{logged}"
    );
    let api = format!("https://localhost:{}", v.api.port());
    let ca = pki.path("ca.pem");
    let probe = |ca_file: Option<&str>| {
        let mut args = vec![
            "probe".to_string(),
            "--url".into(),
            format!("{api}/healthz"),
            "-n".into(),
            "5".into(),
            "--max-error-rate-percent".into(),
            "1".into(),
            "--json".into(),
        ];
        if let Some(ca) = ca_file {
            args.extend(["--ca-file".to_string(), ca.to_string()]);
        }
        let out = crate::verdict_command(&args).output().expect("probe runs");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        result
    };
    let has_cause = |result: &serde_json::Value, cause: &str| {
        result["requests_failed_by_cause"]
            .as_object()
            .is_some_and(|c| c.keys().any(|k| k.starts_with(cause)))
    };
    let expired = probe(Some(&ca));
    assert_eq!(
        expired["requests_failed_by_cause"]["certificate problem: expired"], 5,
        "{expired}"
    );
    assert!(
        expired["failures"]
            .to_string()
            .contains("all 5 requests failed: certificate problem: expired"),
        "{expired}"
    );
    // A renewed certificate for another host: re-read, and the probe says
    // the name does not match.
    pki.issue_with("server", "elsewhere", &["other.example"], None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let result = probe(Some(&ca));
        if has_cause(&result, "certificate problem: name mismatch") {
            break;
        }
        assert!(Instant::now() < deadline, "no name mismatch: {result}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Without the CA, the issuer is unknown (checked before the name).
    let unknown = probe(None);
    assert!(
        has_cause(&unknown, "certificate problem: unknown issuer"),
        "{unknown}"
    );

    // A key of another pair (a tampered file): refused with its reason,
    // and the previous certificate is still served.
    let other = KeyPair::generate().expect("key");
    std::fs::write(dir.0.join("server-key.pem"), other.serialize_pem()).expect("write");
    let wanted = format!(
        "is not the private key of the certificate in {}",
        pki.path("server.pem")
    );
    // The files are looked at when a client connects: connect until the
    // server has logged a line that `found` recognises.
    let logged = |what: &str, found: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !v.stderr.lock().expect("lock").iter().any(|l| found(l)) {
            curl(&["-k", &format!("{api}/healthz")]);
            assert!(Instant::now() < deadline, "{what} is not logged");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    logged("the mismatched key", &|l| l.contains(&wanted));
    // A missing key file: the same.
    std::fs::remove_file(dir.0.join("server-key.pem")).expect("remove");
    logged("the missing key", &|l| {
        l.contains("cannot read") && l.contains("server-key.pem")
    });
    let still = probe(Some(&ca));
    assert!(
        has_cause(&still, "certificate problem: name mismatch"),
        "the previous certificate is served: {still}"
    );
    let (code, body, err) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &format!("other.example:{}:127.0.0.1", v.api.port()),
        &format!("https://other.example:{}/healthz", v.api.port()),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(body.contains("ok"), "{body}");
}

/// A client refused on a mutual-TLS listener (no client certificate) is
/// logged at the default level as a WARN naming the listener and the
/// reason, at most once per interval however many clients fail.
#[tokio::test(flavor = "multi_thread")]
async fn refused_client_certificates_are_warned_about_once_per_interval() {
    let dir = TempDir::new("tls-refused");
    let pki = Pki::new(&dir.0);
    pki.issue("server", "verdict one");
    let mtls = format!(
        "{{ cert_file: \"{}\", key_file: \"{}\", client_ca_file: \"{}\" }}",
        pki.path("server.pem"),
        pki.path("server-key.pem"),
        pki.path("ca.pem")
    );
    let yaml = crate::durable::pipeline(&crate::durable::sqlite(&dir.0), &[], "").replace(
        "api: { endpoint: \"127.0.0.1:0\",",
        &format!("api: {{ endpoint: \"127.0.0.1:0\", tls: {mtls},"),
    );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let v = Verdict::start(&file);
    let url = format!("https://localhost:{}/healthz", v.api.port());
    let ca = pki.path("ca.pem");
    for _ in 0..5 {
        let (code, _, _) = curl(&["--cacert", &ca, &url]);
        assert_ne!(code, 0, "a client without a certificate is refused");
    }
    let warned = |v: &Verdict| {
        v.stderr
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains("\"level\":\"WARN\"") && l.contains("TLS handshake failed"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while warned(&v).is_empty() {
        assert!(Instant::now() < deadline, "no WARN line");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let lines = warned(&v);
    assert_eq!(lines.len(), 1, "rate-limited: {lines:?}");
    assert!(
        lines[0].contains("\"listener\":\"api\"") && lines[0].contains("certificate"),
        "{}",
        lines[0]
    );
}

/// `verdict runs` and `verdict demo` read the pipeline file's listeners:
/// a listener with `tls:` is reached over https, `--ca-file` trusts a
/// private CA, and a certificate they refuse is named as such — not
/// taken for a server that is not there.
#[tokio::test(flavor = "multi_thread")]
async fn runs_and_demo_reach_tls_listeners_and_name_certificate_problems() {
    let dir = TempDir::new("tls-clients");
    let pki = Pki::new(&dir.0);
    pki.issue("server", "verdict");
    let tls = format!(
        "tls: {{ cert_file: \"{}\", key_file: \"{}\" }}",
        pki.path("server.pem"),
        pki.path("server-key.pem")
    );
    let (api, http) = (crate::durable::free_port(), crate::durable::free_port());
    let yaml = crate::durable::pipeline(&crate::durable::sqlite(&dir.0), &[], "")
        .replace(
            "api: { endpoint: \"127.0.0.1:0\",",
            &format!("api: {{ endpoint: \"127.0.0.1:{api}\", {tls},"),
        )
        .replace(
            "http: { endpoint: \"127.0.0.1:0\" }",
            &format!("http: {{ endpoint: \"127.0.0.1:{http}\", {tls} }}"),
        );
    let file = dir.0.join("pipeline.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let v = Verdict::start(&file);
    let path = file.display().to_string();
    let ca = pki.path("ca.pem");
    let run = |args: &[&str]| {
        let out = crate::verdict_command(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };

    let (code, err) = run(&["runs", "-c", &path]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("https://127.0.0.1:{api}"))
            && err.contains("certificate problem: unknown issuer"),
        "{err}"
    );
    let (code, err) = run(&["runs", "-c", &path, "--ca-file", &ca]);
    assert_eq!(code, Some(0), "{err}");

    let demo = ["demo", "-c", &path, "--duration", "1s", "--rate", "10"];
    let (code, err) = run(&demo);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("https://127.0.0.1:{http}/v1/traces"))
            && err.contains("certificate problem: unknown issuer")
            && !err.contains("listening"),
        "{err}"
    );
    let (code, err) = run(&[&demo[..], &["--ca-file", &ca]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("https://127.0.0.1:{api}/")), "{err}");
    drop(v);
}

/// A certificate whose signature was tampered with loads (rustls does not
/// check it) but is warned about, like an expired one: by `verdict
/// validate` and at start, since every client will refuse it.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_certificate_signature_is_warned_about() {
    use base64::Engine as _;
    use rustls_pki_types::pem::PemObject as _;
    let dir = TempDir::new("tls-tampered");
    let pki = Pki::new(&dir.0);
    pki.issue("server", "tampered");
    let mut der = rustls_pki_types::CertificateDer::from_pem_file(pki.path("server.pem"))
        .expect("PEM")
        .to_vec();
    let last = der.len() - 3;
    der[last] ^= 0x55;
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64"))
        .collect();
    let chain = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n{}",
        lines.join("\n"),
        std::fs::read_to_string(pki.path("ca.pem")).expect("CA")
    );
    std::fs::write(dir.0.join("chain.pem"), chain).expect("write");
    let file = api_tls_pipeline(
        &dir.0,
        &pki.path("chain.pem"),
        &pki.path("server-key.pem"),
        "",
    );
    let stderr = valid_with_warnings(&file);
    assert!(
        stderr.contains(
            "warning: service.api.tls.cert_file: certificate 1 of 2: signature does not verify"
        ) && stderr.contains("clients refuse it"),
        "{stderr}"
    );

    // At start: a WARN line, and the API is served all the same.
    let v = Verdict::start(&file);
    let logged = v.stderr.lock().expect("lock").join("\n");
    assert!(
        logged.contains("\"level\":\"WARN\"") && logged.contains("signature does not verify"),
        "{logged}"
    );
    let (code, _, err) = curl(&[
        "--cacert",
        &pki.path("ca.pem"),
        &format!("https://localhost:{}/healthz", v.api.port()),
    ]);
    assert_ne!(code, 0, "a client trusting its CA refuses it: {err}");
}
