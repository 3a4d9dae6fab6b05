//! Wiring: opens the storage, builds the running graph from a validated
//! config — delivery workers, then run engines (resumed from storage), then
//! shards (restored from the checkpoint), then receivers — and stops it in
//! the opposite order by cancelling only the receivers and the read-only
//! servers: every shard drains its queue and sends its open windows, each
//! engine commits and checkpoints them, and the delivery workers make a
//! last pass over the outbox before they exit.

mod endpoints;
mod restore;
mod self_metrics;
pub mod supervisor;
mod tls;

pub use endpoints::{Connections, EndpointKey, Endpoints};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::cluster::partials::PartialTask;
use crate::config::{ExporterKind, ReceiverKind, StorageSpec, ValidatedConfig};
use crate::exporters::outbox::{FlagSink, OutboxLease, Sink, Worker};
use crate::model::RunState;
use crate::receivers::otlp::{grpc, http, Ingest};
use crate::receivers::probe::ProbeReceiver;
use crate::receivers::PipelineInput;
use crate::runs::catalog::ClusterView;
use crate::runs::engine::{Engine, Subscriber};
use crate::runs::leader::LeaderTask;
use crate::runs::rollout::Stepper;
use crate::runs::task::{EngineTask, FlagAck};
use crate::runs::{Catalog, ReloadRequest, RunStore};
use crate::storage::Health;
use crate::{aggregator, api, cluster, exporters, storage, telemetry};

/// A running verdict server.
#[derive(Debug)]
pub struct Server {
    /// Bound OTLP/gRPC addresses, by receiver id.
    pub grpc: Vec<(String, SocketAddr)>,
    /// Bound OTLP/HTTP addresses, by receiver id.
    pub http: Vec<(String, SocketAddr)>,
    /// Bound Prometheus addresses, by exporter id.
    pub prometheus: Vec<(String, SocketAddr)>,
    /// Bound API address.
    pub api: SocketAddr,
    /// Shared read-side state.
    pub catalog: Arc<Catalog>,
    stop: CancellationToken,
    /// Tells the shards to stop taking batches ([`aggregator::Setup::drain`]).
    drain: CancellationToken,
    listeners: JoinSet<()>,
    stages: JoinSet<()>,
    workers_stop: CancellationToken,
    workers: JoinSet<()>,
    /// The endpoints this server serves.
    pub endpoints: Vec<EndpointKey>,
    /// The endpoints of a server started alone ([`Server::start`]); a
    /// server started by a supervisor serves the supervisor's.
    owned: Option<Endpoints>,
}

/// Each pipeline's stream-table layout in this start; tables a graceful
/// stop stored are put where the shards take them, when nothing newer is
/// kept in memory (a reload) and they were keyed alike: the stored seeds
/// are adopted first, before anything hashes a stream, and the index,
/// shards and contract names must not have changed. An instance on
/// PostgreSQL (`instance`) reads its own.
async fn resume_streams(
    config: &ValidatedConfig,
    store: &dyn RunStore,
    instance: Option<&str>,
    carry: &aggregator::carry::Carry,
    now: crate::model::UnixNanos,
) -> Result<Vec<aggregator::carry::Layout>, storage::StoreError> {
    let mut stored = Vec::with_capacity(config.pipelines.len());
    for p in &config.pipelines {
        stored.push(restore::stream_tables(store, p, instance, now).await?);
    }
    if let Some((_, layout, _)) = stored.iter().flatten().next() {
        if !crate::receivers::otlp::stream_id::adopt_seeds(layout.seeds) {
            tracing::info!("Stream ids are seeded already in this process: the stored metric stream tables are not used.");
        }
    }
    let seeds = crate::receivers::otlp::stream_id::stream_seeds();
    let mut layouts = Vec::with_capacity(config.pipelines.len());
    for (index, (p, tables)) in config.pipelines.iter().zip(stored).enumerate() {
        let layout = aggregator::carry::Layout {
            seeds,
            index,
            shards: p.window.shards.max(1),
            contracts: p.contracts.iter().map(|c| c.name.clone()).collect(),
        };
        if !tables.is_empty() {
            let params = aggregator::stream_params(&p.window);
            match carry.restore(&p.name, &layout, tables, params) {
                None => {}
                Some(0) => {
                    tracing::info!(pipeline = %p.name, "The stored metric streams were keyed otherwise (shards or contracts changed): cumulative streams start again.")
                }
                Some(streams) => {
                    tracing::info!(pipeline = %p.name, streams, "Metric streams resumed from the last stop.")
                }
            }
        }
        layouts.push(layout);
    }
    Ok(layouts)
}

/// What a server hands the next one a supervisor starts (a reload), besides
/// the listening sockets.
#[derive(Default)]
pub struct Kept {
    /// The store of `storage: "memory:"`: made by the first server, kept
    /// by the next (a reload must not forget the runs, only an exit does).
    pub memory: Option<Arc<dyn RunStore>>,
    /// The shards' stream tables (see [`aggregator::carry`]).
    pub streams: aggregator::carry::Carry,
}

/// How long a stop waits for requests in flight before it closes the
/// connections that are left.
const LISTENER_DRAIN: Duration = Duration::from_secs(5);

/// ALPN of the HTTP listeners (API, Prometheus, OTLP/HTTP).
const HTTP_ALPN: [&str; 2] = ["h2", "http/1.1"];

/// The connections of `key`'s endpoint, through TLS when `tls` is set.
async fn listen(
    endpoints: &mut Endpoints,
    key: &EndpointKey,
    tls: Option<&crate::config::ListenerTls>,
    alpn: &[&str],
    component: &'static str,
) -> anyhow::Result<(tls::Listener, SocketAddr)> {
    let connections = endpoints.take(key).await?;
    let addr = connections.addr();
    let tls = tls
        .map(|t| tls::ServerTls::new(t, alpn))
        .transpose()
        .with_context(|| format!("{component} on {}", key.endpoint))?;
    Ok((tls::Listener::new(connections, tls, component), addr))
}

fn serve_axum(
    set: &mut JoinSet<()>,
    listener: tls::Listener,
    router: axum::Router,
    stop: CancellationToken,
    what: &'static str,
) {
    set.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(component = what, error = %err, "Server failed.");
        }
    });
}

impl Server {
    /// Builds and starts everything; returns once every listener is bound.
    pub async fn start(config: ValidatedConfig, clock: SharedClock) -> anyhow::Result<Server> {
        let mut endpoints = Endpoints::default();
        let mut server =
            Server::start_on(config, clock, &mut endpoints, &mut Kept::default(), None).await?;
        server.owned = Some(endpoints);
        Ok(server)
    }

    /// The endpoints `config` serves, in the order they are bound.
    pub fn endpoint_keys(config: &ValidatedConfig) -> Vec<EndpointKey> {
        let mut keys = Vec::new();
        for e in &config.exporters {
            if let ExporterKind::Prometheus { endpoint, .. } = &e.kind {
                keys.push(EndpointKey::new("prometheus", &e.id, endpoint));
            }
        }
        for r in &config.receivers {
            if let ReceiverKind::Otlp(otlp) = &r.kind {
                if let Some(endpoint) = &otlp.grpc_endpoint {
                    keys.push(EndpointKey::new("otlp-grpc", &r.id, endpoint));
                }
                if let Some(endpoint) = &otlp.http_endpoint {
                    keys.push(EndpointKey::new("otlp-http", &r.id, endpoint));
                }
            }
        }
        keys.push(EndpointKey::new(
            "api",
            "service",
            &config.service.api_endpoint,
        ));
        keys
    }

    /// [`Server::start`] on `endpoints`, which outlive it (a reload starts
    /// the next server on the same sockets); `kept` holds what else a
    /// server hands the next one ([`Kept`]); `reload` is where the API's
    /// `POST /api/v1/reload` goes (none: the endpoint answers 404).
    pub async fn start_on(
        config: ValidatedConfig,
        clock: SharedClock,
        endpoints: &mut Endpoints,
        kept: &mut Kept,
        reload: Option<mpsc::Sender<ReloadRequest>>,
    ) -> anyhow::Result<Server> {
        if let StorageSpec::Postgres(pg) = &config.service.storage {
            // Instances share the run metrics (from the database) but not
            // their own: an `instance` label keeps them apart.
            telemetry::set_instance_label(&pg.instance);
        }
        telemetry::metrics_handle();
        self_metrics::register(&config);
        let health = Arc::new(Health::default());
        let (store, member, election): (Arc<dyn RunStore>, _, _) = match &config.service.storage {
            StorageSpec::Postgres(pg) => {
                let sql = Arc::new(storage::SqlStore::open_postgres(pg).await?);
                // Before its first heartbeat: an instance refused is never
                // listed as alive.
                cluster::config::check(&sql, &pg.instance, &config.pipelines)
                    .await
                    .context("cannot join the instances on the database")?;
                let (member, election) =
                    cluster::Election::join(sql.clone(), pg.clone(), clock.clone(), health.clone())
                        .await
                        .context("cannot join the instances on the database")?;
                tracing::info!(instance = %pg.instance, "Joined the instances on the database.");
                (sql, Some(member), Some(election))
            }
            StorageSpec::Memory => {
                let store = kept
                    .memory
                    .get_or_insert_with(|| Arc::new(storage::MemoryStore::new()));
                (store.clone(), None, None)
            }
            spec => (storage::open(spec).await?, None, None),
        };
        tracing::info!(storage = %config.service.storage, "Storage open.");
        let stop = CancellationToken::new();
        let drain = CancellationToken::new();
        let workers_stop = CancellationToken::new();
        let mut listeners = JoinSet::new();
        let mut stages = JoinSet::new();
        let mut workers = JoinSet::new();

        // Where `unleash` workers tell each pipeline's engine that a flag
        // change was applied, by contract name.
        let mut ack_senders: HashMap<String, mpsc::Sender<FlagAck>> = HashMap::new();
        let mut ack_receivers = Vec::new();
        for p in &config.pipelines {
            let (tx, rx) = mpsc::channel(256);
            for c in &p.contracts {
                ack_senders.insert(c.name.clone(), tx.clone());
            }
            ack_receivers.push(rx);
        }
        let targets = Arc::new(Health::default());

        // Delivery workers first, so nothing upstream starts without its
        // outlet; they read whatever the outbox still holds from before.
        let mut notifiers: HashMap<String, Arc<Notify>> = HashMap::new();
        let mut subscribers: Vec<Subscriber> = Vec::new();
        let mut prometheus_exporters = Vec::new();
        // What webhook requests link to: the API's public address and how
        // each contract writes its subjects.
        let links = Arc::new(exporters::format::Links {
            public_url: config.service.public_url.clone(),
            subject_by: config
                .pipelines
                .iter()
                .flat_map(|p| &p.contracts)
                .map(|c| (c.name.clone(), c.subject_by.clone()))
                .collect(),
        });
        for e in &config.exporters {
            // Log and webhook exporters deliver events; Prometheus serves
            // the current state instead.
            let (sink, on, triggers) = match &e.kind {
                ExporterKind::Log => (Sink::Log, RunState::ALL.to_vec(), false),
                ExporterKind::Webhook(w) => (
                    Sink::Webhook(Box::new(
                        exporters::webhook::Webhook::new(w.clone(), links.clone())
                            .with_context(|| format!("exporter {}", e.id))?,
                    )),
                    w.on.clone(),
                    true,
                ),
                ExporterKind::Prometheus { endpoint, tls } => {
                    prometheus_exporters.push((e.id.clone(), endpoint.clone(), tls.clone()));
                    continue;
                }
                // Flag changes come from the engines' steppers, not from
                // verdict events: no subscription.
                ExporterKind::Unleash(spec) => (
                    Sink::Unleash(Box::new(FlagSink {
                        unleash: exporters::unleash::Unleash::new((**spec).clone())
                            .with_context(|| format!("exporter {}", e.id))?,
                        acks: config
                            .pipelines
                            .iter()
                            .filter(|p| p.exporters.contains(&e.id))
                            .flat_map(|p| &p.contracts)
                            .filter_map(|c| {
                                ack_senders
                                    .get(&c.name)
                                    .map(|tx| (c.name.clone(), tx.clone()))
                            })
                            .collect(),
                        targets: targets.clone(),
                    })),
                    Vec::new(),
                    true,
                ),
            };
            if !on.is_empty() {
                subscribers.push(Subscriber {
                    exporter: e.id.clone(),
                    on,
                    triggers,
                });
            }
            let notify = Arc::new(Notify::new());
            notifiers.insert(e.id.clone(), notify.clone());
            workers.spawn(
                Worker {
                    exporter: e.id.clone(),
                    sink,
                    store: store.clone(),
                    notify,
                    purge: workers.is_empty(),
                    clock: clock.clone(),
                    stop: workers_stop.clone(),
                    health: health.clone(),
                    lease: member.as_ref().map(|m| OutboxLease {
                        store: m.store.clone(),
                        instance: m.instance().to_string(),
                    }),
                }
                .run(),
            );
        }

        // Rows of exporters this configuration no longer has: warned
        // about and kept visible (gauge, API) until delivered or abandoned.
        workers.spawn(
            exporters::orphans::OrphanWatch {
                configured: notifiers.keys().cloned().collect(),
                store: store.clone(),
                clock: clock.clone(),
                stop: workers_stop.clone(),
            }
            .run(),
        );

        // Run engines (resumed) and shards (restored), one set per pipeline.
        let mut commands = HashMap::new();
        let mut engine_tasks = Vec::new();
        let mut leader_tasks = Vec::new();
        let mut partial_tasks = Vec::new();
        let mut inputs: Vec<(Vec<String>, Arc<PipelineInput>)> = Vec::new();
        drop(ack_senders);
        let instance = member.as_ref().map(|m| m.instance().to_string());
        let layouts = resume_streams(
            &config,
            store.as_ref(),
            instance.as_deref(),
            &kept.streams,
            clock.now(),
        )
        .await
        .context("resuming the metric streams")?;
        for (index, (p, acks)) in config.pipelines.iter().zip(ack_receivers).enumerate() {
            let (engine_tx, engine_rx) = mpsc::channel(4096);
            let (command_tx, command_rx) = mpsc::channel(64);
            for c in &p.contracts {
                commands.insert(c.name.clone(), command_tx.clone());
            }
            let shards = p.window.shards.max(1);
            let now = clock.now();
            let subscribed: Vec<Subscriber> = subscribers
                .iter()
                .filter(|s| p.exporters.contains(&s.exporter))
                .cloned()
                .collect();
            let steppers: Vec<Stepper> = config
                .exporters
                .iter()
                .filter(|e| p.exporters.contains(&e.id))
                .filter_map(|e| match &e.kind {
                    ExporterKind::Unleash(spec) => Some(Stepper::new(&e.id, spec)),
                    _ => None,
                })
                .collect();
            let pipeline_workers: HashMap<String, Arc<Notify>> = notifiers
                .iter()
                .filter(|(id, _)| p.exporters.contains(id))
                .map(|(id, n)| (id.clone(), n.clone()))
                .collect();
            let open = if let Some(m) = &member {
                // In a cluster the leader's engine judges the partials of
                // every instance; this instance's shards resume from its own.
                let open = restore::own_partials(m, p, shards, now)
                    .await
                    .with_context(|| format!("resuming pipeline {}", p.name))?;
                let (contracts, window) = (p.contracts.clone(), p.window.clone());
                let leader = LeaderTask {
                    member: m.clone(),
                    pipeline: p.clone(),
                    build: Box::new(move |seed, now| {
                        Engine::new(contracts.clone(), &window, 1, subscribed.clone(), seed, now)
                            .with_steppers(steppers.clone())
                    }),
                    store: m.store.clone(),
                    leading: m.leading.clone(),
                    next_term: {
                        let m = m.clone();
                        Arc::new(move || m.next_term())
                    },
                    grace: m.spec.grace,
                    tick: aggregator::tick_interval(&p.window),
                    commands: command_rx,
                    acks,
                    health: health.clone(),
                    workers: pipeline_workers,
                    clock: clock.clone(),
                    stop: workers_stop.clone(),
                };
                leader_tasks.push(leader);
                partial_tasks.push((p, engine_rx));
                open
            } else {
                let seed = restore::seed(store.as_ref(), p, shards, now)
                    .await
                    .with_context(|| format!("resuming pipeline {}", p.name))?;
                let open = seed.open.clone();
                let engine = Engine::new(
                    p.contracts.clone(),
                    &p.window,
                    shards,
                    subscribed,
                    seed,
                    now,
                )
                .with_steppers(steppers);
                engine_tasks.push(EngineTask {
                    pipeline: p.name.clone(),
                    engine,
                    input: engine_rx,
                    commands: command_rx,
                    acks,
                    store: store.clone(),
                    health: health.clone(),
                    workers: pipeline_workers,
                    clock: clock.clone(),
                    claim: None,
                });
                open
            };
            let router = aggregator::spawn(
                aggregator::Setup {
                    drain: drain.clone(),
                    pipeline: &p.name,
                    window: &p.window,
                    checkpoint_interval: config.service.checkpoint_interval,
                    restored: open,
                    carry: kept.streams.clone(),
                    layout: layouts[index].clone(),
                    idle: p
                        .contracts
                        .iter()
                        .map(|c| crate::model::nanos(c.run_idle_timeout))
                        .collect(),
                },
                clock.clone(),
                engine_tx,
                &mut stages,
            );
            if let Some((spec, rx)) = partial_tasks.pop() {
                let m = member.as_ref().expect("partials only in a cluster");
                stages.spawn(
                    PartialTask {
                        pipeline: spec.name.clone(),
                        contracts: spec.contracts.iter().map(|c| c.name.clone()).collect(),
                        input: rx,
                        member: m.clone(),
                        health: health.clone(),
                        gate: router.gate().clone(),
                        clock: clock.clone(),
                        shards: spec.window.shards.max(1),
                        timing: spec.window.timing(),
                    }
                    .run(),
                );
            }
            let input = PipelineInput {
                name: p.name.clone(),
                contracts: p.contracts.clone(),
                router,
                timing: p.window.timing(),
                clock: clock.clone(),
            };
            inputs.push((p.receivers.clone(), Arc::new(input)));
        }
        for task in engine_tasks {
            stages.spawn(task.run());
        }
        // Leaders stop with the delivery workers: after the last partials
        // are written, so a last window can still be judged elsewhere.
        for task in leader_tasks {
            workers.spawn(task.run());
        }

        let catalog = Arc::new(Catalog {
            contracts: config
                .pipelines
                .iter()
                .flat_map(|p| p.contracts.clone())
                .collect(),
            store: store.clone(),
            clock: clock.clone(),
            metric_expiry: config.service.metric_expiry,
            ready: AtomicBool::new(false),
            health,
            targets,
            api_token: config.service.api_token.clone(),
            delivering: notifiers.keys().cloned().collect(),
            commands,
            reload,
            cluster: member.as_ref().map(|m| ClusterView {
                store: m.store.clone(),
                instance: m.instance().to_string(),
                leading: m.leading.clone(),
                grace: m.spec.grace,
            }),
        });
        let mut prometheus = Vec::new();
        for (id, endpoint, tls) in prometheus_exporters {
            let key = EndpointKey::new("prometheus", &id, &endpoint);
            let (listener, addr) =
                listen(endpoints, &key, tls.as_ref(), &HTTP_ALPN, "prometheus").await?;
            prometheus.push((id, addr));
            let router = exporters::prometheus::router(catalog.clone());
            serve_axum(&mut listeners, listener, router, stop.clone(), "prometheus");
        }

        // Receivers last. One in-flight byte budget for the whole process.
        let budget = crate::receivers::otlp::budget::Budget::new(config.service.max_inflight_bytes);
        let (mut grpc_addrs, mut http_addrs) = (Vec::new(), Vec::new());
        for r in &config.receivers {
            let fed: Vec<Arc<PipelineInput>> = inputs
                .iter()
                .filter(|(ids, _)| ids.contains(&r.id))
                .map(|(_, p)| p.clone())
                .collect();
            let otlp = match &r.kind {
                ReceiverKind::Otlp(otlp) => otlp,
                ReceiverKind::Probe(spec) => {
                    // Cancelled with the listeners: it is a source of data.
                    let probe = ProbeReceiver::new(&r.id, spec, fed, clock.clone());
                    listeners.spawn(probe.run(stop.clone()));
                    continue;
                }
            };
            let ingest = Arc::new(Ingest {
                pipelines: fed,
                clock: clock.clone(),
                max_request_bytes: usize::try_from(otlp.max_request_bytes).unwrap_or(usize::MAX),
                bearer_token: otlp.bearer_token.clone(),
                budget: budget.clone(),
                reject_log: Default::default(),
            });
            if let Some(endpoint) = &otlp.grpc_endpoint {
                let key = EndpointKey::new("otlp-grpc", &r.id, endpoint);
                let (listener, addr) = listen(
                    endpoints,
                    &key,
                    otlp.grpc_tls.as_ref(),
                    &["h2"],
                    "otlp-grpc",
                )
                .await?;
                grpc_addrs.push((r.id.clone(), addr));
                let router = tonic::service::Routes::new(grpc::ExportService::<grpc::Traces>::new(
                    ingest.clone(),
                ))
                .add_service(grpc::ExportService::<grpc::Metrics>::new(ingest.clone()))
                .add_service(grpc::ExportService::<grpc::Logs>::new(ingest.clone()));
                let stop = stop.clone();
                listeners.spawn(async move {
                    let served = tonic::transport::Server::builder()
                        .add_routes(router)
                        .serve_with_incoming_shutdown(listener.incoming(), stop.cancelled_owned())
                        .await;
                    if let Err(err) = served {
                        tracing::error!(component = "otlp-grpc", error = %err, "Server failed.");
                    }
                });
            }
            if let Some(endpoint) = &otlp.http_endpoint {
                let key = EndpointKey::new("otlp-http", &r.id, endpoint);
                let (listener, addr) = listen(
                    endpoints,
                    &key,
                    otlp.http_tls.as_ref(),
                    &HTTP_ALPN,
                    "otlp-http",
                )
                .await?;
                http_addrs.push((r.id.clone(), addr));
                serve_axum(
                    &mut listeners,
                    listener,
                    http::router(ingest.clone(), otlp.http_cors.as_ref()),
                    stop.clone(),
                    "otlp-http",
                );
            }
        }
        drop(inputs);

        let key = EndpointKey::new("api", "service", &config.service.api_endpoint);
        let (listener, api_addr) = listen(
            endpoints,
            &key,
            config.service.api_tls.as_ref(),
            &HTTP_ALPN,
            "api",
        )
        .await?;
        if config.service.api_token.is_none() && !api_addr.ip().is_loopback() {
            // Browsers are refused (`api::csrf`), but any other client that
            // reaches the port can promote, roll back and reload.
            tracing::warn!(
                addr = %api_addr,
                "The API's write endpoints (promote, rollback, reset, reload) have no token and \
                 listen beyond this machine: anyone who reaches this port can change runs. Set \
                 service.api.token (VERDICT_API_TOKEN in the shipped pipelines)."
            );
        }
        serve_axum(
            &mut listeners,
            listener,
            api::router(catalog.clone()),
            stop.clone(),
            "api",
        );
        if let (Some(m), Some(election)) = (&member, election) {
            if let Ok(mut api) = m.api.lock() {
                *api = api_addr.to_string();
            }
            workers.spawn(election.run(workers_stop.clone()));
        }
        catalog.ready.store(true, Ordering::SeqCst);
        // What runs, after overrides and defaults: the first thing to check
        // when a run does not behave as the file seemed to say.
        for p in crate::config::summary::summary(&config) {
            tracing::info!(
                pipeline = %p.pipeline,
                window = %p.window,
                contracts = %p.contracts.join("; "),
                "Pipeline configured."
            );
        }
        tracing::info!(pipelines = config.pipelines.len(), "verdict is ready.");
        Ok(Server {
            grpc: grpc_addrs,
            http: http_addrs,
            prometheus,
            api: api_addr,
            catalog,
            stop,
            drain,
            listeners,
            stages,
            workers_stop,
            workers,
            endpoints: Server::endpoint_keys(&config),
            owned: None,
        })
    }

    /// Stops listening, drains the pipeline and waits (up to `grace`) for
    /// every stage to finish.
    pub async fn shutdown(mut self, grace: Duration) -> anyhow::Result<()> {
        self.catalog.ready.store(false, Ordering::SeqCst);
        self.stop.cancel();
        // Requests in flight get LISTENER_DRAIN to finish. Connections that
        // never complete one (idle, stalled headers or bodies) cannot hold
        // the stop: past it the listeners are closed and the shards stop
        // taking batches (a request that comes later is refused, retryably).
        let listeners_done = tokio::time::timeout(LISTENER_DRAIN, async {
            while self.listeners.join_next().await.is_some() {}
        })
        .await;
        if listeners_done.is_err() {
            tracing::warn!(
                after = ?LISTENER_DRAIN,
                "Connections still open without a complete request; closing them."
            );
            self.listeners.abort_all();
        }
        self.drain.cancel();
        let drain = async {
            while self.listeners.join_next().await.is_some() {}
            // Shards drain and checkpoint, engines commit and checkpoint.
            while self.stages.join_next().await.is_some() {}
            // Then one last delivery pass over the outbox.
            self.workers_stop.cancel();
            while self.workers.join_next().await.is_some() {}
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            anyhow::bail!(
                "shutdown grace period of {} expired; {} stages still running",
                humantime::format_duration(grace),
                self.stages.len() + self.listeners.len() + self.workers.len()
            );
        }
        if let Some(mut endpoints) = self.owned.take() {
            endpoints.close();
        }
        tracing::info!("verdict stopped.");
        Ok(())
    }

    /// Resolves when a listener or stage task ends on its own (a crash).
    pub async fn failed(&mut self) -> &'static str {
        tokio::select! {
            Some(_) = self.listeners.join_next() => "a listener stopped",
            Some(_) = self.stages.join_next() => "a pipeline stage stopped",
            Some(_) = self.workers.join_next() => "a delivery worker stopped",
            else => std::future::pending().await,
        }
    }
}
