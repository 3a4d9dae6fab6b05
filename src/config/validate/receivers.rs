//! The `receivers` section: OTLP listeners and probes.

use super::*;

pub(super) fn receivers(section: Option<Value>, errors: &mut Errors) -> Defined<ReceiverSpec> {
    components(
        "receivers",
        "receiver",
        section,
        errors,
        |id, cid, value, path, errors| {
            let kind = match cid.kind {
                "otlp" => deserialize::<RawOtlpReceiver>(value, path, errors)
                    .and_then(|raw| otlp_receiver(raw, path, errors))
                    .map(|otlp| ReceiverKind::Otlp(Box::new(otlp))),
                "probe" => deserialize::<RawProbeReceiver>(value, path, errors)
                    .and_then(|raw| probe(raw, path, errors))
                    .map(|probe| ReceiverKind::Probe(Box::new(probe))),
                _ => return None,
            };
            Some(kind.map(|kind| ReceiverSpec {
                id: id.to_string(),
                kind,
            }))
        },
    )
}

pub(super) fn otlp_receiver(
    raw: RawOtlpReceiver,
    path: &str,
    errors: &mut Errors,
) -> Option<OtlpReceiverSpec> {
    let before = errors.len();
    let protocols_path = join(path, "protocols");
    let (mut grpc_endpoint, mut http_endpoint) = (None, None);
    let (mut grpc_tls, mut http_tls, mut http_cors) = (None, None, None);
    let protocols_given = raw.protocols.is_some();
    if let Some(MapOnly(protocols)) = take(raw.protocols, &protocols_path, errors)
        .or_else(|| (!protocols_given).then(Default::default))
    {
        if protocols.grpc.is_none() && protocols.http.is_none() {
            errors.push(&protocols_path, "at least one of grpc or http is required");
        }
        let mut listener = |listener: Field<MapOnly<RawListener>>,
                            protocol: &str,
                            default: &str| {
            let at = join(&protocols_path, protocol);
            take(listener, &at, errors).map(|MapOnly(l)| {
                    let cors_at = join(&at, "cors");
                    let cors = match protocol {
                        "http" => cors(l.cors, &cors_at, errors),
                        _ => {
                            if l.cors.is_some() {
                                errors.push(
                                    cors_at,
                                    "CORS is for OTLP/HTTP (browsers cannot call gRPC): set it under protocols.http",
                                );
                            }
                            None
                        }
                    };
                    (
                        endpoint(l.endpoint, default, &join(&at, "endpoint"), errors),
                        listener_tls(l.tls, &join(&at, "tls"), errors),
                        cors,
                    )
                })
        };
        (grpc_endpoint, grpc_tls) = match listener(protocols.grpc, "grpc", DEFAULT_GRPC_ENDPOINT) {
            Some((e, t, _)) => (Some(e), t),
            None => (None, None),
        };
        (http_endpoint, http_tls, http_cors) =
            match listener(protocols.http, "http", DEFAULT_HTTP_ENDPOINT) {
                Some((e, t, c)) => (Some(e), t, c),
                None => (None, None, None),
            };
    }
    let max_request_bytes = byte_size(
        raw.max_request_bytes,
        DEFAULT_MAX_REQUEST_BYTES,
        &join(path, "max_request_bytes"),
        errors,
    );
    let bearer_token = take(raw.auth, &join(path, "auth"), errors).and_then(|MapOnly(auth)| {
        token(auth.bearer_token, &join(path, "auth.bearer_token"), errors)
    });
    (errors.len() == before).then_some(OtlpReceiverSpec {
        grpc_endpoint,
        http_endpoint,
        max_request_bytes,
        bearer_token,
        grpc_tls,
        http_tls,
        http_cors,
    })
}

pub(super) fn probe(
    raw: RawProbeReceiver,
    path: &str,
    errors: &mut Errors,
) -> Option<ProbeReceiverSpec> {
    let before = errors.len();
    let at = |key: &str| join(path, key);

    let url = match take(raw.url, &at("url"), errors) {
        Some(text) => parsed(probe_plan::parse_url(&text), &at("url"), errors),
        None => {
            errors.push(at("url"), "required: the URL to send requests to");
            None
        }
    };
    let method = take(raw.method, &at("method"), errors)
        .and_then(|m| parsed(probe_plan::parse_method(&m), &at("method"), errors));
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in string_map(raw.headers, &at("headers"), errors) {
        let header_path = join(&at("headers"), &name);
        if let Some((name, value)) = parsed(probe_plan::header(&name, &value), &header_path, errors)
        {
            headers.append(name, value);
        }
    }
    let body = take(raw.body, &at("body"), errors);

    let requests_given = raw.requests.is_some();
    let requests = int_in(
        raw.requests,
        probe_plan::DEFAULT_REQUESTS as i64,
        1,
        i64::MAX,
        &at("requests"),
        errors,
    );
    let duration = optional_positive_duration(raw.duration, &at("duration"), errors);
    if requests_given && duration.is_some() {
        errors.push(path, "set requests or duration, not both");
    }
    let concurrency = int_in(
        raw.concurrency,
        probe_plan::DEFAULT_CONCURRENCY as i64,
        1,
        probe_plan::MAX_CONCURRENCY as i64,
        &at("concurrency"),
        errors,
    );
    let timeout = positive_duration(
        raw.timeout,
        probe_plan::DEFAULT_TIMEOUT,
        &at("timeout"),
        errors,
    );
    let rate = finite(raw.rate, &at("rate"), errors)
        .and_then(|r| parsed(probe_plan::check_rate(r).map(|()| r), &at("rate"), errors));
    let interval = optional_positive_duration(raw.interval, &at("interval"), errors);
    let conversion_header =
        take(raw.conversion_header, &at("conversion_header"), errors).and_then(|h| {
            parsed(
                probe_plan::parse_header_name(&h),
                &at("conversion_header"),
                errors,
            )
        });

    let allow_4xx = take(raw.allow_4xx, &at("allow_4xx"), errors);

    let resource_given = raw.resource.is_some();
    let mut resource = string_map(raw.resource, &at("resource"), errors);
    if resource.is_empty() && !resource_given {
        errors.push(
            at("resource"),
            "required: the resource attributes its requests count for (e.g. service.name, service.version)",
        );
    }
    match resource.iter().find(|(k, _)| k == SYNTHETIC_ATTRIBUTE) {
        Some((_, v)) if v != "true" => errors.push(
            join(&at("resource"), SYNTHETIC_ATTRIBUTE),
            format!("must be \"true\" (probe traffic is synthetic), got {v:?}"),
        ),
        Some(_) => {}
        None => resource.push((SYNTHETIC_ATTRIBUTE.to_string(), "true".to_string())),
    }

    let tls = client_tls(raw.tls, &at("tls"), errors);
    if errors.len() != before {
        return None;
    }
    let mut plan = ProbePlan::new(url?);
    plan.tls = tls;
    if let Some(method) = method {
        plan.method = method;
    }
    plan.headers = headers;
    plan.body = body.map(bytes::Bytes::from);
    plan.amount = match duration {
        Some(d) => Amount::Duration(d),
        None => Amount::Requests(u64::try_from(requests).unwrap_or(probe_plan::DEFAULT_REQUESTS)),
    };
    plan.concurrency = usize::try_from(concurrency).unwrap_or(probe_plan::DEFAULT_CONCURRENCY);
    plan.timeout = timeout;
    plan.rate = rate;
    if let Some(header) = conversion_header {
        plan.conversion_header = header;
    }
    plan.allow_4xx = allow_4xx.unwrap_or(false);
    Some(ProbeReceiverSpec {
        plan,
        interval,
        resource,
    })
}

/// The value of a parse, or `None` with its message reported at `path`.
pub(super) fn parsed<T>(result: Result<T, String>, path: &str, errors: &mut Errors) -> Option<T> {
    result.map_err(|message| errors.push(path, message)).ok()
}

/// A map of strings (headers, resource attributes), in file order; a value
/// that is not a string, or an empty key, is reported and left out.
pub(super) fn string_map(
    raw: Field<StringMap>,
    path: &str,
    errors: &mut Errors,
) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for (key, value) in take(raw, path, errors).unwrap_or_default() {
        if key.trim().is_empty() {
            errors.push(path, "keys must not be empty");
            continue;
        }
        if let Some(value) = take(Some(value), &join(path, &key), errors) {
            entries.push((key, value.0));
        }
    }
    entries
}
