//! The `service` section: API, storage, budgets and intervals.

use super::*;

/// The `service` section with its defaults; `None` when it has problems.
pub(super) fn service(section: Option<Value>, errors: &mut Errors) -> Option<ServiceSpec> {
    let mark = errors.len();
    let keys = section.as_ref().map(table_keys).unwrap_or_default();
    let spec = service_spec(section, errors);
    errors.file_order_since(mark, "service", &keys);
    spec
}

pub(super) fn service_spec(section: Option<Value>, errors: &mut Errors) -> Option<ServiceSpec> {
    let raw = match section {
        None => RawService::default(),
        Some(value) => deserialize::<RawService>(value, "service", errors)?,
    };
    let before = errors.len();
    let MapOnly(api) = take(raw.api, "service.api", errors).unwrap_or_default();
    let api_endpoint = endpoint(
        api.endpoint,
        DEFAULT_API_ENDPOINT,
        "service.api.endpoint",
        errors,
    );
    let api_token = token(api.token, "service.api.token", errors);
    let api_tls = listener_tls(api.tls, "service.api.tls", errors);
    let public_url = take(api.public_url, "service.api.public_url", errors)
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty());
    if let Some(url) = &public_url {
        if let Err(why) = check_url(url) {
            errors.push("service.api.public_url", why);
        } else if url.contains(['?', '#']) {
            errors.push(
                "service.api.public_url",
                format!("must be a base URL without ?query or #fragment, got {url:?}"),
            );
        }
    }
    let storage = storage(
        take(raw.storage, "service.storage", errors),
        raw.postgres,
        errors,
    );
    let max_inflight_bytes = byte_size(
        raw.max_inflight_bytes,
        DEFAULT_MAX_INFLIGHT_BYTES,
        "service.max_inflight_bytes",
        errors,
    );
    let checkpoint_interval = positive_duration(
        raw.checkpoint_interval,
        DEFAULT_CHECKPOINT_INTERVAL,
        "service.checkpoint_interval",
        errors,
    );
    let metric_expiry = take(raw.metric_expiry, "service.metric_expiry", errors)
        .map_or(DEFAULT_METRIC_EXPIRY, |d| d.0);
    (errors.len() == before).then_some(ServiceSpec {
        api_endpoint,
        api_token,
        api_tls,
        public_url,
        storage,
        max_inflight_bytes,
        checkpoint_interval,
        metric_expiry,
    })
}
