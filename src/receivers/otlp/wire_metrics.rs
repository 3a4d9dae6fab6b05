//! The protobuf hot path for metrics: reads an
//! `ExportMetricsServiceRequest` straight from the wire, borrowing from the
//! request body, with the reading rules of the trace reader
//! ([`super::wire`]: the same framing checks, last-wins scalars, merged
//! messages, prost's nesting limit).
//!
//! Only the metrics a contract reads (by name) are looked into; every other
//! metric is framed and its data points counted, never decoded. Of a metric
//! that is read, each data point is read once, into buffers reused for the
//! whole request, and checked and placed by the very functions the prost
//! path uses ([`super::convert_metrics`]), so both give the same samples,
//! rejections and notes; a property test and the `wire_metrics` fuzz
//! target compare them. What differs is the order of the work, not its
//! result: the prost path offers every point to each role of the metric
//! in turn and settles the points at the end; here the roles a metric
//! cannot satisfy are known before its points are read (they depend on the
//! metric's unit and type only), so each point is settled as soon as it is
//! read and nothing is kept per point.
//!
//! Memory: what a request keeps is its samples (and their bucket counts),
//! charged to the in-flight budget as each one is made, before the next
//! point is read; a request whose samples outgrow what the budget has left
//! is refused (retryable) on the spot. Everything else is bounded: the
//! reused buffers by one point (a point is kept only up to
//! [`MAX_POINT_BUCKETS`] buckets, its length counted beyond, for the
//! rejection), and rejection details by the fixed caps of [`Converted`].
//! prost, in contrast, allocates every point, attribute and exemplar
//! first: an empty `KeyValue` is 2 bytes on the wire and about 80 in
//! memory, so a 17 MiB request of them grew to over 700 MB before
//! conversion could see it.
//!
//! The stream identity hashes each attribute by its bytes on the wire;
//! the prost path hashes the attribute re-encoded, which is the same
//! bytes for every encoder that writes fields in order without defaults
//! (all OTLP SDKs and collectors). A sender whose encoding differs gets
//! another, equally stable identity.
//!
//! Where it differs from prost, it is more lenient, and only inside fields
//! it does not read: metric descriptions and metadata, schema URLs of
//! nothing, exemplars, resource entity refs, scope attributes and point
//! attributes other than the error ones (framed, hashed by their bytes),
//! and the data points of metrics no contract reads, or reads as a type
//! they are not (framed and counted).

use std::borrow::Cow;

use opentelemetry_proto::tonic::metrics::v1::number_data_point;

use super::budget::Charge;
use super::convert::{lookup, targets, Converted, Origin, RejectReason, Target, HTTP_STATUS_KEYS};
use super::convert_metrics::{
    blame_points, conversions, explicit, exponential, looks_like_millis, place, role_targets,
    temporality, warn_bounds, BoundsCache, Checked, Context, ExplicitIn, ExponentialIn, Fate,
    NumberIn, PointAttrs, PointHead, Role, StreamHasher,
};
use super::wire::{
    http_status, kv_key, kv_value, resource_and_scopes, utf8, Reader, Scalar, WireError, FIXED64,
    LEN, VARINT,
};
use super::IngestError;
use crate::config::Source;
use crate::model::point::{LatencyUnit, MAX_POINT_BUCKETS};
use crate::model::UnixNanos;
use crate::model::{HeldBytes, PointBatch};
use crate::receivers::PipelineInput;

/// Why reading stopped.
enum Stop {
    /// Malformed protobuf.
    Wire(WireError),
    /// The samples outgrew the in-flight budget.
    Budget(IngestError),
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Stop {
        Stop::Wire(e)
    }
}

/// The budget is grown in steps of this much (fewer semaphore operations
/// than one per point).
const CHARGE_STEP: usize = 16 * 1024;

/// Most samples a metric's batch makes room for at once (about 350 KiB).
const RESERVED_POINTS: usize = 2048;

/// Converts a protobuf `ExportMetricsServiceRequest` body into point
/// samples, like [`super::convert_metrics::convert_metrics`] does for the
/// decoded message, charging `charge` for the samples as they are made.
/// Malformed bytes are [`IngestError::Malformed`]; samples the budget
/// cannot cover are [`IngestError::Memory`] (counted).
pub fn convert_metrics(
    body: &[u8],
    pipelines: &[&PipelineInput],
    now: UnixNanos,
    charge: &mut Charge,
) -> Result<Converted<PointBatch>, IngestError> {
    let mut c = Conversion {
        pipelines,
        now,
        out: Converted::new(pipelines),
        charge,
        held: 0,
        counts: Vec::new(),
        bounds: Vec::new(),
        parts: Vec::new(),
    };
    match c.request(body) {
        Ok(()) => Ok(c.out),
        Err(Stop::Wire(e)) => Err(IngestError::Malformed(e.to_string())),
        Err(Stop::Budget(e)) => Err(e),
    }
}

/// One request's conversion.
struct Conversion<'a, 'p, 'c> {
    pipelines: &'p [&'p PipelineInput],
    now: UnixNanos,
    out: Converted<PointBatch>,
    charge: &'c mut Charge,
    /// Bytes the samples made so far hold.
    held: usize,
    /// Bucket counts of the point being read.
    counts: Vec<u64>,
    /// Explicit bounds of the point being read.
    bounds: Vec<f64>,
    /// The data message(s) of the metric being read.
    parts: Vec<Reader<'a>>,
}

/// A metric's data, as its type's field number in `Metric` (0: none).
const GAUGE: u32 = 5;
const SUM: u32 = 7;
const HISTOGRAM: u32 = 9;
const EXPONENTIAL: u32 = 10;
const SUMMARY: u32 = 11;

/// The fields of a metric's data message besides its points.
#[derive(Default)]
struct DataHead {
    points: u64,
    temporality: i32,
    monotonic: bool,
}

/// Reads the data message(s) of a metric of type `kind` (several of one
/// type merge, as if concatenated): its points are counted, not read.
fn data_head(kind: u32, parts: &[Reader<'_>]) -> Result<DataHead, WireError> {
    let mut head = DataHead::default();
    for part in parts {
        let mut r = *part;
        while let Some((field, wt)) = r.key()? {
            match (field, kind) {
                (1, _) => {
                    r.expect_len(wt)?;
                    head.points += 1;
                }
                (2, SUM | HISTOGRAM | EXPONENTIAL) => {
                    head.temporality = r.expect_varint(wt)? as i32
                }
                (3, SUM) => head.monotonic = r.expect_varint(wt)? != 0,
                _ => r.skip(field, wt)?,
            }
        }
    }
    Ok(head)
}

/// What conversion does for one role of a metric.
enum Step {
    /// Read every point.
    Points,
    /// Refuse every point: `(reason, note, why)`.
    Refuse(RejectReason, String, String),
}

/// A point's attributes as read: the stream identity and the error flag.
struct WireAttrs {
    stream: StreamHasher,
    error: bool,
}

impl PointAttrs for WireAttrs {
    fn stream(&self, _metric: &StreamHasher) -> StreamHasher {
        self.stream.clone()
    }
    fn is_error(&self) -> bool {
        self.error
    }
}

/// Reads one attribute of a point into `attrs`: hashed by its bytes, and
/// looked into when its key says the requests failed (what
/// [`super::convert_metrics::is_error`] looks for).
fn point_attribute(
    r: &mut Reader<'_>,
    wt: u8,
    attrs: &mut WireAttrs,
    n: &mut u64,
) -> Result<(), WireError> {
    let bytes = r.expect_len(wt)?;
    attrs.stream.attribute(bytes);
    *n += 1;
    let kv = r.nested(bytes);
    let key = kv_key(kv)?;
    let status = HTTP_STATUS_KEYS.iter().any(|k| k.as_bytes() == key);
    if status || key == b"error.type" {
        let value = kv_value(kv)?;
        attrs.error |= if status {
            http_status(&value).is_some_and(|c| c >= 500)
        } else {
            match value {
                Scalar::Str(s) => !s.is_empty(),
                Scalar::Bool(_) | Scalar::Int(_) | Scalar::Double(_) => true,
                Scalar::Other => false,
            }
        };
    }
    Ok(())
}

/// Appends the values of a `repeated fixed64` or `repeated double` field
/// (packed or not) to `out`, keeping at most `MAX_POINT_BUCKETS + 1`;
/// returns how many there were.
fn fixed64s<T>(
    r: &mut Reader<'_>,
    wt: u8,
    out: &mut Vec<T>,
    of: impl Fn(u64) -> T,
) -> Result<usize, WireError> {
    let keep = |out: &Vec<T>| (MAX_POINT_BUCKETS + 1).saturating_sub(out.len());
    match wt {
        LEN => {
            let b = r.bytes()?;
            if b.len() % 8 != 0 {
                return Err(WireError(
                    "packed fixed64 field of a length not a multiple of 8",
                ));
            }
            let words = b.chunks_exact(8).map(|w| {
                let mut a = [0u8; 8];
                a.copy_from_slice(w);
                of(u64::from_le_bytes(a))
            });
            out.extend(words.take(keep(out)));
            Ok(b.len() / 8)
        }
        FIXED64 => {
            let v = r.fixed64()?;
            if keep(out) > 0 {
                out.push(of(v));
            }
            Ok(1)
        }
        _ => Err(WireError("wrong wire type for a repeated fixed64 field")),
    }
}

/// Appends the values of a `repeated uint64` field (packed or not) to
/// `out` when given (at most `MAX_POINT_BUCKETS + 1`), returning how many
/// there were and whether any was not 0.
fn varints(
    r: &mut Reader<'_>,
    wt: u8,
    out: Option<&mut Vec<u64>>,
) -> Result<(usize, bool), WireError> {
    match wt {
        LEN => {
            let b = r.bytes()?;
            let mut packed = r.nested(b);
            match out {
                Some(out) => packed_into(&mut packed, out),
                None => {
                    let (mut n, mut any) = (0, false);
                    while !packed.is_empty() {
                        any |= packed.varint()? != 0;
                        n += 1;
                    }
                    Ok((n, any))
                }
            }
        }
        VARINT => {
            let v = r.varint()?;
            if let Some(out) = out {
                if out.len() <= MAX_POINT_BUCKETS {
                    out.push(v);
                }
            }
            Ok((1, v != 0))
        }
        _ => Err(WireError("wrong wire type for a repeated uint64 field")),
    }
}

/// The values of a packed `repeated uint64` field, appended to `out` up
/// to `MAX_POINT_BUCKETS + 1` in all: how many there were and whether any
/// was not 0.
///
/// Reading the 160 counts of an exponential point one varint at a time
/// was a third of what the point cost its receiver. A count below 128 is
/// one byte, its own value: delta points and the sparse buckets of any
/// histogram are mostly such runs, which are found and copied a run at a
/// time; any longer varint is read as before.
fn packed_into(packed: &mut Reader<'_>, out: &mut Vec<u64>) -> Result<(usize, bool), WireError> {
    let mut keep = (MAX_POINT_BUCKETS + 1).saturating_sub(out.len());
    out.reserve(packed.rest().len().min(keep));
    let (mut n, mut any) = (0, false);
    while !packed.is_empty() {
        let rest = packed.rest();
        let run = rest.iter().position(|&b| b >= 0x80).unwrap_or(rest.len());
        if run > 0 {
            let small = &rest[..run];
            let kept = run.min(keep);
            out.extend(small[..kept].iter().map(|&b| u64::from(b)));
            keep -= kept;
            any |= small.iter().any(|&b| b != 0);
            n += run;
            packed.advance(run);
            continue;
        }
        let v = packed.varint()?;
        if keep > 0 {
            out.push(v);
            keep -= 1;
        }
        n += 1;
        any |= v != 0;
    }
    Ok((n, any))
}

fn sint32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn double(r: &mut Reader<'_>, wt: u8) -> Result<f64, WireError> {
    r.expect_fixed64(wt).map(f64::from_bits)
}

/// The time fields every point type has (fields 2 and 3).
#[derive(Default)]
struct Times {
    start: u64,
    time: u64,
}

impl<'a> Conversion<'a, '_, '_> {
    /// Charges the budget for what the samples hold now.
    fn charge_held(&mut self) -> Result<(), Stop> {
        if self.held > self.charge.bytes() {
            self.charge
                .grow_to(self.held.next_multiple_of(CHARGE_STEP))
                .map_err(Stop::Budget)?;
        }
        Ok(())
    }

    /// Makes room for `points` samples in the batch of each target at
    /// once, charged like the samples: a batch grown point by point
    /// copies its samples again at every doubling (a sample is some 170
    /// bytes). At most [`RESERVED_POINTS`], so that a request of millions
    /// of empty points takes no more than it is charged for as it goes.
    fn reserve(&mut self, targets: &[&Target], points: u64) -> Result<(), Stop> {
        let n = usize::try_from(points).map_or(RESERVED_POINTS, |n| n.min(RESERVED_POINTS));
        for t in targets {
            let Some(series) = &t.series else { continue };
            let shard = self.pipelines[t.pipeline].router.shard_of(series);
            let batch = &mut self.out.batches[t.pipeline][shard];
            let before = batch.held_bytes();
            batch.reserve(n);
            self.held += batch.held_bytes().saturating_sub(before);
        }
        self.charge_held()
    }

    fn request(&mut self, body: &'a [u8]) -> Result<(), Stop> {
        let mut scopes: Vec<Reader<'a>> = Vec::new();
        let mut attrs: Vec<(&'a str, Cow<'a, str>)> = Vec::new();
        let mut req = Reader::new(body);
        while let Some((field, wt)) = req.key()? {
            if field != 1 {
                req.skip(field, wt)?;
                continue;
            }
            let r = req.expect_message(wt)?;
            let mut resource_hash = StreamHasher::new();
            let resource =
                resource_and_scopes(r, &mut attrs, &mut scopes, |kv| resource_hash.attribute(kv))?;
            if let Some(n) = resource {
                resource_hash.attributes_end(n);
            }
            let targets = targets(
                &attrs,
                self.pipelines,
                Source::Metrics,
                &mut self.out.missing,
            );
            let service = lookup(&attrs, "service.name").unwrap_or("");
            for scope in &scopes {
                self.scope(*scope, &resource_hash, &targets, service)?;
            }
        }
        Ok(())
    }

    /// One `ScopeMetrics`: the scope (merged over its occurrences) goes
    /// into the stream identity, then each metric is read.
    fn scope(
        &mut self,
        sm: Reader<'a>,
        resource: &StreamHasher,
        targets: &[Target],
        service: &str,
    ) -> Result<(), Stop> {
        let (mut seen, mut name, mut version) = (false, "", "");
        let mut r = sm;
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => {
                    seen = true;
                    let mut s = r.expect_message(wt)?;
                    while let Some((f, wt)) = s.key()? {
                        match f {
                            1 => name = utf8(s.expect_len(wt)?)?,
                            2 => version = utf8(s.expect_len(wt)?)?,
                            3 => drop(s.expect_len(wt)?),
                            4 => drop(s.expect_varint(wt)?),
                            _ => s.skip(f, wt)?,
                        }
                    }
                }
                2 => drop(r.expect_len(wt)?),
                3 => drop(utf8(r.expect_len(wt)?)?),
                _ => r.skip(field, wt)?,
            }
        }
        let mut hash = resource.clone();
        if seen {
            // Name and version, then the attributes of every occurrence of
            // the scope (read and checked above, so nothing fails here).
            hash.str(name);
            hash.str(version);
            let mut n = 0;
            let mut r = sm;
            while let Some((field, wt)) = r.key()? {
                if field == 1 {
                    let mut s = r.expect_message(wt)?;
                    while let Some((f, wt)) = s.key()? {
                        if f == 3 {
                            hash.attribute(s.expect_len(wt)?);
                            n += 1;
                        } else {
                            s.skip(f, wt)?;
                        }
                    }
                } else {
                    r.skip(field, wt)?;
                }
            }
            hash.attributes_end(n);
        } else {
            hash.u64(u64::MAX);
        }
        let mut r = sm;
        while let Some((field, wt)) = r.key()? {
            if field == 2 {
                let m = r.expect_message(wt)?;
                self.metric(m, &hash, targets, service)?;
            } else {
                r.skip(field, wt)?;
            }
        }
        Ok(())
    }

    fn metric(
        &mut self,
        m: Reader<'a>,
        scope: &StreamHasher,
        targets: &[Target],
        service: &str,
    ) -> Result<(), Stop> {
        let (mut name, mut unit, mut kind) = ("", "", 0);
        self.parts.clear();
        let mut r = m;
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => name = utf8(r.expect_len(wt)?)?,
                // The description: not read.
                2 => drop(r.expect_len(wt)?),
                3 => unit = utf8(r.expect_len(wt)?)?,
                GAUGE | SUM | HISTOGRAM | EXPONENTIAL | SUMMARY => {
                    let data = r.expect_message(wt)?;
                    // A oneof: another type replaces, the same type merges.
                    if field != kind {
                        kind = field;
                        self.parts.clear();
                    }
                    self.parts.push(data);
                }
                // Metadata: not read.
                12 => drop(r.expect_len(wt)?),
                _ => r.skip(field, wt)?,
            }
        }
        let head = data_head(kind, &self.parts)?;
        self.out.items += head.points;
        let pipelines = self.pipelines;
        let roles: Vec<(&Target, Role)> = targets
            .iter()
            .filter_map(|t| {
                let spec = &pipelines[t.pipeline].contracts[t.contract as usize];
                if name == spec.latency_metric {
                    Some((t, Role::Latency))
                } else if name == spec.conversions_metric {
                    Some((t, Role::Conversions))
                } else {
                    None
                }
            })
            .collect();
        if roles.is_empty() {
            self.out.ignored += head.points;
            return Ok(());
        }
        let mut hash = scope.clone();
        hash.str(name);
        let origin = Origin {
            service,
            noun: "points",
            metric: name,
        };
        let ctx = Context {
            hash: &hash,
            pipelines,
            now: self.now,
            origin: &origin,
        };
        self.points(&MetricHead { name, unit, kind }, &head, &roles, &ctx)
    }

    /// Every point of a metric some contract reads, each settled once over
    /// all roles, in the order the prost path gives (see the module docs).
    fn points(
        &mut self,
        metric: &MetricHead<'a>,
        head: &DataHead,
        roles: &[(&Target, Role)],
        ctx: &Context<'_>,
    ) -> Result<(), Stop> {
        let n = head.points;
        let mut steps: Vec<(Vec<&Target>, Role, Step)> = Vec::new();
        for role in [Role::Latency, Role::Conversions] {
            let targets = role_targets(roles, role);
            if targets.is_empty() {
                continue;
            }
            let unit_ok = role == Role::Conversions || LatencyUnit::parse(metric.unit).is_some();
            let step = if !unit_ok {
                Step::Refuse(
                    RejectReason::Unit,
                    format!("{} has unit {:?}", metric.name, metric.unit),
                    format!("unit {:?} is not s, ms or us", metric.unit),
                )
            } else {
                match (metric.kind, role) {
                    (EXPONENTIAL | HISTOGRAM, Role::Latency) => Step::Points,
                    (SUM, Role::Conversions) if head.monotonic => Step::Points,
                    _ => {
                        let expected = match role {
                            Role::Latency => "a histogram or exponential histogram",
                            Role::Conversions => "a monotonic sum",
                        };
                        Step::Refuse(
                            RejectReason::InvalidPoint,
                            format!("{} is not {expected}", metric.name),
                            format!("the metric is not {expected}"),
                        )
                    }
                }
            };
            steps.push((targets, role, step));
        }
        // What the refusing roles before and after the one that reads the
        // points add to each point's fate.
        let reads = steps.iter().position(|(_, _, s)| matches!(s, Step::Points));
        let fold = |steps: &[(Vec<&Target>, Role, Step)]| {
            steps.iter().fold(Fate::Ignored, |f, (_, _, s)| match s {
                Step::Refuse(reason, ..) => f.and(Fate::Rejected(*reason)),
                Step::Points => f,
            })
        };
        let split = reads.unwrap_or(steps.len());
        let (before, after) = (fold(&steps[..split]), fold(&steps[split..]));
        let mut tally = Tally::default();
        for (i, (targets, _, step)) in steps.iter().enumerate() {
            match step {
                Step::Refuse(reason, note, why) => {
                    self.out.note(*reason, note.clone());
                    blame_points(&mut self.out, ctx, targets, *reason, why, n);
                    tally.why(*reason, why);
                }
                Step::Points => {
                    debug_assert_eq!(Some(i), reads);
                    let read = Read {
                        metric,
                        targets,
                        points: n,
                        temporality: head.temporality,
                        before,
                        after,
                    };
                    self.read_points(&read, ctx, &mut tally)?;
                }
            }
        }
        if reads.is_none() {
            tally.add_n(before.and(after), n);
        }
        tally.settle(ctx.origin, &mut self.out);
        Ok(())
    }

    /// Reads, checks and places every point of the metric for the role
    /// that reads them.
    fn read_points(
        &mut self,
        read: &Read<'_, 'a>,
        ctx: &Context<'_>,
        tally: &mut Tally,
    ) -> Result<(), Stop> {
        self.reserve(read.targets, read.points)?;
        let unit = LatencyUnit::parse(read.metric.unit).unwrap_or_default();
        let mut cache = BoundsCache::default();
        let mut warned = false;
        for p in 0..self.parts.len() {
            let mut r = self.parts[p];
            while let Some((field, wt)) = r.key()? {
                if field != 1 {
                    r.skip(field, wt)?;
                    continue;
                }
                let point = r.expect_message(wt)?;
                let mut attrs = WireAttrs {
                    stream: ctx.hash.clone(),
                    error: false,
                };
                let (times, checked) = match read.metric.kind {
                    HISTOGRAM => {
                        let (times, dp) = self.explicit_point(point, &mut attrs)?;
                        let dp = ExplicitIn {
                            bucket_counts: &self.counts,
                            explicit_bounds: &self.bounds,
                            ..dp
                        };
                        if !warned && looks_like_millis(read.metric.unit, &self.bounds) {
                            warned = true;
                            warn_bounds(
                                read.metric.name,
                                read.metric.unit,
                                &self.bounds,
                                ctx.origin.service,
                            );
                        }
                        (times, explicit(&dp, unit, &mut cache))
                    }
                    EXPONENTIAL => {
                        let (times, dp) = self.exponential_point(point, &mut attrs)?;
                        let dp = ExponentialIn {
                            counts: &self.counts,
                            ..dp
                        };
                        (times, exponential(&dp, unit))
                    }
                    _ => {
                        let (times, dp) = number_point(point, &mut attrs)?;
                        (times, conversions(&dp))
                    }
                };
                let head = PointHead {
                    attributes: &attrs,
                    start: times.start,
                    time: times.time,
                };
                // The checked point borrows the counts it read; its batch
                // and the charge are other fields.
                let fate = Self::settle_point(
                    (&mut self.out, &mut self.held),
                    read,
                    ctx,
                    head,
                    checked,
                    tally,
                );
                tally.add(read.before.and(fate).and(read.after));
                self.charge_held()?;
            }
        }
        Ok(())
    }

    /// What becomes of one checked point for the role that reads it (the
    /// `each` closure of the prost path).
    fn settle_point(
        (out, held): (&mut Converted<PointBatch>, &mut usize),
        read: &Read<'_, 'a>,
        ctx: &Context<'_>,
        head: PointHead<'_>,
        checked: Result<Checked<'_>, (RejectReason, String)>,
        tally: &mut Tally,
    ) -> Fate {
        let name = read.metric.name;
        match (checked, temporality(read.temporality)) {
            (Ok(Checked::Skip), _) => Fate::Ignored,
            (Ok(Checked::Point(..)), None) => {
                out.note(
                    RejectReason::InvalidPoint,
                    format!("{name}: aggregation temporality unspecified"),
                );
                let why = "aggregation temporality unspecified";
                blame_points(out, ctx, read.targets, RejectReason::InvalidPoint, why, 1);
                tally.why(RejectReason::InvalidPoint, why);
                Fate::Rejected(RejectReason::InvalidPoint)
            }
            (Err((reason, note)), _) => {
                out.note(reason, format!("{name}: {note}"));
                blame_points(out, ctx, read.targets, reason, &note, 1);
                tally.why(reason, &note);
                Fate::Rejected(reason)
            }
            (Ok(Checked::Point(kind, counts)), Some(t)) => {
                place(head, (kind, t, counts), read.targets, ctx, out, held)
            }
        }
    }

    /// Reads a `HistogramDataPoint`: its scalars, its counts and bounds into
    /// the reused buffers.
    fn explicit_point(
        &mut self,
        mut r: Reader<'a>,
        attrs: &mut WireAttrs,
    ) -> Result<(Times, ExplicitIn<'static>), WireError> {
        self.counts.clear();
        self.bounds.clear();
        let mut t = Times::default();
        let mut dp = ExplicitIn {
            flags: 0,
            count: 0,
            sum: None,
            min: None,
            max: None,
            bucket_counts: &[],
            explicit_bounds: &[],
            counts_len: 0,
            bounds_len: 0,
        };
        let mut n = 0;
        while let Some((field, wt)) = r.key()? {
            match field {
                2 => t.start = r.expect_fixed64(wt)?,
                3 => t.time = r.expect_fixed64(wt)?,
                4 => dp.count = r.expect_fixed64(wt)?,
                5 => dp.sum = Some(double(&mut r, wt)?),
                6 => dp.counts_len += fixed64s(&mut r, wt, &mut self.counts, |v| v)?,
                7 => dp.bounds_len += fixed64s(&mut r, wt, &mut self.bounds, f64::from_bits)?,
                // Exemplars: not read.
                8 => drop(r.expect_len(wt)?),
                9 => point_attribute(&mut r, wt, attrs, &mut n)?,
                10 => dp.flags = r.expect_varint(wt)? as u32,
                11 => dp.min = Some(double(&mut r, wt)?),
                12 => dp.max = Some(double(&mut r, wt)?),
                _ => r.skip(field, wt)?,
            }
        }
        attrs.stream.attributes_end(n);
        Ok((t, dp))
    }

    /// Reads an `ExponentialHistogramDataPoint`: its scalars, its positive
    /// counts into the reused buffer (negative ones are only looked at).
    fn exponential_point(
        &mut self,
        mut r: Reader<'a>,
        attrs: &mut WireAttrs,
    ) -> Result<(Times, ExponentialIn<'static>), WireError> {
        self.counts.clear();
        let mut t = Times::default();
        let mut dp = ExponentialIn {
            flags: 0,
            count: 0,
            sum: None,
            min: None,
            max: None,
            scale: 0,
            zero_count: 0,
            zero_threshold: 0.0,
            offset: 0,
            counts: &[],
            counts_len: 0,
            negative: false,
        };
        let mut n = 0;
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => point_attribute(&mut r, wt, attrs, &mut n)?,
                2 => t.start = r.expect_fixed64(wt)?,
                3 => t.time = r.expect_fixed64(wt)?,
                4 => dp.count = r.expect_fixed64(wt)?,
                5 => dp.sum = Some(double(&mut r, wt)?),
                6 => dp.scale = sint32(r.expect_varint(wt)?),
                7 => dp.zero_count = r.expect_fixed64(wt)?,
                8 | 9 => {
                    let mut b = r.expect_message(wt)?;
                    let positive = field == 8;
                    while let Some((f, wt)) = b.key()? {
                        match f {
                            1 => {
                                let offset = sint32(b.expect_varint(wt)?);
                                if positive {
                                    dp.offset = offset;
                                }
                            }
                            2 if positive => {
                                dp.counts_len += varints(&mut b, wt, Some(&mut self.counts))?.0;
                            }
                            2 => dp.negative |= varints(&mut b, wt, None)?.1,
                            _ => b.skip(f, wt)?,
                        }
                    }
                }
                10 => dp.flags = r.expect_varint(wt)? as u32,
                // Exemplars: not read.
                11 => drop(r.expect_len(wt)?),
                12 => dp.min = Some(double(&mut r, wt)?),
                13 => dp.max = Some(double(&mut r, wt)?),
                14 => dp.zero_threshold = double(&mut r, wt)?,
                _ => r.skip(field, wt)?,
            }
        }
        attrs.stream.attributes_end(n);
        Ok((t, dp))
    }
}

/// Reads a `NumberDataPoint`.
fn number_point(mut r: Reader<'_>, attrs: &mut WireAttrs) -> Result<(Times, NumberIn), WireError> {
    let mut t = Times::default();
    let mut dp = NumberIn {
        flags: 0,
        value: None,
    };
    let mut n = 0;
    while let Some((field, wt)) = r.key()? {
        match field {
            2 => t.start = r.expect_fixed64(wt)?,
            3 => t.time = r.expect_fixed64(wt)?,
            4 => dp.value = Some(number_data_point::Value::AsDouble(double(&mut r, wt)?)),
            5 => drop(r.expect_len(wt)?),
            6 => dp.value = Some(number_data_point::Value::AsInt(r.expect_fixed64(wt)? as i64)),
            7 => point_attribute(&mut r, wt, attrs, &mut n)?,
            8 => dp.flags = r.expect_varint(wt)? as u32,
            _ => r.skip(field, wt)?,
        }
    }
    attrs.stream.attributes_end(n);
    Ok((t, dp))
}

/// What a metric's points are read with.
struct MetricHead<'a> {
    name: &'a str,
    unit: &'a str,
    kind: u32,
}

/// The role that reads a metric's points, and the fates the other roles
/// add to each of them.
struct Read<'r, 'a> {
    metric: &'r MetricHead<'a>,
    targets: &'r [&'r Target],
    /// Points of the metric (framed, not read yet).
    points: u64,
    temporality: i32,
    before: Fate,
    after: Fate,
}

/// The settled fates of one metric's points, counted as they are settled
/// (the prost path's `Fates`, without a fate per point).
#[derive(Default)]
struct Tally {
    accepted: u64,
    ignored: u64,
    /// Rejected points by reason, in the order of each reason's first point.
    rejected: Vec<(RejectReason, u64)>,
    /// The first detailed reason given per reject reason.
    whys: Vec<(RejectReason, String)>,
}

impl Tally {
    fn why(&mut self, reason: RejectReason, why: &str) {
        if !self.whys.iter().any(|(r, _)| *r == reason) {
            self.whys.push((reason, why.to_string()));
        }
    }

    fn add(&mut self, fate: Fate) {
        self.add_n(fate, 1);
    }

    fn add_n(&mut self, fate: Fate, n: u64) {
        if n == 0 {
            return;
        }
        match fate {
            Fate::Accepted => self.accepted += n,
            Fate::Ignored => self.ignored += n,
            Fate::Rejected(r) => match self.rejected.iter_mut().find(|(x, _)| *x == r) {
                Some((_, c)) => *c += n,
                None => self.rejected.push((r, n)),
            },
        }
    }

    fn settle(self, origin: &Origin<'_>, out: &mut Converted<PointBatch>) {
        out.accepted += self.accepted;
        out.ignored += self.ignored;
        for (reason, n) in self.rejected {
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

#[cfg(test)]
#[path = "wire_metrics_tests.rs"]
pub(crate) mod tests;
