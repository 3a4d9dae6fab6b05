//! The pipeline file as written: serde input types, one per component type,
//! plus the value types that read sizes, durations and numbers. Nothing here
//! checks bounds or references; `validate` turns these into
//! [`ValidatedConfig`](super::ValidatedConfig).
//!
//! The file's top level is a map with `receivers`, `processors`, `exporters`,
//! `pipelines` (each a map from component id / pipeline name to its settings)
//! and `service`. `validate` walks that level itself and deserializes every
//! component on its own, so that one broken component does not hide the
//! problems of the others.
//!
//! Two choices make "every problem at once" possible, since serde stops at
//! the first error and never visits the keys after it:
//! - these structs deliberately do **not** use `#[serde(deny_unknown_fields)]`
//!   (it stops at the first unknown key); unknown keys are ignored by serde
//!   here and collected, all of them with their full path, by
//!   `serde_ignored` in `validate`;
//! - every field is a [`Field`], whose [`Checked`] value keeps a type or
//!   format error as data instead of failing, so the rest of the component
//!   is still read. `validate` reports it under the field's path.
//!
//! Every field is optional so that defaults live in one place (`validate`).
//!
//! Values may come from YAML or, as strings, from `VERDICT__…` environment
//! overrides, so every numeric, size, duration and list type below also
//! accepts a string (`"120"`, `"20MiB"`, `"a, b"`).

use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// `receivers.otlp[/NAME]`: OTLP over gRPC and/or HTTP.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOtlpReceiver {
    /// Which protocols to serve. A protocol left out is not listened on; one
    /// present without an `endpoint` listens on its default. At least one is
    /// required.
    pub protocols: Field<MapOnly<RawOtlpProtocols>>,
    /// Largest accepted request body after decompression: a byte size
    /// (`20MiB`, `512KiB`, `1GB`) or a number of bytes. Default `20MiB`.
    /// Larger requests get HTTP 413 / gRPC RESOURCE_EXHAUSTED.
    pub max_request_bytes: Field<ByteSize>,
    /// Client authentication; absent = none.
    pub auth: Field<MapOnly<RawAuth>>,
}

/// `receivers.otlp.protocols`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOtlpProtocols {
    /// OTLP/gRPC listener. `grpc:` with no value listens on the default
    /// endpoint `0.0.0.0:4317`.
    #[serde(default, deserialize_with = "present")]
    pub grpc: Field<MapOnly<RawListener>>,
    /// OTLP/HTTP listener (`/v1/traces`, `/v1/metrics`, `/v1/logs`). `http:`
    /// with no value listens on the default endpoint `0.0.0.0:4318`.
    #[serde(default, deserialize_with = "present")]
    pub http: Field<MapOnly<RawListener>>,
}

/// A listener: `{ endpoint: host:port, tls: {...} }`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawListener {
    /// Listen address `host:port` (`0.0.0.0:4317`, `localhost:4318`,
    /// `"[::]:4317"`). Absent or empty = the protocol's default.
    pub endpoint: Field<String>,
    /// TLS on this listener; absent = plain text.
    pub tls: Field<MapOnly<RawTls>>,
    /// CORS for browser SDKs (OTLP/HTTP only); absent = none.
    pub cors: Field<MapOnly<RawCors>>,
}

/// `cors:` of the OTLP/HTTP listener, with the OpenTelemetry Collector's
/// `confighttp` names.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCors {
    /// Origins allowed to send (`https://app.example.com`), each with at
    /// most one `*` (`https://*.example.com`), or `*` for any. Required.
    pub allowed_origins: Field<StringList>,
    /// Request headers allowed besides the CORS-safelisted ones (`Accept`,
    /// `Accept-Language`, `Content-Language`, `Content-Type`); `*` for any.
    pub allowed_headers: Field<StringList>,
    /// How long, in seconds, a browser may cache a preflight answer.
    /// Default: not sent (the browser's own, 5 s in most).
    pub max_age: Field<Int>,
}

/// `tls:` of a listener, with the OpenTelemetry Collector's `configtls`
/// names.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTls {
    /// PEM certificate chain (the listener's own certificate first).
    pub cert_file: Field<String>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Field<String>,
    /// PEM CA certificates: when set, clients must present a certificate
    /// signed by one of them (mutual TLS).
    pub client_ca_file: Field<String>,
    /// For clients; refused on a listener.
    pub ca_file: Field<String>,
    /// Oldest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    pub min_version: Field<String>,
    /// How often the files are checked for changes and re-read. Default `1m`.
    pub reload_interval: Field<HumanDuration>,
}

/// `auth:` of a receiver.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAuth {
    /// Token clients must send as `Authorization: Bearer <token>`. Absent or
    /// empty (e.g. `${env:VERDICT_INGEST_TOKEN:-}` unset) = no authentication.
    pub bearer_token: Field<String>,
}

/// `receivers.probe[/NAME]`: synthetic traffic whose requests count for the
/// pipeline's contracts like spans of its `resource`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawProbeReceiver {
    /// URL to send requests to (`http://…` or `https://…`). Required.
    pub url: Field<String>,
    /// TLS of an `https://` target: `ca_file`, `cert_file` + `key_file`,
    /// `min_version`. Default: the system's roots.
    pub tls: Field<MapOnly<RawTls>>,
    /// HTTP method. Default `GET`.
    pub method: Field<String>,
    /// Request headers: name → value.
    pub headers: Field<StringMap>,
    /// Request body, sent as written. Default: none.
    pub body: Field<String>,
    /// Requests per run; exclusive with `duration`. Default `1000`; ≥ 1.
    pub requests: Field<Int>,
    /// Send requests for this long per run instead of a count (`30s`); > 0.
    pub duration: Field<HumanDuration>,
    /// Requests in flight at once (and keep-alive connections). Default `10`;
    /// 1–10000.
    pub concurrency: Field<Int>,
    /// Per request, from sending to the end of the body. Default `5s`; > 0.
    pub timeout: Field<HumanDuration>,
    /// At most this many requests per second. Default: no limit; > 0.
    pub rate: Field<Num>,
    /// Run again this long after each run started (`10m`). Default: once, at
    /// start; > 0.
    pub interval: Field<HumanDuration>,
    /// Response header whose value `true` on a 2xx marks a conversion.
    /// Default `x-validation-converted`.
    pub conversion_header: Field<String>,
    /// Whether a 4xx answer is a success. Default `false`: 2xx and 3xx
    /// succeed, 4xx and 5xx are errors.
    pub allow_4xx: Field<bool>,
    /// Resource attributes of its samples (attribute → value), matched
    /// against contracts like an OTLP resource. `verdict.synthetic: "true"`
    /// is added when absent. Required, non-empty.
    pub resource: Field<StringMap>,
}

/// `processors.window[/NAME]`: how samples are cut into windows.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWindow {
    /// Tumbling window length, aligned to the UTC epoch (`60s`, `5m`).
    /// Default `60s`; must be > 0.
    pub size: Field<HumanDuration>,
    /// How long after its end a window still accepts samples. Default `10s`.
    pub allowed_lateness: Field<HumanDuration>,
    /// Samples with timestamps further than this in the future are rejected.
    /// Default `5m`.
    pub max_clock_skew: Field<HumanDuration>,
    /// Number of aggregator shards; `0` = one per CPU core. Default `0`.
    pub shards: Field<Int>,
    /// Capacity of each shard's input queue, in batches. Default `4096`; ≥ 1.
    pub queue_size: Field<Int>,
    /// Most series held at once; samples of further series go to the
    /// overflow series. Default `10000`; ≥ 1.
    pub max_series: Field<Int>,
    /// Most cumulative metric streams (resource + scope + metric +
    /// attributes) whose last point is kept for cumulative → delta; points
    /// of further streams are not counted. Default `10000`; ≥ 1.
    pub max_streams: Field<Int>,
    /// A metric stream with no point for this long is forgotten (its next
    /// point is a new baseline). Default `15m`; > 0.
    pub stream_expiry: Field<HumanDuration>,
}

/// `processors.contract[/NAME]`: a validation contract.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawContract {
    /// Contract version; a new version starts new runs. Default `1`; ≥ 1.
    pub version: Field<Int>,
    /// Resource attributes a resource must match, all of them: attribute key
    /// → glob pattern (`*`, `?`, `[...]`). Default: every resource.
    #[serde(rename = "match")]
    pub matches: Field<Matches>,
    /// Resource attributes whose values make a run's subject (one run per
    /// distinct subject). Default `[service.name, service.version]`; non-empty.
    pub subject_by: Field<StringList>,
    /// Where samples come from: `spans` (default) or `metrics`.
    pub source: Field<String>,
    /// OTLP span kinds counted as requests with `source: spans`: any of
    /// `INTERNAL`, `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER`.
    /// Default `[SERVER, CONSUMER]`.
    pub span_kinds: Field<StringList>,
    /// Span attribute that marks a conversion (`true`, or the string
    /// `"true"`). Default `validation.converted`.
    pub conversion_attribute: Field<String>,
    /// Latency histogram read with `source: metrics` (unit `s` or `ms`).
    /// Default `http.server.request.duration`.
    pub latency_metric: Field<String>,
    /// Monotonic sum of conversions read with `source: metrics`.
    /// Default `validation.conversions`.
    pub conversions_metric: Field<String>,
    /// Maximum median latency, in milliseconds (> 0). Default: not checked.
    pub max_p50_latency_ms: Field<Num>,
    /// Maximum p95 latency, in milliseconds (> 0). Default: not checked.
    pub max_p95_latency_ms: Field<Num>,
    /// Maximum p99 latency, in milliseconds (> 0). Default: not checked.
    pub max_p99_latency_ms: Field<Num>,
    /// Maximum error rate, in percent ([0, 100]). Default: not checked.
    pub max_error_rate_percent: Field<Num>,
    /// Minimum conversion rate, in percent ([0, 100]). Default: not checked.
    pub min_conversion_rate_percent: Field<Num>,
    /// Samples needed over the whole run before PROMOTED is possible.
    /// Default `1`; ≥ 1.
    pub min_samples: Field<Int>,
    /// Samples a window needs to count; fewer makes it `insufficient`.
    /// Default `1`; ≥ 1.
    pub min_window_samples: Field<Int>,
    /// Consecutive passing windows needed to promote. Default `3`; ≥ 1.
    pub pass_windows: Field<Int>,
    /// Consecutive failing windows that roll back. Default `1`; ≥ 1.
    pub fail_windows: Field<Int>,
    /// A run with no decision after this long is decided by `on_timeout`.
    /// Default `48h`; > 0.
    pub max_duration: Field<HumanDuration>,
    /// What `max_duration` decides: `rollback` (default) or `promote`.
    pub on_timeout: Field<String>,
    /// A run that has seen no sample for this long is idle (`1h`). > 0.
    pub run_idle_timeout: Field<HumanDuration>,
    /// What becomes of an idle run: `retire` (default: it leaves without a
    /// verdict; new data starts a new run) or `timeout` (`on_timeout`
    /// decides it).
    pub on_idle: Field<String>,
    /// Optional comparison with the current release.
    pub baseline: Field<MapOnly<RawBaseline>>,
    /// Decision procedure: `sequential` (default) or `windows`.
    pub decision: Field<String>,
    /// Significance level of the sequential test, in (0, 1). Default `0.05`.
    pub alpha: Field<Num>,
    /// Compute and expose everything but trigger nothing. Default `false`.
    pub dry_run: Field<bool>,
}

/// `baseline:` of a contract.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawBaseline {
    /// Resource attributes that select the baseline release (attribute key →
    /// glob). Required, non-empty.
    #[serde(rename = "match")]
    pub matches: Field<Matches>,
    /// Largest allowed p95 latency increase over the baseline, in percent
    /// (≥ 0). Default: not checked.
    pub max_p95_latency_increase_percent: Field<Num>,
    /// Largest allowed error-rate increase over the baseline, in percentage
    /// points ([0, 100]). Default: not checked.
    pub max_error_rate_increase_points: Field<Num>,
}

/// `exporters.prometheus[/NAME]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPrometheus {
    /// Listen address `host:port` for `/metrics`. Default `0.0.0.0:9464`.
    pub endpoint: Field<String>,
    /// TLS on `/metrics`; absent = plain text.
    pub tls: Field<MapOnly<RawTls>>,
}

/// `exporters.webhook[/NAME]`: verdict events POSTed as JSON (design §5.5).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawWebhook {
    /// Target URL, `http://` or `https://`. Required.
    pub url: Field<String>,
    /// TLS of `https://` requests: `ca_file`, `cert_file` + `key_file`,
    /// `min_version`. Default: the system's roots.
    pub tls: Field<MapOnly<RawTls>>,
    /// States whose transitions are sent: any of `VALIDATING`, `PROMOTED`,
    /// `ROLLED_BACK`. Default `[PROMOTED, ROLLED_BACK]`.
    pub on: Field<StringList>,
    /// Shared secret: when set, each request carries
    /// `X-Verdict-Signature: sha256=<hex HMAC-SHA256 of the body>`. Absent
    /// or empty = unsigned.
    pub secret: Field<String>,
    /// Time allowed for one attempt (connect, send, answer). Default `5s`.
    pub timeout: Field<HumanDuration>,
    /// Retry policy for failed attempts.
    pub retry: Field<MapOnly<RawRetry>>,
    /// Shape of the request: `json` (the event as it is), `github` (a
    /// `repository_dispatch`) or `slack` (an incoming-webhook message).
    /// Default `json`.
    pub format: Field<String>,
    /// Bearer token sent as `Authorization: Bearer <token>`: required with
    /// `format: github`, optional with `json`, refused with `slack` (whose
    /// URL is its own secret). Absent or empty = none.
    pub token: Field<String>,
}

/// `retry:` of a webhook: exponential backoff with jitter.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRetry {
    /// Wait after the first failure; doubles after each. Default `1s`.
    pub initial_interval: Field<HumanDuration>,
    /// Longest wait between two attempts. Default `30s`.
    pub max_interval: Field<HumanDuration>,
    /// Give up (delivery `failed`, logged at ERROR, counted) when the event
    /// is older than this. Default `1h`.
    pub max_elapsed: Field<HumanDuration>,
}

/// `exporters.unleash[/NAME]`: steps a flexibleRollout strategy of an
/// Unleash feature flag per run (design §7).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawUnleash {
    /// The Unleash server, `http(s)://host:port` (its Admin API lives under
    /// `/api/admin`). Required.
    pub url: Field<String>,
    /// TLS of an `https://` server: `ca_file`, `cert_file` + `key_file`,
    /// `min_version`. Default: the system's roots.
    pub tls: Field<MapOnly<RawTls>>,
    /// An Admin API token, sent as `Authorization: <token>`. Required.
    pub token: Field<String>,
    /// Unleash project of the flag. Default `default`.
    pub project: Field<String>,
    /// Unleash environment whose strategy is stepped (`production`). Required.
    pub environment: Field<String>,
    /// The flag's name; `{attribute}` is filled in with the run's subject
    /// attribute (`checkout-{service.version}`). Required.
    pub flag: Field<String>,
    /// Id of the flexibleRollout strategy to step. Default: the flag's first
    /// flexibleRollout strategy in the environment.
    pub strategy_id: Field<String>,
    /// Rollout percentages, increasing, whole numbers in 1–100. Default
    /// `[5, 10, 25, 50, 100]`.
    pub steps: Field<StringList>,
    /// Counting windows needed at a step before the next one. Default `2`.
    pub step_windows: Field<Int>,
    /// The SDKs' refresh interval: after a change is acknowledged, windows
    /// count only from this long later. Default `15s`.
    pub refresh_interval: Field<HumanDuration>,
    /// What a rollback does: `zero` (rollout 0) or `disable` (the flag off
    /// in the environment). Default `zero`.
    pub on_rollback: Field<String>,
    /// Time allowed for one request to Unleash. Default `5s`.
    pub timeout: Field<HumanDuration>,
    /// Backoff between attempts (`initial_interval`, `max_interval`); a flag
    /// change is retried until it is applied or replaced by a later one.
    pub retry: Field<MapOnly<RawRetry>>,
}

/// `exporters.log[/NAME]`: verdict events as JSON lines on stdout. No
/// settings: written `log:` or `log: {}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLog {}

/// `pipelines.NAME`: component ids wired together. Each list is a YAML list
/// or a comma-separated string.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPipeline {
    /// Receiver ids (`otlp`, `otlp/edge`); at least one.
    pub receivers: Field<StringList>,
    /// Processor ids: at most one `window[/NAME]` (default window settings
    /// when none) and at least one `contract[/NAME]`, in evaluation order.
    pub processors: Field<StringList>,
    /// Exporter ids; may be empty.
    pub exporters: Field<StringList>,
}

/// The `service` section (all optional).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawService {
    /// The HTTP API.
    pub api: Field<MapOnly<RawApi>>,
    /// Storage URL: `sqlite://PATH` (relative to the working directory;
    /// `sqlite:///abs/path` is absolute; the directory is created) or
    /// `memory:` (lost on exit). Default `sqlite://data/verdict.db`.
    pub storage: Field<String>,
    /// Budget for request bodies being decoded plus queued batches: a byte
    /// size (`256MiB`) or a number of bytes. Default `256MiB`; > 0.
    pub max_inflight_bytes: Field<ByteSize>,
    /// How often open windows are persisted. Default `10s`; > 0.
    pub checkpoint_interval: Field<HumanDuration>,
    /// Final runs leave `/metrics` this long after their decision.
    /// Default `1h`.
    pub metric_expiry: Field<HumanDuration>,
    /// Settings of `postgres://` storage; refused with other storage.
    pub postgres: Field<MapOnly<RawPostgres>>,
}

/// `service.postgres`: the connection pool, TLS and this instance's name
/// among the instances sharing the database.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPostgres {
    /// Connections in the pool. Default 8; 2..=256.
    pub pool_size: Field<Int>,
    /// Longest a statement may run before PostgreSQL cancels it. Default
    /// `30s`; > 0.
    pub statement_timeout: Field<HumanDuration>,
    /// This instance's name: unique among the instances on the database,
    /// stable across restarts (its window partials are found again by it).
    /// Default: the host name.
    pub instance: Field<String>,
    /// How long after a window's close deadline the leader waits for the
    /// other instances' partials before it judges the window. Default `2s`.
    pub grace: Field<HumanDuration>,
    /// TLS to the server.
    pub tls: Field<MapOnly<RawPostgresTls>>,
}

/// `service.postgres.tls`, with libpq's `sslmode` names.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPostgresTls {
    /// `disable`, `prefer` (default), `require`, `verify-ca`, `verify-full`.
    pub mode: Field<String>,
    /// PEM CA certificates to verify the server with (`verify-ca`,
    /// `verify-full`); the system's roots otherwise.
    pub ca_file: Field<String>,
    /// PEM client certificate (with `key_file`): mutual TLS.
    pub cert_file: Field<String>,
    /// PEM key of `cert_file`.
    pub key_file: Field<String>,
}

/// `service.api`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawApi {
    /// Listen address `host:port`. Default `127.0.0.1:8686`.
    pub endpoint: Field<String>,
    /// Bearer token for the promote, rollback and reset endpoints. Absent or
    /// empty = open.
    pub token: Field<String>,
    /// The API's address as people reach it (`https://verdict.example.com`,
    /// behind an ingress): notifications link to runs under it. Absent =
    /// no links.
    pub public_url: Field<String>,
    /// TLS on the API and status page; absent = plain text.
    pub tls: Field<MapOnly<RawTls>>,
}

/// A field as read: `None` when absent or written with no value (null);
/// `Some(Checked(Ok(v)))` when read; `Some(Checked(Err(why)))` when the value
/// has the wrong type or format.
pub(crate) type Field<T> = Option<Checked<T>>;

/// A map of strings (headers, resource attributes), each value read on its own.
pub(crate) type StringMap = IndexMap<String, Checked<ScalarString>>;

/// A `match:` map: resource attribute key → glob pattern, each read on its own.
pub(crate) type Matches = IndexMap<String, Checked<MatchValue>>;

/// A value, or the reason it could not be read. Catching the error here,
/// instead of letting serde abort the whole component, is what lets
/// `validate` report every bad value *and* every unknown key of a component
/// at once (serde stops at the first error and never visits later keys).
/// The reason is the message only; `validate` knows the path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checked<T>(pub Result<T, String>);

impl<T: Default> Default for Checked<T> {
    fn default() -> Self {
        Self(Ok(T::default()))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self(
            T::deserialize(deserializer).map_err(|e| e.to_string()),
        ))
    }
}

/// A struct read from a map only. Serde-derived structs also accept a
/// sequence (fields by position), which would read `auth: [abc]` as a
/// bearer token; this refuses anything but a map.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MapOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<MapOnly<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// For fields where writing the key with no value (`grpc:`) means
/// "present, with default settings": absent → `None`, null →
/// `Some(T::default())`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(
        Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

/// A whole number: a YAML integer, a float with no fraction, or a string
/// holding one (environment overrides). Range checks are `validate`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom(format!("number {v} is too large")))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom(format!("number {v} is too large")))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom(format!("number {v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                // The cast saturates; the range check makes it exact.
                if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
                    Ok(Int(v as i64))
                } else {
                    Err(E::custom(format!("expected a whole number, got {v}")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim()
                    .parse()
                    .map(Int)
                    .map_err(|_| E::custom(format!("expected a whole number, got {v:?}")))
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// A number: a YAML integer or float, or a string holding one (environment
/// overrides). `NaN` and infinities are read and rejected by `validate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Num(pub f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl Visitor<'_> for NumVisitor {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                v.trim()
                    .parse()
                    .map(Num)
                    .map_err(|_| E::custom(format!("expected a number, got {v:?}")))
            }
        }
        deserializer.deserialize_any(NumVisitor)
    }
}

/// A byte count: a size string understood by `bytesize` (`20MiB`, `1 GB`,
/// `512KiB`, `100`) or a non-negative integer number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size such as 20MiB, or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("must not be negative, got {v}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                if v.fract() == 0.0 && v >= 0.0 && v < u64::MAX as f64 {
                    Ok(ByteSize(v as u64))
                } else {
                    Err(E::custom(format!(
                        "expected a byte size such as 20MiB or a whole number of bytes, got {v}"
                    )))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|size| ByteSize(size.as_u64()))
                    .map_err(|_| {
                        E::custom(format!(
                            "invalid byte size {v:?}: expected a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB, …), e.g. 20MiB"
                        ))
                    })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration written as a humantime string (`500ms`, `60s`, `5m`, `48h`,
/// `1h 30m`). A bare number is refused: it has no unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl DurationVisitor {
            fn parse<E: de::Error>(text: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(text.trim())
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format!("invalid duration {text:?}: {e}")))
            }
        }
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 500ms, 60s or 5m")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Self::parse(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Self::parse(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Self::parse(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                Self::parse(v)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A list of strings: a YAML list, or one string of comma-separated items
/// (`service.name, service.version`), which is what an environment override
/// can carry. Items are trimmed and read one by one (an item of the wrong
/// type is an `Err` with its reason); blank items are kept for `validate`
/// to reject.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StringList(pub Vec<Result<String, String>>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                if v.trim().is_empty() {
                    return Ok(StringList(Vec::new()));
                }
                Ok(StringList(
                    v.split(',')
                        .map(|item| Ok(item.trim().to_string()))
                        .collect(),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut items = Vec::new();
                while let Some(Checked(item)) = seq.next_element::<Checked<ScalarString>>()? {
                    items.push(item.map(|s| s.0.trim().to_string()));
                }
                Ok(StringList(items))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

/// A string-valued scalar: a string, an integer or a boolean as written.
/// Floats are refused because YAML has already lost how they were written
/// (`1.10` reads as 1.1): they must be quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScalarString(pub String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = ScalarString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ScalarString, E> {
                Ok(ScalarString(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarString, E> {
                Err(E::custom(format!(
                    "expected a string, got the number {v}; quote it in the YAML (\"…\")"
                )))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A `match` value: a glob pattern, as a string (integers and booleans are
/// taken as written; floats must be quoted, see [`ScalarString`]).
pub(crate) type MatchValue = ScalarString;
