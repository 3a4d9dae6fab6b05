//! The `processors` section: the window settings and the contracts.

use super::*;

pub(super) fn processors(section: Option<Value>, errors: &mut Errors) -> Defined<Processor> {
    components(
        "processors",
        "processor",
        section,
        errors,
        |_, cid, value, path, errors| {
            Some(match cid.kind {
                "window" => deserialize::<RawWindow>(value, path, errors)
                    .and_then(|raw| window(raw, path, errors))
                    .map(Processor::Window),
                "contract" => deserialize::<RawContract>(value, path, errors)
                    .and_then(|raw| contract(raw, cid.name.unwrap_or("contract"), path, errors))
                    .map(|spec| Processor::Contract(Box::new(spec))),
                _ => return None,
            })
        },
    )
}

/// Most shards a pipeline may have.
const MAX_SHARDS: i64 = 1024;

/// Number of shards for `shards: 0`: one per core (1 if unknown).
pub(super) fn shards_per_core() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The window settings a pipeline gets when it lists no window processor.
pub(crate) fn default_window() -> WindowSpec {
    WindowSpec {
        size: DEFAULT_WINDOW_SIZE,
        allowed_lateness: DEFAULT_ALLOWED_LATENESS,
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        shards: shards_per_core(),
        shards_per_core: true,
        queue_size: DEFAULT_QUEUE_SIZE,
        max_series: DEFAULT_MAX_SERIES,
        max_streams: DEFAULT_MAX_STREAMS,
        stream_expiry: DEFAULT_STREAM_EXPIRY,
    }
}

/// `usize::MAX` as an `i64` bound.
pub(super) const USIZE_MAX: i64 = if (usize::MAX as u128) > (i64::MAX as u128) {
    i64::MAX
} else {
    usize::MAX as i64
};

pub(super) fn window(raw: RawWindow, path: &str, errors: &mut Errors) -> Option<WindowSpec> {
    let before = errors.len();
    let size = positive_duration(raw.size, DEFAULT_WINDOW_SIZE, &join(path, "size"), errors);
    let allowed_lateness = take(
        raw.allowed_lateness,
        &join(path, "allowed_lateness"),
        errors,
    )
    .map_or(DEFAULT_ALLOWED_LATENESS, |d| d.0);
    let max_clock_skew = take(raw.max_clock_skew, &join(path, "max_clock_skew"), errors)
        .map_or(DEFAULT_MAX_CLOCK_SKEW, |d| d.0);
    // Each shard is a task with its queue and its checkpoint slot: more
    // than a few per core only costs memory and shutdown time.
    let shards = int_in(raw.shards, 0, 0, MAX_SHARDS, &join(path, "shards"), errors);
    let queue_size = int_in(
        raw.queue_size,
        DEFAULT_QUEUE_SIZE as i64,
        1,
        USIZE_MAX,
        &join(path, "queue_size"),
        errors,
    );
    let max_series = int_in(
        raw.max_series,
        DEFAULT_MAX_SERIES as i64,
        1,
        USIZE_MAX,
        &join(path, "max_series"),
        errors,
    );
    let max_streams = int_in(
        raw.max_streams,
        DEFAULT_MAX_STREAMS as i64,
        1,
        USIZE_MAX,
        &join(path, "max_streams"),
        errors,
    );
    let stream_expiry = positive_duration(
        raw.stream_expiry,
        DEFAULT_STREAM_EXPIRY,
        &join(path, "stream_expiry"),
        errors,
    );
    (errors.len() == before).then(|| WindowSpec {
        size,
        allowed_lateness,
        max_clock_skew,
        shards: match usize::try_from(shards) {
            Ok(0) | Err(_) => shards_per_core(),
            Ok(n) => n,
        },
        shards_per_core: matches!(usize::try_from(shards), Ok(0) | Err(_)),
        queue_size: usize::try_from(queue_size).unwrap_or(DEFAULT_QUEUE_SIZE),
        max_series: usize::try_from(max_series).unwrap_or(DEFAULT_MAX_SERIES),
        max_streams: usize::try_from(max_streams).unwrap_or(DEFAULT_MAX_STREAMS),
        stream_expiry,
    })
}

pub(super) fn contract(
    raw: RawContract,
    name: &str,
    path: &str,
    errors: &mut Errors,
) -> Option<ContractSpec> {
    let before = errors.len();
    let at = |key: &str| join(path, key);

    let version = int_in(raw.version, 1, 1, u32::MAX.into(), &at("version"), errors);
    let matches = attribute_matches(raw.matches, &at("match"), errors);
    let subject_by = subject_by(raw.subject_by, &at("subject_by"), errors);
    let source = one_of(
        raw.source,
        &[("spans", Source::Spans), ("metrics", Source::Metrics)],
        Source::Spans,
        &at("source"),
        errors,
    );
    let span_kinds = span_kinds(raw.span_kinds, &at("span_kinds"), errors);
    let conversion_attribute = name_or_default(
        raw.conversion_attribute,
        DEFAULT_CONVERSION_ATTRIBUTE,
        &at("conversion_attribute"),
        errors,
    );
    let latency_metric = name_or_default(
        raw.latency_metric,
        DEFAULT_LATENCY_METRIC,
        &at("latency_metric"),
        errors,
    );
    let conversions_metric = name_or_default(
        raw.conversions_metric,
        DEFAULT_CONVERSIONS_METRIC,
        &at("conversions_metric"),
        errors,
    );

    let has_threshold = raw.max_p50_latency_ms.is_some()
        || raw.max_p95_latency_ms.is_some()
        || raw.max_p99_latency_ms.is_some()
        || raw.max_error_rate_percent.is_some()
        || raw.min_conversion_rate_percent.is_some();
    let thresholds = Thresholds {
        max_p50_latency_ms: positive(raw.max_p50_latency_ms, &at("max_p50_latency_ms"), errors),
        max_p95_latency_ms: positive(raw.max_p95_latency_ms, &at("max_p95_latency_ms"), errors),
        max_p99_latency_ms: positive(raw.max_p99_latency_ms, &at("max_p99_latency_ms"), errors),
        max_error_rate_percent: percent(
            raw.max_error_rate_percent,
            &at("max_error_rate_percent"),
            errors,
        ),
        min_conversion_rate_percent: percent(
            raw.min_conversion_rate_percent,
            &at("min_conversion_rate_percent"),
            errors,
        ),
    };

    let windows_only: Vec<&str> = [
        ("min_window_samples", raw.min_window_samples.is_some()),
        ("pass_windows", raw.pass_windows.is_some()),
        ("fail_windows", raw.fail_windows.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    let min_samples_given = raw.min_samples.is_some();
    let min_samples = int_in(raw.min_samples, 1, 1, i64::MAX, &at("min_samples"), errors);
    let min_window_samples = int_in(
        raw.min_window_samples,
        1,
        1,
        i64::MAX,
        &at("min_window_samples"),
        errors,
    );
    let pass_windows = int_in(
        raw.pass_windows,
        DEFAULT_PASS_WINDOWS.into(),
        1,
        u32::MAX.into(),
        &at("pass_windows"),
        errors,
    );
    let fail_windows = int_in(
        raw.fail_windows,
        1,
        1,
        u32::MAX.into(),
        &at("fail_windows"),
        errors,
    );
    let max_duration = positive_duration(
        raw.max_duration,
        DEFAULT_MAX_DURATION,
        &at("max_duration"),
        errors,
    );
    let run_idle_timeout = positive_duration(
        raw.run_idle_timeout,
        DEFAULT_RUN_IDLE_TIMEOUT,
        &at("run_idle_timeout"),
        errors,
    );
    let on_idle = one_of(
        raw.on_idle,
        &[("retire", OnIdle::Retire), ("timeout", OnIdle::Timeout)],
        OnIdle::Retire,
        &at("on_idle"),
        errors,
    );
    let on_timeout = one_of(
        raw.on_timeout,
        &[
            ("rollback", OnTimeout::Rollback),
            ("promote", OnTimeout::Promote),
        ],
        OnTimeout::Rollback,
        &at("on_timeout"),
        errors,
    );
    let baseline_given = raw.baseline.is_some();
    let baseline = take(raw.baseline, &at("baseline"), errors)
        .and_then(|b| baseline(b.0, &at("baseline"), errors));
    // A baseline block states its own thresholds (and reports their
    // absence itself), so a contract that only compares is complete.
    if !has_threshold && !baseline_given {
        errors.push(
            path,
            "no threshold set; set at least one of max_p50_latency_ms, max_p95_latency_ms, max_p99_latency_ms, max_error_rate_percent or min_conversion_rate_percent, or a baseline: comparison",
        );
    }
    let decision = one_of(
        raw.decision,
        &[
            ("windows", Decision::Windows),
            ("sequential", Decision::Sequential),
        ],
        Decision::Sequential,
        &at("decision"),
        errors,
    );
    if decision == Decision::Sequential {
        // Silently ignoring them would let a user believe a streak decides.
        for key in windows_only {
            errors.push(
                at(key),
                format!(
                    "applies to decision: windows only; runs are decided by sequential tests \
                     (the default) — remove {key}, or set decision: windows to judge \
                     consecutive windows"
                ),
            );
        }
    }
    let alpha = alpha(raw.alpha, &at("alpha"), errors);
    // Only for an otherwise valid contract: a rejected threshold would
    // look absent here.
    if errors.len() == before
        && decision == Decision::Sequential
        && !min_samples_given
        && nothing_to_prove(&thresholds, baseline.as_ref())
    {
        errors.push(
            at("min_samples"),
            "required here: every check of this contract can only be proven failing (a limit of \
             0 errors, 100 % conversion or no increase over the baseline) or is met by any rate, \
             so nothing but min_samples decides when a release is promoted; set the requests that \
             must show no failure first",
        );
    }
    let dry_run = take(raw.dry_run, &at("dry_run"), errors).unwrap_or(false);

    (errors.len() == before).then(|| ContractSpec {
        name: name.to_string(),
        version: u32::try_from(version).unwrap_or(1),
        matches,
        subject_by,
        source,
        span_kinds,
        conversion_attribute,
        latency_metric,
        conversions_metric,
        thresholds,
        min_samples: u64::try_from(min_samples).unwrap_or(1),
        min_window_samples: u64::try_from(min_window_samples).unwrap_or(1),
        pass_windows: u32::try_from(pass_windows).unwrap_or(DEFAULT_PASS_WINDOWS),
        fail_windows: u32::try_from(fail_windows).unwrap_or(1),
        max_duration: Some(max_duration),
        on_timeout,
        run_idle_timeout,
        on_idle,
        baseline,
        decision,
        alpha,
        dry_run,
    })
}

/// `true` when no check of a contract can be proven *passing* by data: each
/// is either fail-only (errors ≤ 0 %, conversion ≥ 100 %, no increase over
/// the baseline) or met by every rate (errors ≤ 100 %, conversion ≥ 0 %).
/// Latency checks can always be proven passing.
fn nothing_to_prove(t: &Thresholds, baseline: Option<&BaselineSpec>) -> bool {
    let latency = t.max_p50_latency_ms.is_some()
        || t.max_p95_latency_ms.is_some()
        || t.max_p99_latency_ms.is_some();
    let extreme = |v: Option<f64>| v.is_none_or(|v| v <= 0.0 || v >= 100.0);
    let baseline_extreme = baseline.is_none_or(|b| {
        b.max_p95_latency_increase_percent.is_none_or(|v| v <= 0.0)
            && extreme(b.max_error_rate_increase_points)
    });
    !latency
        && extreme(t.max_error_rate_percent)
        && extreme(t.min_conversion_rate_percent)
        && baseline_extreme
}

pub(super) fn baseline(raw: RawBaseline, path: &str, errors: &mut Errors) -> Option<BaselineSpec> {
    let before = errors.len();
    let match_path = join(path, "match");
    let match_given = raw.matches.is_some();
    let matches = attribute_matches(raw.matches, &match_path, errors);
    if matches.is_empty() && !match_given {
        errors.push(
            &match_path,
            "required: at least one resource attribute that selects the baseline release",
        );
    }
    let has_threshold = raw.max_p95_latency_increase_percent.is_some()
        || raw.max_error_rate_increase_points.is_some();
    let spec = BaselineSpec {
        matches,
        max_p95_latency_increase_percent: non_negative(
            raw.max_p95_latency_increase_percent,
            &join(path, "max_p95_latency_increase_percent"),
            errors,
        ),
        max_error_rate_increase_points: percent(
            raw.max_error_rate_increase_points,
            &join(path, "max_error_rate_increase_points"),
            errors,
        ),
    };
    if !has_threshold {
        errors.push(
            path,
            "no threshold set; set max_p95_latency_increase_percent and/or max_error_rate_increase_points",
        );
    }
    (errors.len() == before).then_some(spec)
}

/// `match:` entries, each glob checked to compile.
pub(super) fn attribute_matches(
    raw: Field<Matches>,
    path: &str,
    errors: &mut Errors,
) -> Vec<AttributeMatch> {
    let mut matches = Vec::new();
    for (key, pattern) in take(raw, path, errors).unwrap_or_default() {
        if key.trim().is_empty() {
            errors.push(path, "attribute keys must not be empty");
            continue;
        }
        let Some(pattern) = take(Some(pattern), &join(path, &key), errors) else {
            continue;
        };
        let pattern = pattern.0;
        match AttributeMatch::new(key.clone(), pattern.clone()) {
            Ok(m) => matches.push(m),
            Err(reason) => errors.push(
                join(path, &key),
                format!("invalid glob {pattern:?}: {reason}"),
            ),
        }
    }
    matches
}

pub(super) fn subject_by(raw: Field<StringList>, path: &str, errors: &mut Errors) -> Vec<String> {
    let Some(items) = list_items(raw, path, errors) else {
        return DEFAULT_SUBJECT_BY.iter().map(|s| s.to_string()).collect();
    };
    if items.is_empty() {
        errors.push(path, "must list at least one attribute");
    }
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if item.is_empty() {
            errors.push(format!("{path}[{i}]"), "must not be empty");
        } else if !seen.insert(item.as_str()) {
            errors.push(path, format!("lists {item:?} more than once"));
        }
    }
    items
}

pub(super) fn span_kinds(raw: Field<StringList>, path: &str, errors: &mut Errors) -> Vec<i32> {
    let Some(items) = list_items(raw, path, errors) else {
        return DEFAULT_SPAN_KINDS.to_vec();
    };
    if items.is_empty() {
        errors.push(path, "must list at least one span kind");
    }
    let mut kinds = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let upper = item.to_ascii_uppercase();
        let bare = upper.strip_prefix("SPAN_KIND_").unwrap_or(&upper);
        match SPAN_KINDS.iter().find(|(name, _)| *name == bare) {
            Some((name, number)) if kinds.contains(number) => {
                errors.push(path, format!("lists {name} more than once"));
            }
            Some((_, number)) => kinds.push(*number),
            None => errors.push(
                format!("{path}[{i}]"),
                format!(
                    "unknown span kind {item:?}, expected INTERNAL, SERVER, CLIENT, PRODUCER or CONSUMER"
                ),
            ),
        }
    }
    kinds
}

/// The items of a list field (`None` when absent or unreadable); an item
/// that is not a string is reported at `path[i]` and left out.
pub(super) fn list_items(
    raw: Field<StringList>,
    path: &str,
    errors: &mut Errors,
) -> Option<Vec<String>> {
    let StringList(items) = take(raw, path, errors)?;
    let mut strings = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Ok(item) => strings.push(item),
            Err(message) => errors.push(format!("{path}[{i}]"), message),
        }
    }
    Some(strings)
}

/// A keyword field: one of `choices` (exact, lower case), or `default`.
pub(super) fn one_of<T: Copy>(
    raw: Field<String>,
    choices: &[(&str, T)],
    default: T,
    path: &str,
    errors: &mut Errors,
) -> T {
    let Some(raw) = take(raw, path, errors) else {
        return default;
    };
    match choices.iter().find(|(name, _)| *name == raw) {
        Some((_, value)) => *value,
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            errors.push(
                path,
                format!("expected {}, got {raw:?}", names.join(" or ")),
            );
            default
        }
    }
}

/// An attribute or metric name: `default` when absent, never empty.
pub(super) fn name_or_default(
    raw: Field<String>,
    default: &str,
    path: &str,
    errors: &mut Errors,
) -> String {
    match take(raw, path, errors) {
        None => default.to_string(),
        Some(name) if name.trim().is_empty() => {
            errors.push(path, "must not be empty");
            default.to_string()
        }
        Some(name) => name,
    }
}

/// The smallest `alpha` a contract may set.
const MIN_ALPHA: f64 = 1e-6;

pub(super) fn alpha(raw: Field<Num>, path: &str, errors: &mut Errors) -> f64 {
    let Some(Num(v)) = take(raw, path, errors) else {
        return DEFAULT_ALPHA;
    };
    // One-sided bounds at 0.5 or more say nothing; below 1e-6 the budget
    // split over the checks leaves nothing any realistic traffic can meet
    // (and tiny values underflow the statistics).
    if !(MIN_ALPHA..0.5).contains(&v) {
        errors.push(
            path,
            format!("must be at least {MIN_ALPHA} and below 0.5, got {v}"),
        );
    }
    v
}
