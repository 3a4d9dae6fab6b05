//! `verdict run` as a supervisor: starts the server, reloads it on SIGHUP
//! or `POST /api/v1/reload`, and stops it on SIGTERM/SIGINT.
//!
//! A reload first reads and validates the pipeline file and binds every
//! new endpoint; any problem refuses it and the running server carries on
//! untouched (each problem logged with its path, answered to the API and
//! counted as `verdict_config_reloads_total{result="invalid"}`). Then the
//! running server stops the way SIGTERM stops it — receivers stop taking
//! requests, shards drain and checkpoint their open windows, engines commit
//! — and the next one starts from storage the way a restart does: open
//! windows and runs come back, a changed contract version starts new runs.
//! An in-memory store (`storage: "memory:"`) is the process's, so it is
//! handed to the next server rather than opened again empty; so are the
//! shards' metric stream tables, which no checkpoint holds
//! ([`crate::aggregator::carry`]).
//! The listening sockets stay open throughout (see [`Endpoints`]), so a
//! client that connects meanwhile waits instead of being refused, and no
//! request accepted before or during the switch is lost. Endpoints the new
//! file no longer has are closed once it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::{Endpoints, Kept, Server};
use crate::clock::SharedClock;
use crate::config::{self, ValidatedConfig};
use crate::runs::ReloadRequest;
use crate::telemetry::{CONFIG_RELOADS, RELOAD_RESULTS};

/// What ends [`supervise`] other than an error.
enum Next {
    Stop,
    Reload(Option<tokio::sync::oneshot::Sender<Result<Vec<String>, Vec<String>>>>),
}

/// Runs the server of `config` (read from `path`) until SIGTERM or SIGINT,
/// reloading it on SIGHUP and `POST /api/v1/reload`; then stops it within
/// `grace`.
pub async fn supervise(
    path: PathBuf,
    config: ValidatedConfig,
    clock: SharedClock,
    grace: Duration,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a SIGTERM that arrives while starting must still stop
    // the server cleanly, not kill it.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    // The recorder first: series registered before it exists are lost. Its
    // `instance` label (several instances on PostgreSQL) is fixed when it
    // is installed, so it is set before.
    if let crate::config::StorageSpec::Postgres(pg) = &config.service.storage {
        crate::telemetry::set_instance_label(&pg.instance);
    }
    crate::telemetry::metrics_handle();
    for result in RELOAD_RESULTS {
        metrics::counter!(CONFIG_RELOADS, "result" => result).increment(0);
    }
    let mut endpoints = Endpoints::default();
    let mut kept = Kept::default();
    let mut current = config;
    let mut server = Server::start_on(
        current.clone(),
        clock.clone(),
        &mut endpoints,
        &mut kept,
        Some(reload_tx.clone()),
    )
    .await
    .context("starting verdict")?;
    loop {
        let next = tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM received; stopping.");
                Next::Stop
            }
            r = tokio::signal::ctrl_c() => {
                r.context("listening for SIGINT")?;
                tracing::info!("SIGINT received; stopping.");
                Next::Stop
            }
            _ = hup.recv() => {
                tracing::info!(file = %path.display(), "SIGHUP received; reloading.");
                Next::Reload(None)
            }
            Some(request) = reload_rx.recv() => {
                tracing::info!(file = %path.display(), "Reload requested through the API.");
                Next::Reload(Some(request.reply))
            }
            what = server.failed() => anyhow::bail!("{what} unexpectedly"),
        };
        let Next::Reload(reply) = next else { break };
        let (next, changes) = match prepare(&path, &current, &server, &mut endpoints).await {
            Ok(prepared) => prepared,
            Err(problems) => {
                for problem in &problems {
                    tracing::error!(problem = %problem, "Reload refused; the running configuration stays.");
                }
                metrics::counter!(CONFIG_RELOADS, "result" => "invalid").increment(1);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(problems));
                }
                continue;
            }
        };
        if next == current {
            // Nothing to apply: the pipelines are not restarted, so
            // keep-alive clients are not disconnected for nothing.
            tracing::info!("Reload: the file is unchanged; nothing to do.");
            if let Some(reply) = reply {
                let _ = reply.send(Ok(vec!["nothing changed".into()]));
            }
            continue;
        }
        if let Some(reply) = reply {
            let _ = reply.send(Ok(changes.clone()));
        }
        server
            .shutdown(grace)
            .await
            .context("stopping the running configuration for the reload")?;
        server = match Server::start_on(
            next.clone(),
            clock.clone(),
            &mut endpoints,
            &mut kept,
            Some(reload_tx.clone()),
        )
        .await
        {
            Ok(s) => {
                tracing::info!(changes = ?changes, "Reloaded.");
                metrics::counter!(CONFIG_RELOADS, "result" => "applied").increment(1);
                current = next;
                s
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "Reload failed; starting the previous configuration again.");
                metrics::counter!(CONFIG_RELOADS, "result" => "failed").increment(1);
                Server::start_on(
                    current.clone(),
                    clock.clone(),
                    &mut endpoints,
                    &mut kept,
                    Some(reload_tx.clone()),
                )
                .await
                .context("starting the previous configuration again after a failed reload")?
            }
        };
        endpoints.retain(&server.endpoints);
        // Tables of pipelines the running configuration did not take back
        // (removed, or laid out otherwise) would be stale by the time one
        // came back.
        kept.streams.clear();
    }
    let stopped = server.shutdown(grace).await;
    endpoints.close();
    stopped
}

/// Reads `path` and checks it can replace `current`: valid, the same
/// storage, every new endpoint bound. `Ok` with the new config and a line
/// per change; `Err` with every problem (new endpoints bound for it are
/// closed again).
async fn prepare(
    path: &Path,
    current: &ValidatedConfig,
    server: &Server,
    endpoints: &mut Endpoints,
) -> Result<(ValidatedConfig, Vec<String>), Vec<String>> {
    let next = config::load_file(path)
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    if next.service.storage != current.service.storage {
        return Err(vec![format!(
            "service.storage: cannot change on a reload (from {} to {}); restart verdict to move its storage",
            current.service.storage, next.service.storage
        )]);
    }
    let mut problems = Vec::new();
    // An exporter that still owes deliveries (a pending rollback among
    // them) cannot go: its rows would wait for a worker that no longer
    // exists, and a rollback would never reach its flag.
    let kept: Vec<&str> = next.exporters.iter().map(|e| e.id.as_str()).collect();
    match server
        .catalog
        .store
        .deliveries(&[crate::storage::DeliveryState::Pending], 10_000)
        .await
    {
        Ok(pending) => {
            let mut owed: Vec<&str> = pending
                .iter()
                .map(|d| d.exporter.as_str())
                .filter(|e| !kept.contains(e))
                .collect();
            owed.sort_unstable();
            owed.dedup();
            for exporter in owed {
                let n = pending.iter().filter(|d| d.exporter == exporter).count();
                problems.push(format!(
                    "exporters.{exporter}: cannot be removed while {n} of its deliveries are pending (GET /api/v1/deliveries?state=pending); keep it until they are delivered"
                ));
            }
        }
        Err(err) => problems.push(format!("cannot read the pending deliveries: {err}")),
    }
    // On PostgreSQL, a file whose windows or subjects differ from the
    // running instances' would be refused at the switch (the previous file
    // would start again): refused now, with the reason.
    if let Some(view) = &server.catalog.cluster {
        if let Err(err) =
            crate::cluster::config::check(&view.store, &view.instance, &next.pipelines).await
        {
            problems.push(err.to_string());
        }
    }
    for key in Server::endpoint_keys(&next) {
        if let Err(err) = endpoints.reserve(&key).await {
            problems.push(format!("{}: {err:#}", key.owner));
        }
    }
    if !problems.is_empty() {
        endpoints.retain(&server.endpoints);
        return Err(problems);
    }
    Ok((next.clone(), changes(current, &next)))
}

/// What a reload from `old` to `new` changes, one line each.
fn changes(old: &ValidatedConfig, new: &ValidatedConfig) -> Vec<String> {
    let mut out = Vec::new();
    let contracts = |c: &ValidatedConfig| -> Vec<(String, u32)> {
        c.pipelines
            .iter()
            .flat_map(|p| &p.contracts)
            .map(|c| (c.name.clone(), c.version))
            .collect()
    };
    let spec = |c: &'_ ValidatedConfig, name: &str| {
        c.pipelines
            .iter()
            .flat_map(|p| &p.contracts)
            .find(|c| c.name == name)
            .cloned()
    };
    let (before, after) = (contracts(old), contracts(new));
    for (name, version) in &after {
        match before.iter().find(|(n, _)| n == name) {
            None => out.push(format!("contract {name}: added (version {version})")),
            Some((_, v)) if v != version => out.push(format!(
                "contract {name}: version {v} -> {version} (new runs start, counting the windows open now)"
            )),
            Some(_) if spec(old, name) != spec(new, name) => out.push(format!(
                "contract {name}: settings changed under the same version (its current runs go on under them)"
            )),
            Some(_) => {}
        }
    }
    for (name, _) in &before {
        if !after.iter().any(|(n, _)| n == name) {
            out.push(format!("contract {name}: removed (its runs stay stored)"));
        }
    }
    // Pipelines added, removed, or laid out otherwise (their cumulative
    // metric streams start again: see `aggregator::carry`).
    for (index, p) in new.pipelines.iter().enumerate() {
        let names = |p: &crate::config::PipelineSpec| -> Vec<String> {
            p.contracts.iter().map(|c| c.name.clone()).collect()
        };
        match old.pipelines.iter().position(|o| o.name == p.name) {
            None => out.push(format!("pipeline {}: added", p.name)),
            Some(at) => {
                let o = &old.pipelines[at];
                let (was, is) = (o.window.timing(), p.window.timing());
                if (was.size, was.lateness) != (is.size, is.lateness) {
                    let show = |n: u64| {
                        humantime::format_duration(std::time::Duration::from_nanos(n)).to_string()
                    };
                    out.push(format!(
                        "pipeline {}: window {} (allowed_lateness {}) -> {} (allowed_lateness {})",
                        p.name,
                        show(was.size),
                        show(was.lateness),
                        show(is.size),
                        show(is.lateness)
                    ));
                }
                let (before, after) = (o.window.shards.max(1), p.window.shards.max(1));
                let moved = at != index || before != after || names(o) != names(p);
                if moved {
                    let what = if before == after {
                        "its contracts or its place changed".to_string()
                    } else {
                        format!("shards {before} -> {after}")
                    };
                    out.push(format!(
                        "pipeline {}: {what} (its cumulative metric streams start again)",
                        p.name
                    ));
                }
            }
        }
    }
    for p in &old.pipelines {
        if !new.pipelines.iter().any(|n| n.name == p.name) {
            out.push(format!("pipeline {}: removed", p.name));
        }
    }
    let (old_keys, new_keys) = (Server::endpoint_keys(old), Server::endpoint_keys(new));
    for k in &new_keys {
        if !old_keys.contains(k) {
            out.push(format!(
                "{} {}: listens on {}",
                k.component, k.owner, k.endpoint
            ));
        }
    }
    for k in &old_keys {
        if !new_keys.contains(k) {
            out.push(format!(
                "{} {}: {} closed",
                k.component, k.owner, k.endpoint
            ));
        }
    }
    if out.is_empty() && old != new {
        out.push("settings changed".into());
    }
    if out.is_empty() {
        out.push("nothing changed".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(shards: u32, contracts: &[&str], extra_pipeline: bool) -> ValidatedConfig {
        let mut text = format!(
            "receivers: {{ otlp: {{ protocols: {{ http: {{ endpoint: localhost:4318 }} }} }} }}\n\
             processors:\n  window: {{ shards: {shards} }}\n"
        );
        for c in contracts {
            text.push_str(&format!("  contract/{c}: {{ max_p95_latency_ms: 1 }}\n"));
        }
        let list: Vec<String> = contracts.iter().map(|c| format!("contract/{c}")).collect();
        text.push_str("pipelines:\n");
        if extra_pipeline {
            text.push_str("  first: { receivers: [otlp], processors: [window, contract/z] }\n");
        }
        text.push_str(&format!(
            "  main: {{ receivers: [otlp], processors: [window, {}] }}\n",
            list.join(", ")
        ));
        if extra_pipeline {
            text = text.replace(
                "processors:\n",
                "processors:\n  contract/z: { max_p95_latency_ms: 1 }\n",
            );
        }
        config::load_str(&text, &Default::default()).expect("valid")
    }

    /// A reload's answer names what makes cumulative metric streams start
    /// again: another number of shards, contracts reordered, a pipeline
    /// that moved; a threshold-only change names none of that.
    #[test]
    fn changes_name_what_restarts_metric_streams() {
        let base = config(2, &["a", "b"], false);
        let says = |next: &ValidatedConfig| changes(&base, next).join("; ");
        assert!(says(&config(4, &["a", "b"], false))
            .contains("pipeline main: shards 2 -> 4 (its cumulative metric streams start again)"));
        assert!(says(&config(2, &["b", "a"], false))
            .contains("pipeline main: its contracts or its place changed"));
        let added = says(&config(2, &["a", "b"], true));
        assert!(added.contains("pipeline first: added"), "{added}");
        assert!(
            added.contains("pipeline main: its contracts or its place changed"),
            "{added}"
        );
        assert!(!says(&base).contains("pipeline"));
        let mut resized = config(2, &["a", "b"], false);
        resized.pipelines[0].window.size = std::time::Duration::from_secs(10);
        assert!(
            says(&resized).contains(
                "pipeline main: window 1m (allowed_lateness 10s) -> 10s (allowed_lateness 10s)"
            ),
            "{}",
            says(&resized)
        );
    }
}
