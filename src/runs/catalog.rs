//! The read side of the runs: what the API and the Prometheus exporter need
//! to answer — every contract, the store, readiness, and the engine task to
//! send manual decisions to. Built by the topology, shared by the readers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::task::Command;
use crate::clock::SharedClock;
use crate::config::ContractSpec;
use crate::storage::{Health, RunStore};

/// What the read side (API, Prometheus) needs: every contract, the store,
/// and whether the server is ready.
#[derive(Debug)]
pub struct Catalog {
    /// Every contract of every pipeline.
    pub contracts: Vec<ContractSpec>,
    /// The run store.
    pub store: Arc<dyn RunStore>,
    /// Wall clock.
    pub clock: SharedClock,
    /// Final runs leave `/metrics` this long after their decision.
    pub metric_expiry: Duration,
    /// Storage open and receivers listening.
    pub ready: AtomicBool,
    /// Storage problems seen at run time.
    pub health: Arc<Health>,
    /// Problems with delivery targets (Unleash): shown by `/readyz` without
    /// making verdict unready — ingest and decisions go on.
    pub targets: Arc<Health>,
    /// Bearer token of the write endpoints; `None` = open.
    pub api_token: Option<String>,
    /// The exporters with a delivery worker: the pending rows of any other
    /// can be abandoned through the API.
    pub delivering: Vec<String>,
    /// The engine task that owns each contract's runs, by contract name.
    pub commands: HashMap<String, mpsc::Sender<Command>>,
    /// Where `POST /api/v1/reload` asks for the pipeline file to be read
    /// again; `None` when nothing supervises the server (embedded, tests).
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// This instance in a cluster (`postgres://` storage); `None` alone.
    pub cluster: Option<ClusterView>,
}

/// What the API shows of the cluster (`GET /api/v1/cluster`).
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The shared database.
    pub store: Arc<crate::storage::SqlStore>,
    /// This instance's name.
    pub instance: String,
    /// Whether this instance leads.
    pub leading: tokio::sync::watch::Receiver<bool>,
    /// How long after a window's close deadline the leader judges it.
    pub grace: Duration,
}

/// A request to re-read the pipeline file and apply it.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Answered once the new file is known to be applicable (`Ok` with what
    /// changes) or not (`Err` with every problem, each with its path);
    /// the switch itself happens after the answer.
    pub reply: tokio::sync::oneshot::Sender<Result<Vec<String>, Vec<String>>>,
}

impl Catalog {
    /// The contract named `name`.
    pub fn contract(&self, name: &str) -> Option<&ContractSpec> {
        self.contracts.iter().find(|c| c.name == name)
    }

    /// What is wrong with delivery targets, by source, if anything.
    pub fn degraded(&self) -> std::collections::BTreeMap<String, String> {
        self.targets.problems()
    }

    /// Why the server is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.ready.load(Ordering::SeqCst) {
            return Some("not ready".into());
        }
        self.health.problem().map(|p| format!("storage: {p}"))
    }
}
