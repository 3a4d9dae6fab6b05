//! The `unleash` exporter (design §7): applies the flag changes the run
//! engine decided (`runs::rollout`) through Unleash's Admin API, delivered
//! from the outbox by its worker (`outbox.rs`).
//!
//! A change is applied with requests that each set an absolute state, so
//! applying it twice is harmless (the outbox delivers at least once):
//!
//! - a value: `PATCH /api/admin/projects/{project}/features/{flag}/
//!   environments/{env}/strategies/{id}` with the JSON Patch
//!   `[{"op": "replace", "path": "/parameters/rollout", "value": "25"}]`,
//!   then `POST …/environments/{env}/on` (a flag that is off in the
//!   environment would serve nobody the release whatever its rollout);
//! - a rollback with `on_rollback: disable`: `POST …/environments/{env}/off`.
//!
//! The strategy is `strategy_id`, or the flag's first flexibleRollout
//! strategy in the environment, looked up once per flag (again after a 404).
//! Every request carries `Authorization: <token>` (an Admin API token, not a
//! bearer token). Redirects are never followed.
//!
//! Nothing here gives up: a change is retried with backoff until Unleash
//! applies it or a later change of the same flag replaces it (the worker
//! marks the older one superseded). Unleash down, a 5xx, a refused token, a
//! flag or strategy that does not exist (yet) — each is one line that says
//! what to fix, in the logs, in the delivery's `last_error` and in
//! `/readyz`'s `degraded`, and a rollback still waiting is counted in
//! `verdict_unleash_unapplied_rollbacks`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::config::UnleashSpec;
use crate::model::rollout::is_unleash_name;
use crate::model::{FlagChange, UnixNanos};
use crate::retry::answer_error;
use crate::storage::{Attempt, Delivery};

use super::webhook::{client, describe, snippet, BuildError};

/// A configured Unleash target.
#[derive(Debug)]
pub struct Unleash {
    spec: UnleashSpec,
    client: reqwest::Client,
    /// The strategy of each flag, once looked up.
    strategies: Mutex<HashMap<String, String>>,
}

/// Why a change could not be applied (one line, saying what to fix).
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyError(pub String);

impl Unleash {
    /// The timeout of one HTTP request to the target.
    pub fn timeout(&self) -> std::time::Duration {
        self.spec.timeout
    }

    /// An Unleash target with its own HTTP client.
    pub fn new(spec: UnleashSpec) -> Result<Unleash, BuildError> {
        let client = client(&spec.url, &spec.tls, spec.timeout)?;
        Ok(Unleash {
            spec,
            client,
            strategies: Mutex::new(HashMap::new()),
        })
    }

    /// The change a delivery carries, or why it cannot be read.
    pub fn change_of(d: &Delivery) -> Result<FlagChange, String> {
        serde_json::from_str(&d.event).map_err(|e| format!("not a flag change: {e}"))
    }

    /// One attempt at applying `d`; `now` is when it starts.
    pub async fn attempt(&self, d: &Delivery, now: UnixNanos) -> Attempt {
        let change = match Unleash::change_of(d) {
            Ok(c) => c,
            Err(error) => {
                return Attempt::Failed {
                    error: format!("{error} (final: not retried)"),
                }
            }
        };
        match self.apply(&change).await {
            Ok(()) => Attempt::Delivered,
            Err(ApplyError(error)) => {
                let wait = self
                    .spec
                    .retry
                    .jittered(d.attempts + 1, rand::random::<f64>());
                Attempt::Retry {
                    next_at: now.saturating_add(crate::model::nanos(wait)),
                    error,
                }
            }
        }
    }

    /// Applies `change`: the rollout, then the flag on; or the flag off.
    pub async fn apply(&self, change: &FlagChange) -> Result<(), ApplyError> {
        let flag = &change.flag;
        if !is_unleash_name(flag) {
            return Err(ApplyError(format!(
                "flag name {flag:?} (from {:?}) is not a valid Unleash name: 1-100 letters, digits or - _ . ! ~ * ' ( )",
                self.spec.flag.as_str()
            )));
        }
        if !change.enabled {
            return self.switch(flag, "off").await;
        }
        let strategy = self.strategy(flag).await?;
        let patch = serde_json::json!([
            {"op": "replace", "path": "/parameters/rollout", "value": change.percent.to_string()}
        ]);
        let url = format!("{}/strategies/{}", self.base(flag), segment(&strategy));
        let answer = self
            .send(self.client.patch(&url).body(patch.to_string()))
            .await;
        if let Err(Failure::Status(404, _)) = &answer {
            // The strategy went (deleted, or the flag recreated): look it
            // up again at the next attempt.
            self.forget(flag);
        }
        answer.map_err(|f| {
            self.explain(
                f,
                &format!("setting the rollout of flag {flag:?} (strategy {strategy})"),
            )
        })?;
        if change.percent == 0 {
            // A rollback to 0 % never turns a flag on: other strategies
            // of the flag would start serving the release it rolls back.
            return Ok(());
        }
        self.switch(flag, "on").await
    }

    /// `POST …/on` or `…/off`.
    async fn switch(&self, flag: &str, to: &str) -> Result<(), ApplyError> {
        let url = format!("{}/{to}", self.base(flag));
        self.send(self.client.post(&url))
            .await
            .map(|_| ())
            .map_err(|f| self.explain(f, &format!("turning flag {flag:?} {to}")))
    }

    /// `…/projects/{project}/features/{flag}/environments/{env}`.
    fn base(&self, flag: &str) -> String {
        format!(
            "{}/api/admin/projects/{}/features/{}/environments/{}",
            self.spec.url,
            segment(&self.spec.project),
            segment(flag),
            segment(&self.spec.environment)
        )
    }

    fn forget(&self, flag: &str) {
        if let Ok(mut cache) = self.strategies.lock() {
            cache.remove(flag);
        }
    }

    /// The strategy to step on `flag`: `strategy_id`, or its first
    /// flexibleRollout strategy in the environment. Either way it must be
    /// a flexibleRollout strategy: another kind has no rollout percentage
    /// (a standard strategy serves everyone), and stepping it would report
    /// percentages the flag does not apply.
    async fn strategy(&self, flag: &str) -> Result<String, ApplyError> {
        if let Some(id) = self
            .strategies
            .lock()
            .ok()
            .and_then(|c| c.get(flag).cloned())
        {
            return Ok(id);
        }
        let url = format!("{}/strategies", self.base(flag));
        let what = format!("looking up the strategies of flag {flag:?}");
        let body = self
            .send(self.client.get(&url))
            .await
            .map_err(|f| self.explain(f, &what))?;
        let list: Value = serde_json::from_slice(&body)
            .map_err(|e| ApplyError(format!("{what}: the answer is not JSON: {e}")))?;
        if let Some(id) = &self.spec.strategy_id {
            let chosen = list
                .as_array()
                .and_then(|a| a.iter().find(|s| s["id"].as_str() == Some(id)));
            return match chosen {
                None => Err(ApplyError(format!(
                    "flag {flag:?} has no strategy {id:?} (strategy_id) in environment {:?}",
                    self.spec.environment
                ))),
                Some(s) if s["name"] != "flexibleRollout" => Err(ApplyError(format!(
                    "strategy {id:?} of flag {flag:?} is a {} strategy, not flexibleRollout: it has no rollout percentage to step (a standard strategy serves every user)",
                    s["name"]
                ))),
                Some(_) => {
                    if let Ok(mut cache) = self.strategies.lock() {
                        cache.insert(flag.to_string(), id.clone());
                    }
                    Ok(id.clone())
                }
            };
        }
        let mut found: Vec<&Value> = list
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["name"] == "flexibleRollout")
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by_key(|s| s["sortOrder"].as_i64().unwrap_or(i64::MAX));
        let Some(id) = found.first().and_then(|s| s["id"].as_str()) else {
            return Err(ApplyError(format!(
                "flag {flag:?} has no flexibleRollout strategy in environment {:?} of project {:?}: add one (its percentage is set by verdict) or set strategy_id",
                self.spec.environment, self.spec.project
            )));
        };
        if let Ok(mut cache) = self.strategies.lock() {
            cache.insert(flag.to_string(), id.to_string());
        }
        Ok(id.to_string())
    }

    /// Sends a request with the token; the answer's body on a 2xx.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<bytes::Bytes, Failure> {
        let resp = request
            .header(http::header::AUTHORIZATION, &self.spec.token)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| Failure::Transport(describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .bytes()
                .await
                .map_err(|e| Failure::Transport(describe(&e)));
        }
        let mut error = answer_error(status, resp.headers());
        if let Some(said) = snippet(resp).await {
            // Unleash answers `{"name": …, "message": "…", "details": […]}`.
            let message = serde_json::from_str::<Value>(&said)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(said);
            error = format!("{error}: {message}");
        }
        Err(Failure::Status(status.as_u16(), error))
    }

    /// `failure` while doing `what`, with what to check.
    fn explain(&self, failure: Failure, what: &str) -> ApplyError {
        let spec = &self.spec;
        ApplyError(match failure {
            Failure::Transport(e) => {
                format!("{what}: Unleash at {} unreachable: {e}", spec.url)
            }
            Failure::Status(401, e) => {
                format!("{what}: {e}: Unleash refused the token (check the exporter's token: an Admin API token)")
            }
            Failure::Status(403, e) => format!(
                "{what}: {e}: the token may not change flags in project {:?} and environment {:?}",
                spec.project, spec.environment
            ),
            Failure::Status(404, e) => format!(
                "{what}: {e}: no such flag, strategy or environment in project {:?} (environment {:?}) — created yet?",
                spec.project, spec.environment
            ),
            Failure::Status(_, e) => format!("{what}: {e}"),
        })
    }
}

/// A request that did not succeed.
#[derive(Debug)]
enum Failure {
    /// No answer: refused, timed out, reset.
    Transport(String),
    /// An answer other than 2xx: its status and a one-line description.
    Status(u16, String),
}

/// A path segment, percent-encoded (names are URL-friendly already; ids
/// and anything else are escaped rather than trusted).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("checkout-2.0.1"), "checkout-2.0.1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
