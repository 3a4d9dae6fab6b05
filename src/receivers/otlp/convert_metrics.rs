//! OTLP metrics → point samples (design §3, `source: metrics`).
//!
//! A resource is matched once against every contract that reads metrics;
//! its latency histogram (`latency_metric`, default
//! `http.server.request.duration`) and conversions counter
//! (`conversions_metric`, default `validation.conversions`) points then become
//! one [`PointSample`] per contract, routed to the shard of the series. The
//! checks that need no history happen here, so that a bad point is reported
//! to its sender in `partial_success` rather than silently miscounted:
//! - the latency unit must be `s`, `ms` or `us` (anything else would give a
//!   number off by a factor of a thousand);
//! - negative buckets, NaN or negative sums and extremes, counts that
//!   disagree with the buckets, unordered bounds are rejected, and so are
//!   points of more than [`MAX_POINT_BUCKETS`] buckets (`too_many_buckets`);
//! - time, lateness and clock skew are checked as for spans.
//!
//! What needs history (cumulative → delta) happens in the shard that owns
//! the series (`aggregator::streams`, which says why). Here each point gets
//! its stream identity (resource + scope + metric + point attributes, and the
//! contract), hashed to 128 bits.
//!
//! Requests count as the histogram point's `count`; all of them are errors
//! when the point's attributes say so (`http.response.status_code` ≥ 500 or
//! `error.type`), which is how the semantic conventions split a histogram.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, DataPointFlags,
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
};

use crate::config::Source;
use crate::model::point::{
    Buckets, LatencyUnit, PointKind, PointLatency, PointSample, Temporality, MAX_POINT_BUCKETS,
};
use crate::model::{HeldBytes, PointBatch, UnixNanos};
use crate::telemetry;

use super::super::PipelineInput;
use super::convert::{
    http_status, lookup, resource_attrs, targets, time_rejection, Converted, Origin, RejectReason,
    Target,
};

/// Which of a contract's metrics a metric is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Latency,
    Conversions,
}

pub(super) use super::stream_id::StreamHasher;

/// Converts a metrics export request into point samples for `pipelines`.
pub fn convert_metrics(
    req: &ExportMetricsServiceRequest,
    pipelines: &[&PipelineInput],
    now: UnixNanos,
) -> Converted<PointBatch> {
    let mut out = Converted::new(pipelines);
    for rm in &req.resource_metrics {
        let attrs = resource_attrs(rm.resource.as_ref());
        let targets = targets(&attrs, pipelines, Source::Metrics, &mut out.missing);
        let service = lookup(&attrs, "service.name").unwrap_or("");
        let mut resource_hash = StreamHasher::new();
        if let Some(r) = &rm.resource {
            resource_hash.attributes(&r.attributes);
        }
        for sm in &rm.scope_metrics {
            let mut scope_hash = resource_hash.clone();
            scope_hash.scope(sm.scope.as_ref());
            for metric in &sm.metrics {
                let points = point_count(metric);
                out.items += points;
                let roles: Vec<(&Target, Role)> = targets
                    .iter()
                    .filter_map(|t| {
                        let spec = &pipelines[t.pipeline].contracts[t.contract as usize];
                        if metric.name == spec.latency_metric {
                            Some((t, Role::Latency))
                        } else if metric.name == spec.conversions_metric {
                            Some((t, Role::Conversions))
                        } else {
                            None
                        }
                    })
                    .collect();
                if roles.is_empty() {
                    out.ignored += points;
                    continue;
                }
                if roles.iter().any(|(_, r)| *r == Role::Latency) {
                    warn_millisecond_bounds(metric, &attrs);
                }
                let mut metric_hash = scope_hash.clone();
                metric_hash.str(&metric.name);
                let origin = Origin {
                    service,
                    noun: "points",
                    metric: &metric.name,
                };
                let ctx = Context {
                    hash: &metric_hash,
                    pipelines,
                    now,
                    origin: &origin,
                };
                convert_metric(metric, &roles, &ctx, &mut out);
            }
        }
    }
    out
}

/// Explicit bounds this large on a histogram in seconds (100 s and more)
/// are almost surely milliseconds: SDKs that default to millisecond
/// boundaries (the Node.js SDK's `[0, 5, 10, …, 10000]`) on a histogram
/// declared in seconds put every request into one huge bucket.
const MILLISECOND_LOOKING_BOUND: f64 = 100.0;

/// Streams already warned about (bounded: a flood of new streams stops
/// the log lines, never the counter).
static WARNED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
const MAX_WARNED: usize = 10_000;

/// The first point of a histogram in seconds whose bounds look like
/// milliseconds.
pub(super) fn millisecond_bounds(metric: &Metric) -> Option<&HistogramDataPoint> {
    let Some(Data::Histogram(h)) = &metric.data else {
        return None;
    };
    if LatencyUnit::parse(&metric.unit) != Some(LatencyUnit::Seconds) {
        return None;
    }
    h.data_points.iter().find(|dp| {
        dp.explicit_bounds
            .iter()
            .any(|b| *b >= MILLISECOND_LOOKING_BOUND)
    })
}

/// Warns (once per service, metric and bounds) when a latency histogram in
/// seconds has bounds that look like milliseconds: its requests then sit
/// in buckets that straddle any sensible threshold, so they decide
/// nothing; the log line says why.
fn warn_millisecond_bounds(metric: &Metric, attrs: &[(&str, Cow<'_, str>)]) {
    let Some(dp) = millisecond_bounds(metric) else {
        return;
    };
    let service = attrs
        .iter()
        .find(|(k, _)| *k == "service.name")
        .map_or("", |(_, v)| v.as_ref());
    warn_bounds(&metric.name, &metric.unit, &dp.explicit_bounds, service);
}

/// True when a histogram point of a metric in `unit` has bounds that look
/// like milliseconds in a histogram declared in seconds.
pub(super) fn looks_like_millis(unit: &str, bounds: &[f64]) -> bool {
    LatencyUnit::parse(unit) == Some(LatencyUnit::Seconds)
        && bounds.iter().any(|b| *b >= MILLISECOND_LOOKING_BOUND)
}

/// The warning of [`warn_millisecond_bounds`], for a point with `bounds`.
pub(super) fn warn_bounds(name: &str, unit: &str, bounds: &[f64], service: &str) {
    metrics::counter!(telemetry::MILLISECOND_BOUNDS, "metric" => name.to_string()).increment(1);
    let mut hasher = std::hash::DefaultHasher::new();
    (service, name, bounds.len()).hash(&mut hasher);
    let key = hasher.finish();
    let first = match WARNED.lock() {
        Ok(mut seen) if !seen.contains(&key) && seen.len() < MAX_WARNED => {
            seen.push(key);
            true
        }
        _ => false,
    };
    if first {
        tracing::warn!(
            metric = %name,
            service,
            unit = %unit,
            bounds = ?bounds,
            "Histogram in seconds with bounds that look like milliseconds: its requests land in buckets far wider than any latency limit and count neither for nor against it. Export the histogram in ms, or set second-based bucket boundaries in the SDK's view."
        );
    }
}

/// The data points of a metric, whatever its type: the items a request
/// carries for `partial_success`.
pub fn point_count(metric: &Metric) -> u64 {
    (match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}

/// The common fields of a data point.
pub(super) struct PointHead<'a> {
    pub(super) attributes: &'a dyn PointAttrs,
    pub(super) start: UnixNanos,
    pub(super) time: UnixNanos,
}

/// The [`PointHead`] of any OTLP data point type.
macro_rules! head {
    ($dp:expr) => {
        PointHead {
            attributes: &$dp.attributes,
            start: $dp.start_time_unix_nano,
            time: $dp.time_unix_nano,
        }
    };
}

/// What placing a point needs of its attributes, whichever decoder read
/// them: the prost types, or the borrowing wire reader
/// ([`super::wire_metrics`]).
pub(super) trait PointAttrs {
    /// The stream identity of the point: `metric` (resource, scope, name)
    /// followed by the point's attributes.
    fn stream(&self, metric: &StreamHasher) -> StreamHasher;
    /// The requests of the point failed (see [`is_error`]).
    fn is_error(&self) -> bool;
}

impl PointAttrs for Vec<KeyValue> {
    fn stream(&self, metric: &StreamHasher) -> StreamHasher {
        let mut h = metric.clone();
        h.attributes(self);
        h
    }
    fn is_error(&self) -> bool {
        is_error(self)
    }
}

/// One checked point, before it is given a series and a stream.
pub(super) enum Checked<'a> {
    /// Count it. A latency point's bucket counts are the slice (read where
    /// the request holds them), not in the point, whose vector is empty:
    /// they are copied once, into the batch of each target ([`place`]),
    /// not into a vector per point.
    Point(PointKind, &'a [u64]),
    /// Nothing to count (no recorded value): ignored, not rejected.
    Skip,
}

/// What every point of one metric shares.
pub(super) struct Context<'a> {
    /// The metric's stream identity so far (resource, scope, name).
    pub(super) hash: &'a StreamHasher,
    pub(super) pipelines: &'a [&'a PipelineInput],
    pub(super) now: UnixNanos,
    /// Its service and name, for rejections.
    pub(super) origin: &'a Origin<'a>,
}

/// What became of one data point, over every role and target that wanted
/// it. A point is counted once, whatever number of contracts read it and
/// whichever way (one contract's latency histogram may be another's
/// conversions counter): taken by any is accepted, else refused by any is
/// rejected (for the last reason given), else it is ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Fate {
    /// Nothing to count in it (no recorded value).
    #[default]
    Ignored,
    /// Refused by every target that wanted it.
    Rejected(RejectReason),
    /// Taken by at least one target.
    Accepted,
}

impl Fate {
    /// The fate of a point after `self`, once it was also offered to
    /// another role or target that gave `other`.
    pub(super) fn and(self, other: Fate) -> Fate {
        match (self, other) {
            (Fate::Accepted, _) | (_, Fate::Accepted) => Fate::Accepted,
            (_, Fate::Rejected(r)) => Fate::Rejected(r),
            (f, Fate::Ignored) => f,
        }
    }
}

/// The fates of one metric's points, settled once all roles have seen them.
struct Fates {
    points: Vec<Fate>,
    /// The first detailed reason given per reject reason, for the log.
    whys: Vec<(RejectReason, String)>,
}

impl Fates {
    fn new(n: usize) -> Fates {
        Fates {
            points: vec![Fate::Ignored; n],
            whys: Vec::new(),
        }
    }

    fn add(&mut self, i: usize, fate: Fate) {
        if let Some(f) = self.points.get_mut(i) {
            *f = f.and(fate);
        }
    }

    /// Every point is refused for `reason` (`why` in words).
    fn reject_all(&mut self, reason: RejectReason, why: &str) {
        for f in &mut self.points {
            *f = f.and(Fate::Rejected(reason));
        }
        self.why(reason, why);
    }

    fn why(&mut self, reason: RejectReason, why: &str) {
        if !self.whys.iter().any(|(r, _)| *r == reason) {
            self.whys.push((reason, why.to_string()));
        }
    }

    /// Counts each point once: accepted, ignored or rejected by reason.
    fn settle(self, origin: &Origin<'_>, out: &mut Converted<PointBatch>) {
        let mut rejected: Vec<(RejectReason, u64)> = Vec::new();
        for fate in &self.points {
            match fate {
                Fate::Accepted => out.accepted += 1,
                Fate::Ignored => out.ignored += 1,
                Fate::Rejected(r) => match rejected.iter_mut().find(|(x, _)| x == r) {
                    Some((_, n)) => *n += 1,
                    None => rejected.push((*r, 1)),
                },
            }
        }
        for (reason, n) in rejected {
            let why = self.whys.iter().find(|(r, _)| *r == reason);
            out.reject_from(
                origin,
                reason,
                || why.map_or_else(|| reason.describe().to_string(), |(_, w)| w.clone()),
                n,
            );
        }
    }
}

/// Tells the series of every target that wanted them that `n` points of a
/// metric were refused (they are counted for the client when the metric's
/// points are settled, once).
pub(super) fn blame_points(
    out: &mut Converted<PointBatch>,
    ctx: &Context<'_>,
    targets: &[&Target],
    reason: RejectReason,
    why: &str,
    n: u64,
) {
    for t in targets {
        if let Some(series) = &t.series {
            out.blame(
                t.pipeline,
                series,
                ctx.origin,
                reason,
                || why.to_string(),
                n,
            );
        }
    }
}

/// The targets that read a metric in `role`.
pub(super) fn role_targets<'t>(roles: &[(&'t Target, Role)], role: Role) -> Vec<&'t Target> {
    roles
        .iter()
        .filter(|(_, r)| *r == role)
        .map(|(t, _)| *t)
        .collect()
}

/// The temporality of an OTLP `aggregation_temporality` number; `None`
/// when unspecified (or unknown).
pub(super) fn temporality(t: i32) -> Option<Temporality> {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => Some(Temporality::Delta),
        Ok(AggregationTemporality::Cumulative) => Some(Temporality::Cumulative),
        _ => None,
    }
}

fn convert_metric(
    metric: &Metric,
    roles: &[(&Target, Role)],
    ctx: &Context<'_>,
    out: &mut Converted<PointBatch>,
) {
    let n = point_count(metric);
    let mut fates = Fates::new(usize::try_from(n).unwrap_or(usize::MAX));
    let mut bounds = BoundsCache::default();
    // One contract reads a metric in one role, but different contracts may
    // read it differently; decode the points once per role that occurs,
    // and settle each point once at the end.
    for role in [Role::Latency, Role::Conversions] {
        let targets = role_targets(roles, role);
        if targets.is_empty() {
            continue;
        }
        let unit = match role {
            Role::Latency => match LatencyUnit::parse(&metric.unit) {
                Some(u) => Some(u),
                None => {
                    out.note(
                        RejectReason::Unit,
                        format!("{} has unit {:?}", metric.name, metric.unit),
                    );
                    let why = format!("unit {:?} is not s, ms or us", metric.unit);
                    blame_points(out, ctx, &targets, RejectReason::Unit, &why, n);
                    fates.reject_all(RejectReason::Unit, &why);
                    continue;
                }
            },
            Role::Conversions => None,
        };
        let mut each = |i: usize,
                        head: PointHead<'_>,
                        point: Result<Checked<'_>, (RejectReason, String)>,
                        t: Option<Temporality>| {
            let kind = match (point, t) {
                (Ok(Checked::Skip), _) => return,
                (Ok(Checked::Point(..)), None) => {
                    out.note(
                        RejectReason::InvalidPoint,
                        format!("{}: aggregation temporality unspecified", metric.name),
                    );
                    let why = "aggregation temporality unspecified";
                    blame_points(out, ctx, &targets, RejectReason::InvalidPoint, why, 1);
                    fates.why(RejectReason::InvalidPoint, why);
                    fates.add(i, Fate::Rejected(RejectReason::InvalidPoint));
                    return;
                }
                (Err((reason, note)), _) => {
                    out.note(reason, format!("{}: {note}", metric.name));
                    blame_points(out, ctx, &targets, reason, &note, 1);
                    fates.why(reason, &note);
                    fates.add(i, Fate::Rejected(reason));
                    return;
                }
                (Ok(Checked::Point(kind, counts)), Some(t)) => (kind, t, counts),
            };
            fates.add(i, place(head, kind, &targets, ctx, out, &mut 0));
        };
        match (&metric.data, role) {
            (Some(Data::ExponentialHistogram(h)), Role::Latency) => {
                for (i, dp) in h.data_points.iter().enumerate() {
                    each(
                        i,
                        head!(dp),
                        exponential(&ExponentialIn::of(dp), unit.unwrap_or_default()),
                        temporality(h.aggregation_temporality),
                    );
                }
            }
            (Some(Data::Histogram(h)), Role::Latency) => {
                for (i, dp) in h.data_points.iter().enumerate() {
                    each(
                        i,
                        head!(dp),
                        explicit(&ExplicitIn::of(dp), unit.unwrap_or_default(), &mut bounds),
                        temporality(h.aggregation_temporality),
                    );
                }
            }
            (Some(Data::Sum(s)), Role::Conversions) if s.is_monotonic => {
                for (i, dp) in s.data_points.iter().enumerate() {
                    each(
                        i,
                        head!(dp),
                        conversions(&NumberIn::of(dp)),
                        temporality(s.aggregation_temporality),
                    );
                }
            }
            _ => {
                let expected = match role {
                    Role::Latency => "a histogram or exponential histogram",
                    Role::Conversions => "a monotonic sum",
                };
                out.note(
                    RejectReason::InvalidPoint,
                    format!("{} is not {expected}", metric.name),
                );
                let why = format!("the metric is not {expected}");
                blame_points(out, ctx, &targets, RejectReason::InvalidPoint, &why, n);
                fates.reject_all(RejectReason::InvalidPoint, &why);
            }
        }
    }
    fates.settle(ctx.origin, out);
}

/// Gives a checked point its series and stream on every target, after the
/// time checks; says whether any target took it.
pub(super) fn place(
    head: PointHead<'_>,
    (own, temporality, counts): (PointKind, Temporality, &[u64]),
    targets: &[&Target],
    ctx: &Context<'_>,
    out: &mut Converted<PointBatch>,
    held: &mut usize,
) -> Fate {
    let (hash, pipelines, now) = (ctx.hash, ctx.pipelines, ctx.now);
    // Time 0 is "now" for metric points (design §3).
    let ts = if head.time == 0 { now } else { head.time };
    let mut fate = Fate::Ignored;
    let mut point_hash: Option<StreamHasher> = None;
    // Whether the point is an error, worked out once for all its targets.
    let mut error = None;
    for t in targets {
        let p = pipelines[t.pipeline];
        let Some(series) = &t.series else {
            fate = fate.and(Fate::Rejected(RejectReason::MissingSubject));
            continue;
        };
        let reason = if head.start > ts {
            Some(RejectReason::InvalidTimes)
        } else {
            time_rejection(p, ts, now)
        };
        if let Some(reason) = reason {
            let why = || match reason {
                RejectReason::InvalidTimes => "start time after its time".to_string(),
                _ => reason.describe().to_string(),
            };
            out.blame(t.pipeline, series, ctx.origin, reason, why, 1);
            fate = fate.and(Fate::Rejected(reason));
            continue;
        }
        let base = point_hash.get_or_insert_with(|| head.attributes.stream(hash));
        let mut h = base.clone();
        h.u64(t.pipeline as u64);
        h.u64(u64::from(t.contract));
        // The counts go into the batch's buffer: each target's copy of
        // the point travels without a vector of its own.
        let mut kind = own.without_counts();
        if let PointKind::Latency(l) = &mut kind {
            l.error = *error.get_or_insert_with(|| head.attributes.is_error());
        }
        let fresh = head.start != 0 && p.timing.deadline_of(head.start) > now;
        let sample = PointSample {
            series: series.clone(),
            ts,
            start: head.start,
            stream: h.finish(),
            temporality,
            fresh,
            kind,
        };
        let shard = p.router.shard_of(series);
        let batch = &mut out.batches[t.pipeline][shard];
        let before = batch.held_bytes();
        batch.push_with(sample, counts);
        *held += batch.held_bytes().saturating_sub(before);
        fate = Fate::Accepted;
    }
    fate
}

/// The requests of a point failed: a server error status or an `error.type`.
pub(super) fn is_error(attributes: &[KeyValue]) -> bool {
    attributes.iter().any(|kv| match kv.key.as_str() {
        "http.response.status_code" | "http.status_code" => {
            http_status(kv).is_some_and(|c| c >= 500)
        }
        "error.type" => kv
            .value
            .as_ref()
            .and_then(super::convert::value_str)
            .is_some_and(|s| !s.is_empty()),
        _ => false,
    })
}

pub(super) fn no_recorded_value(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

/// A histogram's sum, min and max must be finite non-negative numbers when
/// present (a latency is never negative).
fn check_values(values: [Option<f64>; 3]) -> Result<(), (RejectReason, String)> {
    for (what, v) in ["sum", "min", "max"].into_iter().zip(values) {
        if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err((
                RejectReason::InvalidPoint,
                format!("{what} is {v} (must be finite and not negative)"),
            ));
        }
    }
    Ok(())
}

/// The largest count one point may carry: 2^53 (9.007e15) requests is
/// decades of the busiest service, and every count up to it is exact in
/// the f64 arithmetic of the decisions. A larger count is a broken or
/// hostile sender, and adding it would wrap or saturate a window's total.
pub const MAX_POINT_COUNT: u64 = 1 << 53;

/// Refuses counts no real service produces (see [`MAX_POINT_COUNT`]).
fn check_count(count: u64) -> Result<(), (RejectReason, String)> {
    if count > MAX_POINT_COUNT {
        return Err((
            RejectReason::InvalidPoint,
            format!("count {count} cannot be real (the limit is 2^53 per point)"),
        ));
    }
    Ok(())
}

/// Refuses a point with more than [`MAX_POINT_BUCKETS`] buckets.
fn check_buckets(buckets: usize) -> Result<(), (RejectReason, String)> {
    if buckets > MAX_POINT_BUCKETS {
        return Err((
            RejectReason::TooManyBuckets,
            format!("{buckets} buckets (the limit is {MAX_POINT_BUCKETS} per point)"),
        ));
    }
    Ok(())
}

/// A checked latency point; `[sum, min, max]` as the data point has them,
/// its bucket counts `counts` (`buckets` has none: see [`Checked::Point`]).
fn latency_point<'a>(
    unit: LatencyUnit,
    count: u64,
    [sum, min, max]: [Option<f64>; 3],
    buckets: Buckets,
    counts: &'a [u64],
) -> Checked<'a> {
    Checked::Point(
        PointKind::Latency(PointLatency {
            unit,
            count,
            error: false,
            sum,
            min,
            max,
            buckets,
        }),
        counts,
    )
}

/// The scales an exponential histogram may have (the OTLP data model's
/// range: beyond it the buckets of `f64` values are no longer distinct or
/// no longer fit an `i32` index).
const EXPONENTIAL_SCALES: std::ops::RangeInclusive<i32> = -10..=20;

/// Zero counts for an explicit point sent without any (an empty point).
static ZEROS: [u64; MAX_POINT_BUCKETS] = [0; MAX_POINT_BUCKETS];

/// The fields of an exponential histogram point that conversion reads.
pub(super) struct ExponentialIn<'a> {
    pub(super) flags: u32,
    pub(super) count: u64,
    pub(super) sum: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
    pub(super) scale: i32,
    pub(super) zero_count: u64,
    pub(super) zero_threshold: f64,
    /// The positive buckets' offset (0 without positive buckets).
    pub(super) offset: i32,
    /// The positive bucket counts: all of them when there are at most
    /// [`MAX_POINT_BUCKETS`] (a reader may stop keeping them beyond).
    pub(super) counts: &'a [u64],
    /// How many positive bucket counts the point has.
    pub(super) counts_len: usize,
    /// Some negative bucket holds a count.
    pub(super) negative: bool,
}

impl ExponentialIn<'_> {
    fn of(dp: &ExponentialHistogramDataPoint) -> ExponentialIn<'_> {
        let (offset, counts) = dp
            .positive
            .as_ref()
            .map_or((0, &[][..]), |b| (b.offset, &b.bucket_counts[..]));
        ExponentialIn {
            flags: dp.flags,
            count: dp.count,
            sum: dp.sum,
            min: dp.min,
            max: dp.max,
            scale: dp.scale,
            zero_count: dp.zero_count,
            zero_threshold: dp.zero_threshold,
            offset,
            counts,
            counts_len: counts.len(),
            negative: dp
                .negative
                .as_ref()
                .is_some_and(|n| n.bucket_counts.iter().any(|&c| c > 0)),
        }
    }
}

pub(super) fn exponential<'a>(
    dp: &ExponentialIn<'a>,
    unit: LatencyUnit,
) -> Result<Checked<'a>, (RejectReason, String)> {
    if no_recorded_value(dp.flags) {
        return Ok(Checked::Skip);
    }
    check_buckets(dp.counts_len)?;
    if dp.negative {
        return Err((
            RejectReason::NegativeBuckets,
            "negative bucket counts".into(),
        ));
    }
    check_count(dp.count)?;
    check_values([dp.sum, dp.min, dp.max])?;
    if !(dp.zero_threshold.is_finite() && dp.zero_threshold >= 0.0) {
        return Err((
            RejectReason::InvalidPoint,
            format!("zero threshold is {}", dp.zero_threshold),
        ));
    }
    if !EXPONENTIAL_SCALES.contains(&dp.scale) {
        return Err((
            RejectReason::InvalidPoint,
            format!(
                "scale {} is outside {}..={} (the OTLP data model's range)",
                dp.scale,
                EXPONENTIAL_SCALES.start(),
                EXPONENTIAL_SCALES.end()
            ),
        ));
    }
    let (offset, counts) = (dp.offset, dp.counts);
    let total = counts
        .iter()
        .try_fold(dp.zero_count, |t, &c| t.checked_add(c));
    if total != Some(dp.count) {
        return Err((
            RejectReason::InvalidPoint,
            format!(
                "count {} is not the zero count plus the bucket counts",
                dp.count
            ),
        ));
    }
    Ok(latency_point(
        unit,
        dp.count,
        [dp.sum, dp.min, dp.max],
        Buckets::Exponential {
            scale: dp.scale,
            offset,
            counts: Vec::new(),
            zero_count: dp.zero_count,
            zero_threshold: dp.zero_threshold,
        },
        counts,
    ))
}

/// The fields of an explicit-bucket histogram point that conversion reads.
pub(super) struct ExplicitIn<'a> {
    pub(super) flags: u32,
    pub(super) count: u64,
    pub(super) sum: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
    /// The bucket counts and bounds: all of them when the point is within
    /// [`MAX_POINT_BUCKETS`] (a reader may stop keeping them beyond).
    pub(super) bucket_counts: &'a [u64],
    pub(super) explicit_bounds: &'a [f64],
    /// How many bucket counts and bounds the point has.
    pub(super) counts_len: usize,
    pub(super) bounds_len: usize,
}

impl ExplicitIn<'_> {
    fn of(dp: &HistogramDataPoint) -> ExplicitIn<'_> {
        ExplicitIn {
            flags: dp.flags,
            count: dp.count,
            sum: dp.sum,
            min: dp.min,
            max: dp.max,
            bucket_counts: &dp.bucket_counts,
            explicit_bounds: &dp.explicit_bounds,
            counts_len: dp.bucket_counts.len(),
            bounds_len: dp.explicit_bounds.len(),
        }
    }
}

/// The explicit bounds of the last point, shared with the next point when
/// it has the same ones (the points of one metric almost always do): one
/// allocation per layout, not per point.
#[derive(Default)]
pub(super) struct BoundsCache(Option<Arc<[f64]>>);

impl BoundsCache {
    fn get(&mut self, bounds: &[f64]) -> Arc<[f64]> {
        let same = |a: &[f64]| {
            a.len() == bounds.len()
                && a.iter()
                    .zip(bounds)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
        };
        match &self.0 {
            Some(a) if same(a) => a.clone(),
            _ => {
                let a: Arc<[f64]> = Arc::from(bounds);
                self.0 = Some(a.clone());
                a
            }
        }
    }
}

pub(super) fn explicit<'a>(
    dp: &ExplicitIn<'a>,
    unit: LatencyUnit,
    cache: &mut BoundsCache,
) -> Result<Checked<'a>, (RejectReason, String)> {
    if no_recorded_value(dp.flags) {
        return Ok(Checked::Skip);
    }
    check_buckets(dp.counts_len.max(dp.bounds_len + 1))?;
    check_count(dp.count)?;
    check_values([dp.sum, dp.min, dp.max])?;
    let bounds = dp.explicit_bounds;
    if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err((
            RejectReason::InvalidPoint,
            "explicit bounds are not finite and strictly increasing".into(),
        ));
    }
    // An empty point may come without any bucket counts at all.
    let empty = dp.count == 0 && dp.bucket_counts.iter().all(|&c| c == 0);
    if !empty && dp.bucket_counts.len() != bounds.len() + 1 {
        return Err((
            RejectReason::InvalidPoint,
            format!(
                "{} bucket counts for {} bounds (need one more count than bounds)",
                dp.bucket_counts.len(),
                bounds.len()
            ),
        ));
    }
    let total = dp
        .bucket_counts
        .iter()
        .try_fold(0u64, |t, &c| t.checked_add(c));
    if total != Some(dp.count) {
        return Err((
            RejectReason::InvalidPoint,
            format!("count {} is not the sum of the bucket counts", dp.count),
        ));
    }
    // A latency is never negative: counts in a bucket wholly below zero
    // (its upper bound is) are refused like negative exponential buckets.
    if bounds.first().is_some_and(|b| *b < 0.0)
        && bounds
            .iter()
            .zip(dp.bucket_counts)
            .any(|(b, c)| *b < 0.0 && *c > 0)
    {
        return Err((
            RejectReason::NegativeBuckets,
            "counts in buckets below zero (a latency is never negative)".into(),
        ));
    }
    let counts = if empty {
        // Within the limit: `check_buckets` saw `bounds.len() + 1`.
        ZEROS.get(..bounds.len() + 1).ok_or_else(|| {
            (
                RejectReason::TooManyBuckets,
                format!("{} bounds", bounds.len()),
            )
        })?
    } else {
        dp.bucket_counts
    };
    Ok(latency_point(
        unit,
        dp.count,
        [dp.sum, dp.min, dp.max],
        Buckets::Explicit {
            bounds: cache.get(bounds),
            counts: Vec::new(),
        },
        counts,
    ))
}

/// The fields of a number point that conversion reads.
pub(super) struct NumberIn {
    pub(super) flags: u32,
    pub(super) value: Option<number_data_point::Value>,
}

impl NumberIn {
    fn of(dp: &NumberDataPoint) -> NumberIn {
        NumberIn {
            flags: dp.flags,
            value: dp.value,
        }
    }
}

pub(super) fn conversions(dp: &NumberIn) -> Result<Checked<'static>, (RejectReason, String)> {
    if no_recorded_value(dp.flags) {
        return Ok(Checked::Skip);
    }
    let v = match dp.value {
        Some(number_data_point::Value::AsInt(i)) if i >= 0 => i as f64,
        Some(number_data_point::Value::AsDouble(d)) if d.is_finite() && d >= 0.0 => d,
        Some(number_data_point::Value::AsInt(i)) => {
            return Err((RejectReason::InvalidPoint, format!("value is {i}")))
        }
        Some(number_data_point::Value::AsDouble(d)) => {
            return Err((RejectReason::InvalidPoint, format!("value is {d}")))
        }
        None => return Err((RejectReason::InvalidPoint, "no value".into())),
    };
    if v > MAX_POINT_COUNT as f64 {
        return Err((
            RejectReason::InvalidPoint,
            format!("value {v} cannot be real (the limit is 2^53 per point)"),
        ));
    }
    Ok(Checked::Point(PointKind::Conversions(v), &[]))
}

#[cfg(test)]
#[path = "convert_metrics_tests.rs"]
mod tests;
