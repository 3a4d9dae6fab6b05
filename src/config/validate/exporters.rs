//! The `exporters` section: Prometheus, log, webhooks and Unleash; and
//! `service.storage`.

use super::*;

pub(super) fn exporters(section: Option<Value>, errors: &mut Errors) -> Defined<ExporterSpec> {
    components(
        "exporters",
        "exporter",
        section,
        errors,
        |id, cid, value, path, errors| {
            let kind = match cid.kind {
                "prometheus" => deserialize::<RawPrometheus>(value, path, errors).and_then(|raw| {
                    let before = errors.len();
                    let endpoint = endpoint(
                        raw.endpoint,
                        DEFAULT_PROMETHEUS_ENDPOINT,
                        &join(path, "endpoint"),
                        errors,
                    );
                    let tls = listener_tls(raw.tls, &join(path, "tls"), errors);
                    (errors.len() == before).then_some(ExporterKind::Prometheus { endpoint, tls })
                }),
                "log" => deserialize::<RawLog>(value, path, errors).map(|_| ExporterKind::Log),
                "webhook" => deserialize::<RawWebhook>(value, path, errors)
                    .and_then(|raw| webhook(raw, path, errors)),
                "unleash" => deserialize::<RawUnleash>(value, path, errors)
                    .and_then(|raw| unleash(raw, path, errors)),
                _ => return None,
            };
            Some(kind.map(|kind| ExporterSpec {
                id: id.to_string(),
                kind,
            }))
        },
    )
}

/// A webhook exporter; `None` when it has problems (reported).
pub(super) fn webhook(raw: RawWebhook, path: &str, errors: &mut Errors) -> Option<ExporterKind> {
    let before = errors.len();
    let url = client_url(raw.url, path, errors);
    let on_path = join(path, "on");
    let on = match list_items(raw.on, &on_path, errors) {
        None => vec![RunState::Promoted, RunState::RolledBack],
        Some(items) if items.is_empty() => {
            errors.push(&on_path, "must list at least one state");
            Vec::new()
        }
        Some(items) => {
            let mut states = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let found = [
                    RunState::Validating,
                    RunState::Promoted,
                    RunState::RolledBack,
                ]
                .into_iter()
                .find(|s| s.as_str() == item);
                match found {
                    Some(s) if !states.contains(&s) => states.push(s),
                    Some(_) => errors.push(&on_path, format!("lists {item:?} more than once")),
                    None => errors.push(
                        format!("{on_path}[{i}]"),
                        format!("expected VALIDATING, PROMOTED or ROLLED_BACK, got {item:?}"),
                    ),
                }
            }
            states
        }
    };
    let secret = take(raw.secret, &join(path, "secret"), errors).filter(|s| !s.is_empty());
    let timeout = positive_duration(
        raw.timeout,
        DEFAULT_WEBHOOK_TIMEOUT,
        &join(path, "timeout"),
        errors,
    );
    let retry_path = join(path, "retry");
    let MapOnly(retry) = take(raw.retry, &retry_path, errors).unwrap_or_default();
    let retry = retry_spec(retry, &retry_path, errors);
    let format_path = join(path, "format");
    let format = match take(raw.format, &format_path, errors) {
        None => WebhookFormat::default(),
        Some(name) => match WebhookFormat::ALL.into_iter().find(|f| f.as_str() == name) {
            Some(f) => f,
            None => {
                errors.push(
                    &format_path,
                    format!("expected json, github or slack, got {name:?}"),
                );
                WebhookFormat::default()
            }
        },
    };
    let token_path = join(path, "token");
    let token = token(raw.token, &token_path, errors);
    match (format, &token) {
        // GitHub answers 401 to a dispatch without a token: every event
        // would fail, so say it now rather than at the first rollback.
        (WebhookFormat::Github, None) => errors.push(
            &token_path,
            "is required with format: github (sent as Authorization: Bearer <token>; \
             a token that may create repository dispatches)",
        ),
        // Slack's incoming-webhook URL is the credential; a token would
        // only be sent to Slack for nothing, and suggests a wrong setup.
        (WebhookFormat::Slack, Some(_)) => errors.push(
            &token_path,
            "is not used with format: slack (the incoming-webhook URL is its own secret)",
        ),
        _ => {}
    }
    let tls = client_tls(raw.tls, &join(path, "tls"), errors);
    (errors.len() == before).then_some(ExporterKind::Webhook(WebhookSpec {
        url,
        tls,
        on,
        secret,
        timeout,
        retry,
        format,
        token,
    }))
}

/// The URL of an HTTP client target: required, `http://` or `https://`.
fn client_url(raw: Field<String>, path: &str, errors: &mut Errors) -> String {
    let url_path = join(path, "url");
    match take(raw, &url_path, errors) {
        None => {
            errors.push(&url_path, "is required");
            String::new()
        }
        Some(url) => {
            if let Err(why) = check_url(&url) {
                errors.push(&url_path, why);
            }
            url
        }
    }
}

/// The default rollout steps of an `unleash` exporter.
const DEFAULT_STEPS: [u32; 5] = [5, 10, 25, 50, 100];

/// An `unleash` exporter; `None` when it has problems (reported). Which
/// subject attributes its flag may name is checked with the pipelines
/// (`check_flag_templates`).
pub(super) fn unleash(raw: RawUnleash, path: &str, errors: &mut Errors) -> Option<ExporterKind> {
    let before = errors.len();
    let url = client_url(raw.url, path, errors);
    let token_path = join(path, "token");
    let token = token(raw.token, &token_path, errors).unwrap_or_else(|| {
        errors.push(
            &token_path,
            "is required (an Admin API token, sent as Authorization: <token>)",
        );
        String::new()
    });
    let mut name = |raw: Field<String>, key: &str, default: Option<&str>| {
        let p = join(path, key);
        match take(raw, &p, errors).map(|v| v.trim().to_string()) {
            Some(v) if !v.is_empty() => {
                if !is_unleash_name(&v) {
                    errors.push(&p, format!("{v:?} is not a valid Unleash name (1-100 letters, digits or - _ . ! ~ * ' ( ))"));
                }
                v
            }
            _ => match default {
                Some(d) => d.to_string(),
                None => {
                    errors.push(&p, "is required");
                    String::new()
                }
            },
        }
    };
    let project = name(raw.project, "project", Some("default"));
    let environment = name(raw.environment, "environment", None);
    let strategy_id = take(raw.strategy_id, &join(path, "strategy_id"), errors)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let flag_path = join(path, "flag");
    let flag = match take(raw.flag, &flag_path, errors) {
        None => {
            errors.push(
                &flag_path,
                "is required (e.g. \"checkout-{service.version}\")",
            );
            None
        }
        Some(text) => match FlagTemplate::parse(text.trim()) {
            Ok(t) if t.attributes().next().is_none() => {
                // One flag for every run: a rolled-back release's 0 % would
                // be stepped up again by the next release's run.
                errors.push(
                    &flag_path,
                    format!(
                        "{:?} names no subject attribute: each run needs its own flag, e.g. \"{}-{{service.version}}\"",
                        t.as_str(),
                        t.as_str()
                    ),
                );
                None
            }
            Ok(t) => Some(t),
            Err(why) => {
                errors.push(&flag_path, why);
                None
            }
        },
    };
    let steps_path = join(path, "steps");
    let steps = match take(raw.steps, &steps_path, errors) {
        None => DEFAULT_STEPS.to_vec(),
        Some(StringList(items)) if items.is_empty() => {
            errors.push(&steps_path, "must list at least one percentage");
            Vec::new()
        }
        Some(StringList(items)) => {
            let mut steps: Vec<u32> = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let at = format!("{steps_path}[{i}]");
                let v = match item.map(|s| s.parse::<u32>()) {
                    Ok(Ok(v)) if (1..=100).contains(&v) => v,
                    Ok(Ok(v)) => {
                        errors.push(&at, format!("must be between 1 and 100, got {v}"));
                        continue;
                    }
                    Ok(Err(_)) | Err(_) => {
                        errors.push(&at, "must be a whole percentage between 1 and 100");
                        continue;
                    }
                };
                if let Some(&last) = steps.last() {
                    if v <= last {
                        errors.push(&at, format!("must be greater than the step before ({last}), got {v}: steps only go up"));
                        continue;
                    }
                }
                steps.push(v);
            }
            steps
        }
    };
    let step_windows = int_in(
        raw.step_windows,
        2,
        1,
        10_000,
        &join(path, "step_windows"),
        errors,
    ) as u32;
    let refresh_interval = positive_duration(
        raw.refresh_interval,
        Duration::from_secs(15),
        &join(path, "refresh_interval"),
        errors,
    );
    let on_rollback_path = join(path, "on_rollback");
    let on_rollback = match take(raw.on_rollback, &on_rollback_path, errors).as_deref() {
        None | Some("zero") => OnRollback::Zero,
        Some("disable") => OnRollback::Disable,
        Some(other) => {
            errors.push(
                &on_rollback_path,
                format!("expected zero or disable, got {other:?}"),
            );
            OnRollback::Zero
        }
    };
    let timeout = positive_duration(
        raw.timeout,
        DEFAULT_WEBHOOK_TIMEOUT,
        &join(path, "timeout"),
        errors,
    );
    let retry_path = join(path, "retry");
    let MapOnly(mut raw_retry) = take(raw.retry, &retry_path, errors).unwrap_or_default();
    if raw_retry.max_elapsed.take().is_some() {
        errors.push(
            join(&retry_path, "max_elapsed"),
            "is not used by unleash: a flag change is retried until Unleash applies it or a later change of the flag replaces it (a rollback is never given up)",
        );
    }
    let retry = retry_spec(raw_retry, &retry_path, errors);
    let tls = client_tls(raw.tls, &join(path, "tls"), errors);
    (errors.len() == before).then(|| {
        ExporterKind::Unleash(Box::new(UnleashSpec {
            url: url.trim().trim_end_matches('/').to_string(),
            tls,
            token,
            project,
            environment,
            flag: flag.expect("no error, so the flag parsed"),
            strategy_id,
            steps,
            step_windows,
            refresh_interval,
            on_rollback,
            timeout,
            retry: retry.backoff(),
        }))
    })
}

pub(super) fn retry_spec(raw: RawRetry, path: &str, errors: &mut Errors) -> RetrySpec {
    let initial_interval = positive_duration(
        raw.initial_interval,
        DEFAULT_RETRY_INITIAL,
        &join(path, "initial_interval"),
        errors,
    );
    let max_interval = positive_duration(
        raw.max_interval,
        DEFAULT_RETRY_MAX_INTERVAL.max(initial_interval),
        &join(path, "max_interval"),
        errors,
    );
    if max_interval < initial_interval {
        errors.push(
            join(path, "max_interval"),
            format!(
                "must be at least initial_interval ({}), got {}",
                humantime::format_duration(initial_interval),
                humantime::format_duration(max_interval)
            ),
        );
    }
    let max_elapsed = positive_duration(
        raw.max_elapsed,
        DEFAULT_RETRY_MAX_ELAPSED,
        &join(path, "max_elapsed"),
        errors,
    );
    RetrySpec {
        initial_interval,
        max_interval,
        max_elapsed,
    }
}

/// A client URL: `http` or `https` with a host.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    // Quoted without its credentials.
    let shown = redact_password(url);
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {shown:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("must be an http:// or https:// URL, got {shown:?}")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("must name a host, got {shown:?}"));
    }
    Ok(())
}

/// Reads `service.storage`, and `service.postgres` for a `postgres://` URL.
pub(super) fn storage(
    raw: Option<String>,
    postgres: Field<MapOnly<RawPostgres>>,
    errors: &mut Errors,
) -> StorageSpec {
    const PATH: &str = "service.storage";
    let url = raw
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_STORAGE.to_string());
    let is_postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    // What messages quote: the URL without its credentials.
    let shown = redact_password(&url);
    let postgres = take(postgres, "service.postgres", errors);
    if postgres.is_some() && !is_postgres {
        errors.push(
            "service.postgres",
            "is only for postgres:// storage; service.storage is not PostgreSQL",
        );
    }
    // `memory` and `memory://` too: an unquoted `storage: memory:` is a YAML
    // syntax error, so the colon is easy to drop.
    if matches!(url.as_str(), "memory" | "memory:" | "memory://") {
        return StorageSpec::Memory;
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            errors.push(PATH, format!("{shown:?} names no file; write sqlite://data/verdict.db or sqlite:///var/lib/verdict/verdict.db"));
        } else if path.contains(['?', '#']) {
            errors.push(
                PATH,
                format!("{shown:?}: options (?…) are not supported; verdict sets them itself"),
            );
        } else if path.ends_with('/') {
            errors.push(
                PATH,
                format!("{shown:?} names a directory, not a database file"),
            );
        }
        return StorageSpec::Sqlite {
            path: std::path::PathBuf::from(path),
            url,
        };
    }
    if is_postgres {
        let MapOnly(raw) = postgres.unwrap_or_default();
        return StorageSpec::Postgres(postgres_spec(url, raw, errors));
    }
    errors.push(
        PATH,
        format!("unsupported storage {shown:?}: expected sqlite://PATH (sqlite:///abs/path for an absolute path), postgres://USER@HOST:PORT/DB or memory:"),
    );
    StorageSpec::Memory
}

/// A `postgres://` URL and its `service.postgres` settings.
fn postgres_spec(url: String, raw: RawPostgres, errors: &mut Errors) -> PostgresSpec {
    const PATH: &str = "service.storage";
    let shown = redact_password(&url);
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if url.contains(['?', '#']) {
        errors.push(
            PATH,
            format!("{shown:?}: options (?…) are not supported; set them under service.postgres (pool_size, statement_timeout, tls)"),
        );
    } else if host.is_empty() || host.starts_with(':') {
        errors.push(
            PATH,
            format!("{shown:?} names no host; write postgres://USER@HOST:PORT/DATABASE"),
        );
    } else if database.is_empty() {
        errors.push(
            PATH,
            format!("{shown:?} names no database; write postgres://USER@HOST:PORT/DATABASE"),
        );
    } else if let Some(port) = host
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.ends_with(']'))
    {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            errors.push(
                PATH,
                format!("{shown:?}: port {port:?} is not a port number"),
            );
        }
    }
    let pool_size = int_in(
        raw.pool_size,
        i64::from(DEFAULT_PG_POOL_SIZE),
        2,
        256,
        "service.postgres.pool_size",
        errors,
    );
    let mut statement_timeout = positive_duration(
        raw.statement_timeout,
        DEFAULT_PG_STATEMENT_TIMEOUT,
        "service.postgres.statement_timeout",
        errors,
    );
    // PostgreSQL refuses a statement_timeout above i32::MAX milliseconds
    // at connect: say so here, not when `verdict run` cannot connect.
    let max = Duration::from_millis(i32::MAX as u64);
    if statement_timeout > max {
        errors.push(
            "service.postgres.statement_timeout",
            format!(
                "must be at most 2147483647ms (about 24.8 days, PostgreSQL's limit), got {}ms",
                statement_timeout.as_millis()
            ),
        );
        statement_timeout = DEFAULT_PG_STATEMENT_TIMEOUT;
    }
    let grace = take(raw.grace, "service.postgres.grace", errors).map_or(DEFAULT_PG_GRACE, |d| d.0);
    let instance = match take(raw.instance, "service.postgres.instance", errors) {
        Some(name) => {
            let name = name.trim().to_string();
            if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                errors.push(
                    "service.postgres.instance",
                    "must be 1 to 100 printable characters",
                );
            }
            name
        }
        None => default_instance_name(),
    };
    let tls = match take(raw.tls, "service.postgres.tls", errors) {
        Some(MapOnly(tls)) => postgres_tls(tls, errors),
        None => PostgresTls::default(),
    };
    PostgresSpec {
        url,
        pool_size: u32::try_from(pool_size).unwrap_or(DEFAULT_PG_POOL_SIZE),
        statement_timeout,
        instance,
        grace,
        tls,
    }
}

/// The host name, which names this instance unless `instance:` does.
fn default_instance_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "verdict".to_string())
}

fn postgres_tls(raw: RawPostgresTls, errors: &mut Errors) -> PostgresTls {
    const PATH: &str = "service.postgres.tls";
    let at = |key: &str| join(PATH, key);
    let mode = match take(raw.mode, &at("mode"), errors) {
        None => PgSslMode::default(),
        Some(name) => PgSslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == name.trim())
            .unwrap_or_else(|| {
                errors.push(
                    at("mode"),
                    format!(
                        "expected disable, prefer, require, verify-ca or verify-full, got {name:?}"
                    ),
                );
                PgSslMode::default()
            }),
    };
    let file = |field: Field<String>, key: &str, errors: &mut Errors| {
        let path = take(field, &at(key), errors)
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .map(std::path::PathBuf::from)?;
        if let Err(e) = std::fs::metadata(&path) {
            errors.push(at(key), format!("cannot read {}: {e}", path.display()));
        }
        Some(path)
    };
    let ca_file = file(raw.ca_file, "ca_file", errors);
    let identity = match (
        file(raw.cert_file, "cert_file", errors),
        file(raw.key_file, "key_file", errors),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            errors.push(at("key_file"), "is required with cert_file");
            None
        }
        (None, Some(_)) => {
            errors.push(at("cert_file"), "is required with key_file");
            None
        }
    };
    if ca_file.is_some() && matches!(mode, PgSslMode::Disable) {
        errors.push(at("ca_file"), "is not used with mode: disable");
    }
    PostgresTls {
        mode,
        ca_file,
        identity,
    }
}
