use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use rand::SeedableRng as _;

use super::*;

fn decode(bytes: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(bytes).expect("a valid export request")
}

fn attr<'a>(
    list: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a any_value::Value> {
    list.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[test]
fn a_bad_canary_is_slower_and_fails_more_than_the_current_release() {
    let releases = Plan::releases("2.0.0", "2.1.0", Canary::Bad);
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut rng = SmallRng::seed_from_u64(3);
    let mut summary = Vec::new();
    for release in &releases {
        let request = decode(&export_request("checkout", release, 4000, now, &mut rng));
        let resource = &request.resource_spans[0];
        let attributes = &resource.resource.as_ref().expect("resource").attributes;
        assert_eq!(
            attr(attributes, "service.name"),
            Some(&any_value::Value::StringValue("checkout".into()))
        );
        assert_eq!(
            attr(attributes, "service.version"),
            Some(&any_value::Value::StringValue(release.version.clone()))
        );
        let spans = &resource.scope_spans[0].spans;
        assert_eq!(spans.len(), 4000);
        let now_ns = 1_800_000_000u64 * 1_000_000_000;
        let mut slow = 0;
        let mut errors = 0;
        for s in spans {
            assert_eq!(
                s.kind,
                opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
            );
            assert!(s.end_time_unix_nano <= now_ns && s.end_time_unix_nano > now_ns - 100_000_000);
            assert!(s.start_time_unix_nano < s.end_time_unix_nano);
            assert_eq!((s.trace_id.len(), s.span_id.len()), (16, 8));
            let failed = s.status.as_ref().is_some_and(|st| st.code == 2);
            let code = attr(&s.attributes, "http.response.status_code");
            assert_eq!(
                code,
                Some(&any_value::Value::IntValue(if failed { 500 } else { 200 }))
            );
            errors += u64::from(failed);
            slow += u64::from(s.end_time_unix_nano - s.start_time_unix_nano > 500_000_000);
        }
        summary.push((slow as f64 / 4000.0, errors as f64 / 4000.0));
    }
    let (current, canary) = (summary[0], summary[1]);
    // The current release: almost nothing slower than the default
    // contract's 500 ms, about 0.2 % errors.
    assert!(current.0 < 0.01 && current.1 < 0.01, "{current:?}");
    // The bad canary: most requests slower than 500 ms, about 4 % errors.
    assert!(canary.0 > 0.5 && canary.1 > 0.02, "{canary:?}");
}

#[test]
fn a_good_canary_is_the_current_release_again() {
    let releases = Plan::releases("2.0.0", "2.1.0", Canary::Good);
    assert_eq!(releases[0].side, releases[1].side);
    assert_eq!(releases[1].version, "2.1.0");
}

#[test]
fn the_traces_path_is_added_once() {
    for (endpoint, url) in [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
        (
            "https://otlp.example/v1/traces",
            "https://otlp.example/v1/traces",
        ),
        ("http://gw.example/otlp", "http://gw.example/otlp/v1/traces"),
    ] {
        assert_eq!(traces_url(&endpoint.parse().expect("URL")), url);
    }
}

/// A 404 is most likely the wrong listener: the error says where to look.
#[test]
fn a_404_gets_the_hint_about_the_listener() {
    let refused = |status| {
        DemoError::Refused {
            url: "http://127.0.0.1:8686/v1/traces".into(),
            status,
            body: "no such endpoint".into(),
        }
        .to_string()
    };
    assert!(refused(404).ends_with(
        "answered 404: no such endpoint (is `verdict run` listening there? --endpoint sets the OTLP/HTTP address)"
    ));
    assert!(refused(400).ends_with("answered 400: no such endpoint"));
}
