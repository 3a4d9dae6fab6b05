//! Flagger's webhooks (design §7): `POST /api/v1/flagger/{contract}/{hook}`
//! with `hook` one of `confirm-promotion`, `rollback` and `check`.
//!
//! What Flagger does, from its source (fluxcd/flagger
//! `pkg/controller/webhook.go`, `scheduler_hooks.go`, `scheduler.go`):
//! - it POSTs `{"name", "namespace", "phase", "checksum", "metadata"}`
//!   (`CanaryWebhookPayload`; `metadata` is the hook's string map, left out
//!   when empty) with only `Content-Type: application/json` — no way to send
//!   a bearer token, which is why these hooks, which change nothing, are
//!   open like the API's reads;
//! - any status above 202 is a failure (`r.StatusCode > 202`): 200–202
//!   count, 204 does not; a failure's body goes into Flagger's events and
//!   logs, so a 403 here says why;
//! - `confirm-promotion`: promotion waits while the hook fails;
//!   `rollback`: a success rolls the canary back at once (asked while the
//!   canary is Progressing, Waiting or WaitingPromotion); a `rollout` hook:
//!   a failure halts advancement and counts towards the analysis'
//!   `threshold`, after which Flagger rolls back.
//!
//! So `confirm-promotion` answers 200 only for PROMOTED, `rollback` 200
//! only for ROLLED_BACK, and `check` 403 only for ROLLED_BACK: an undecided
//! run (sparse traffic, no data yet) must not use up Flagger's failure
//! threshold. A `dry_run` contract never steers: the answer is what lets
//! the canary go on as if verdict were not asked (200, 403, 200), and the
//! body says what verdict would have answered.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::model::series::parse_joined;
use crate::model::{RunRecord, RunState};
use crate::runs::Catalog;

use super::{error, store_error, ApiPath};

/// One of Flagger's hook types that verdict answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    /// `type: confirm-promotion`: 200 only when PROMOTED.
    ConfirmPromotion,
    /// `type: rollback`: 200 only when ROLLED_BACK.
    Rollback,
    /// `type: rollout` (a check each iteration): 403 only when ROLLED_BACK.
    Check,
}

impl Hook {
    const ALL: [Hook; 3] = [Hook::ConfirmPromotion, Hook::Rollback, Hook::Check];

    fn as_str(self) -> &'static str {
        match self {
            Hook::ConfirmPromotion => "confirm-promotion",
            Hook::Rollback => "rollback",
            Hook::Check => "check",
        }
    }

    /// Whether Flagger should be told yes (a 200) for a run in `state`.
    pub(super) fn passes(self, state: RunState) -> bool {
        match self {
            Hook::ConfirmPromotion => state == RunState::Promoted,
            Hook::Rollback => state == RunState::RolledBack,
            Hook::Check => state != RunState::RolledBack,
        }
    }

    /// The answer of a `dry_run` contract: whatever lets the canary go on.
    fn passes_dry_run(self) -> bool {
        self != Hook::Rollback
    }

    /// Why a run in `state` gets a 403, for Flagger's events.
    fn refusal(self, subject: &str, state: RunState) -> String {
        match self {
            Hook::ConfirmPromotion => {
                format!(
                    "{subject} is {}, not PROMOTED: promotion waits",
                    state.as_str()
                )
            }
            Hook::Rollback => {
                format!(
                    "{subject} is {}, not ROLLED_BACK: no rollback",
                    state.as_str()
                )
            }
            Hook::Check => format!("{subject} is ROLLED_BACK: the canary fails this check"),
        }
    }
}

/// What verdict reads of Flagger's payload: the subject in
/// `metadata.subject`, if given. The rest (`name`, `namespace`, `phase`,
/// `checksum`) only names the canary in the answer.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Payload {
    /// `metadata.subject`: a subject as the API writes it (`checkout/2.0.1`).
    pub subject: Option<String>,
    /// `name.namespace` of the canary, when Flagger sent them.
    pub canary: Option<String>,
}

/// Reads Flagger's payload; an empty body is `{}` (a hand-made `curl`).
pub(super) fn payload(body: &[u8]) -> Result<Payload, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Payload::default());
    }
    const SHAPE: &str = r#"the body must be Flagger's webhook payload, a JSON object such as {"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "…", "metadata": {"subject": "checkout/2.0.1"}}"#;
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err(SHAPE.to_string());
    };
    let subject =
        match map.get("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(meta)) => match meta.get("subject") {
                None | Some(Value::Null) => None,
                // Taken as written: a subject's values may hold any character.
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                Some(Value::String(_)) => return Err("metadata.subject is empty".into()),
                Some(_) => return Err(
                    "metadata.subject must be a string (Flagger's metadata is a map of strings)"
                        .into(),
                ),
            },
            Some(_) => return Err("metadata must be an object of strings".into()),
        };
    let name = map.get("name").and_then(Value::as_str);
    let namespace = map.get("namespace").and_then(Value::as_str);
    let canary = match (name, namespace) {
        (Some(n), Some(ns)) => Some(format!("{n}.{ns}")),
        (Some(n), None) => Some(n.to_string()),
        _ => None,
    };
    Ok(Payload { subject, canary })
}

/// `POST /api/v1/flagger/{contract}/{hook}`.
pub(super) async fn hook(
    State(c): State<Arc<Catalog>>,
    ApiPath((contract, hook)): ApiPath<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(hook) = Hook::ALL.into_iter().find(|h| h.as_str() == hook) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown Flagger hook {hook:?}: expected confirm-promotion, rollback or check"),
        );
    };
    let Some(spec) = c.contract(&contract) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown contract {contract:?}"),
        );
    };
    let mut payload = match payload(&body) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    // A subject that cannot exist would read as PENDING forever and let
    // `check` pass a canary verdict never judged: refused instead.
    if let Some(subject) = &payload.subject {
        match parse_joined(subject, spec.subject_by.len()) {
            Ok(canonical) => payload.subject = Some(canonical),
            Err(why) => return error(StatusCode::BAD_REQUEST, format!("metadata.{why}")),
        }
    }
    // The run asked about: the one named, else the contract's only current
    // run. Older contract versions' runs are history, as in
    // `GET /api/v1/runs/{contract}`.
    let run: Option<RunRecord> = match &payload.subject {
        Some(subject) => match c.store.current(&contract, subject).await {
            Ok(run) => run.filter(|r| r.contract_version == spec.version),
            Err(e) => return store_error(e),
        },
        None => {
            let mut runs = match c.store.current_runs(&contract).await {
                Ok(runs) => runs,
                Err(e) => return store_error(e),
            };
            runs.retain(|r| r.contract_version == spec.version && !r.superseded);
            if runs.len() != 1 {
                return error(StatusCode::BAD_REQUEST, ambiguous(&contract, &runs));
            }
            runs.pop()
        }
    };
    let subject = payload
        .subject
        .clone()
        .or_else(|| run.as_ref().map(|r| r.subject.joined().to_string()))
        .unwrap_or_default();
    // A subject with no run yet is PENDING, as `GET /api/v1/runs/…` says.
    let (state, reason, run_id) = match &run {
        Some(r) => (r.state, r.reason.clone(), Some(r.run_id.clone())),
        None => (
            RunState::Pending,
            "no sample received yet".to_string(),
            None,
        ),
    };
    let verdict_passes = hook.passes(state);
    let passes = if spec.dry_run {
        hook.passes_dry_run()
    } else {
        verdict_passes
    };
    let mut body = json!({
        "hook": hook.as_str(),
        "contract": contract,
        "subject": subject,
        "state": state,
        "reason": reason,
        "run_id": run_id,
        "canary": payload.canary,
        "dry_run": spec.dry_run,
    });
    if spec.dry_run {
        body["verdict_would_answer"] = json!(if verdict_passes { 200 } else { 403 });
    }
    tracing::debug!(hook = hook.as_str(), %contract, %subject, state = state.as_str(), passes, "Flagger hook answered.");
    if passes {
        return (StatusCode::OK, Json(body)).into_response();
    }
    let why = if spec.dry_run {
        format!("contract {contract:?} is a dry run: verdict does not roll back")
    } else {
        format!("{} ({reason})", hook.refusal(&subject, state))
    };
    body["error"] = Value::String(why);
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// The 400 of a hook without `metadata.subject` when the contract has no
/// current run, or several.
fn ambiguous(contract: &str, runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return format!(
            "contract {contract:?} has no current run to answer for: set metadata.subject \
             on the Flagger webhook (a subject as the API writes it, e.g. \"checkout/2.0.1\")"
        );
    }
    let names: Vec<String> = runs
        .iter()
        .map(|r| format!("{:?} ({})", r.subject.joined(), r.state.as_str()))
        .collect();
    format!(
        "contract {contract:?} has {} current runs: {}; set metadata.subject on the Flagger \
         webhook to one of them",
        runs.len(),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_semantics_per_hook() {
        use RunState::*;
        let table = [
            (Hook::ConfirmPromotion, [false, false, true, false]),
            (Hook::Rollback, [false, false, false, true]),
            (Hook::Check, [true, true, true, false]),
        ];
        for (hook, expected) in table {
            for (state, want) in [Pending, Validating, Promoted, RolledBack]
                .into_iter()
                .zip(expected)
            {
                assert_eq!(hook.passes(state), want, "{hook:?} {state:?}");
            }
        }
        assert!(Hook::ConfirmPromotion.passes_dry_run());
        assert!(!Hook::Rollback.passes_dry_run());
        assert!(Hook::Check.passes_dry_run());
    }

    #[test]
    fn payloads_are_read_leniently_but_never_guessed() {
        let p = payload(
            br#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"85d557f47b","metadata":{"subject":"checkout/2.0.1","test":"all"}}"#,
        )
        .expect("reads");
        assert_eq!(p.subject.as_deref(), Some("checkout/2.0.1"));
        assert_eq!(p.canary.as_deref(), Some("podinfo.test"));
        // No metadata at all (Flagger leaves an empty map out).
        let p = payload(
            br#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"x"}"#,
        )
        .expect("reads");
        assert_eq!(p.subject, None);
        assert_eq!(payload(b"").expect("empty"), Payload::default());
        for bad in [
            &b"[1]"[..],
            b"not json",
            br#"{"metadata": "x"}"#,
            br#"{"metadata": {"subject": 3}}"#,
            br#"{"metadata": {"subject": " "}}"#,
        ] {
            assert!(payload(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
