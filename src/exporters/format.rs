//! What a webhook sends (`format:` of `webhook/…`): the body of one request
//! built from the stored event, a pure function of the event and the
//! [`Links`], so each shape is tested without a server.
//!
//! - `json`: the §5.5 event, byte for byte as stored (its signature is what
//!   a receiver verifies, so it is never re-serialised);
//! - `github`: a `repository_dispatch` (`POST /repos/{owner}/{repo}/dispatches`):
//!   `{"event_type": "verdict-rolled-back", "client_payload": {…}}`. GitHub
//!   allows at most 10 top-level properties in `client_payload` (its REST
//!   description of "Create a repository dispatch event") and the event has
//!   15, so the payload carries the fields a workflow branches on, flat, and
//!   the whole event under `event`;
//! - `slack`: an incoming-webhook message, `text` (the notification line)
//!   and `blocks` (contract, subject, state, reason, key figures, and a link
//!   to the run when `service.api.public_url` is set).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::config::WebhookFormat;
use crate::model::series::escape_value;

/// What requests link to, shared by every webhook of a server.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// `service.api.public_url`, without a trailing `/`.
    pub public_url: Option<String>,
    /// Each contract's `subject_by`, to write an event's subject (a map) as
    /// the joined key the API and metrics use.
    pub subject_by: HashMap<String, Vec<String>>,
}

/// Why a stored event could not be shaped into a request.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The stored event is not a JSON object (a damaged outbox row).
    #[error("the stored event is not a JSON object: {0}")]
    NotAnEvent(String),
}

/// Slack's limits (Block Kit reference): a header's text, a section's text,
/// one field's text, and fields per section.
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_SECTION_CHARS: usize = 3000;
/// Longest run link given to Slack: it must fit a section block with its
/// label, and is left out rather than cut.
const SLACK_URL_CHARS: usize = 2900;
const SLACK_FIELD_CHARS: usize = 2000;
/// Failed checks listed in a Slack message; the rest are counted.
const SLACK_FAILURES: usize = 5;

/// The body of one request for `event` (the stored event JSON).
pub fn render(format: WebhookFormat, event: &str, links: &Links) -> Result<String, RenderError> {
    let shape: fn(Map<String, Value>, &Links) -> Value = match format {
        WebhookFormat::Json => return Ok(event.to_string()),
        WebhookFormat::Github => github,
        WebhookFormat::Slack => slack,
    };
    let parsed: Value =
        serde_json::from_str(event).map_err(|e| RenderError::NotAnEvent(e.to_string()))?;
    let Value::Object(event) = parsed else {
        return Err(RenderError::NotAnEvent("not an object".into()));
    };
    Ok(shape(event, links).to_string())
}

fn text<'a>(event: &'a Map<String, Value>, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `verdict-rolled-back`, `verdict-promoted`, `verdict-validating`: the
/// `types:` a workflow's `on: repository_dispatch` filters on.
pub fn github_event_type(state: &str) -> String {
    format!("verdict-{}", state.to_ascii_lowercase().replace('_', "-"))
}

/// The subject's attributes in `subject_by` order (then any others, sorted),
/// as the event stores them.
fn subject_pairs(event: &Map<String, Value>, links: &Links) -> Vec<(String, String)> {
    let Some(Value::Object(map)) = event.get("subject") else {
        return Vec::new();
    };
    let value = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(order) = links.subject_by.get(text(event, "contract")) {
        for k in order.iter().filter(|k| map.contains_key(k.as_str())) {
            pairs.push((k.clone(), value(k)));
        }
    }
    // serde_json's map is sorted: attributes the config no longer names
    // (an event from before a change of `subject_by`) come last, in order.
    for k in map.keys() {
        if !pairs.iter().any(|(p, _)| p == k) {
            pairs.push((k.clone(), value(k)));
        }
    }
    pairs
}

/// The subject as the API and metrics write it (`checkout/2.0.1`).
fn joined(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(_, v)| escape_value(v))
        .collect::<Vec<_>>()
        .join("/")
}

/// `GET /api/v1/runs/{contract}/{subject}` under the public URL: every byte
/// outside the unreserved set percent-encoded (the joined subject's own
/// `%` becomes `%25`, as the README's subject section asks), `/` kept as
/// the separator of the subject's values.
pub fn run_url(public_url: &str, contract: &str, subject: &str) -> String {
    fn encode(out: &mut String, s: &str, keep_slash: bool) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    let mut url = format!("{public_url}/api/v1/runs/");
    encode(&mut url, contract, false);
    url.push('/');
    encode(&mut url, subject, true);
    url
}

fn github(event: Map<String, Value>, links: &Links) -> Value {
    let pairs = subject_pairs(&event, links);
    let subject = joined(&pairs);
    let contract = text(&event, "contract").to_string();
    let url = links
        .public_url
        .as_deref()
        .map(|base| run_url(base, &contract, &subject));
    let attributes: Map<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let state = text(&event, "state").to_string();
    json!({
        "event_type": github_event_type(&state),
        "client_payload": {
            "event_id": event.get("event_id").cloned().unwrap_or(Value::Null),
            "contract": contract,
            "contract_version": event.get("contract_version").cloned().unwrap_or(Value::Null),
            "subject": subject,
            "subject_attributes": attributes,
            "run_id": event.get("run_id").cloned().unwrap_or(Value::Null),
            "state": state,
            "reason": event.get("reason").cloned().unwrap_or(Value::Null),
            "run_url": url,
            "event": Value::Object(event),
        },
    })
}

/// Slack's three characters with a meaning in message text, escaped as
/// Slack's formatting reference asks (`&amp;`, `&lt;`, `&gt;`), so a reason
/// can neither break a link nor ping `<!channel>`.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `s` cut to at most `max` characters, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A figure as people read it: `130.2`, `0.35`, `48210`.
fn figure(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn number(obj: Option<&Value>, key: &str) -> Option<f64> {
    obj.and_then(|o| o.get(key)).and_then(Value::as_f64)
}

/// The headline word of a state, with its emoji.
fn headline(state: &str) -> &'static str {
    match state {
        "ROLLED_BACK" => ":rotating_light: Rolled back",
        "PROMOTED" => ":white_check_mark: Promoted",
        "VALIDATING" => ":hourglass_flowing_sand: Validating",
        _ => ":information_source: Verdict",
    }
}

fn slack(event: Map<String, Value>, links: &Links) -> Value {
    let event = &event;
    let pairs = subject_pairs(event, links);
    let subject = joined(&pairs);
    let contract = text(event, "contract");
    let state = text(event, "state");
    let previous = text(event, "previous_state");
    let reason = text(event, "reason");
    // A link is never cut (a cut URL leads nowhere): one too long for a
    // block is left out, the run is still named in the text.
    let url = links
        .public_url
        .as_deref()
        .map(|base| run_url(base, contract, &subject))
        .filter(|u| u.chars().count() <= SLACK_URL_CHARS);

    let mut line = cut(
        &format!(
            "{} {}: {} {} — {}",
            headline(state),
            slack_escape(contract),
            slack_escape(&subject),
            state,
            slack_escape(reason)
        ),
        SLACK_SECTION_CHARS,
    );
    if let Some(url) = &url {
        let _ = write!(line, " (<{url}|run>)");
    }

    let version = event
        .get("contract_version")
        .and_then(Value::as_u64)
        .map(|v| format!(" v{v}"))
        .unwrap_or_default();
    let attributes = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", slack_escape(k), slack_escape(v)))
        .collect::<Vec<_>>()
        .join(", ");
    let transition = if previous.is_empty() {
        state.to_string()
    } else {
        format!("{previous} → {state}")
    };
    let run = event.get("run");
    let observed = event.get("observed").filter(|o| !o.is_null());
    let mut fields = vec![
        format!("*Contract*\n{}{version}", slack_escape(contract)),
        format!("*Subject*\n{}", slack_escape(&subject)),
        format!("*State*\n{transition}"),
        format!("*Attributes*\n{attributes}"),
    ];
    let mut figures = Vec::new();
    if let Some(n) = number(run, "samples") {
        let windows = number(run, "windows").map_or(String::new(), |w| {
            format!(
                " over {} window{}",
                figure(w),
                if w == 1.0 { "" } else { "s" }
            )
        });
        figures.push(format!("*Samples*\n{}{windows}", figure(n)));
    }
    for (key, label, unit) in [
        ("p95_latency_ms", "p95 latency", " ms"),
        ("error_rate_percent", "Error rate", " %"),
        ("conversion_rate_percent", "Conversion rate", " %"),
    ] {
        let whole = number(run, key);
        let window = number(observed, key);
        let value = match (whole, window) {
            (None, None) => continue,
            (Some(r), Some(w)) => {
                format!("{}{unit} (deciding window {}{unit})", figure(r), figure(w))
            }
            (Some(r), None) => format!("{}{unit}", figure(r)),
            (None, Some(w)) => format!("{}{unit} (deciding window)", figure(w)),
        };
        figures.push(format!("*{label}*\n{value}"));
    }
    fields.extend(figures);
    let fields: Vec<Value> = fields
        .into_iter()
        .take(10)
        .map(|f| json!({"type": "mrkdwn", "text": cut(&f, SLACK_FIELD_CHARS)}))
        .collect();

    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true,
            "text": cut(&format!("{} {contract} {subject}", headline(state)), SLACK_HEADER_CHARS)}}),
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": cut(&format!("*Reason:* {}", slack_escape(reason)), SLACK_SECTION_CHARS)}}),
        json!({"type": "section", "fields": fields}),
    ];
    let failures: Vec<&str> = event
        .get("failures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // The reason usually is the failures joined; list them only when they
    // say more than it does.
    if failures.len() > 1 || failures.first().is_some_and(|f| *f != reason) {
        let mut list = String::from("*Failed checks*");
        for f in failures.iter().take(SLACK_FAILURES) {
            let _ = write!(list, "\n• {}", slack_escape(f));
        }
        if failures.len() > SLACK_FAILURES {
            let _ = write!(list, "\n… and {} more", failures.len() - SLACK_FAILURES);
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": cut(&list, SLACK_SECTION_CHARS)}}));
    }
    if let Some(url) = &url {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("<{url}|Open the run in verdict>")}}));
    }
    let mut context = format!("event {}", slack_escape(text(event, "event_id")));
    if let Some(w) = event.get("window").filter(|w| !w.is_null()) {
        let (start, end) = (
            w.get("start").and_then(Value::as_str).unwrap_or(""),
            w.get("end").and_then(Value::as_str).unwrap_or(""),
        );
        let _ = write!(context, " · window {start} – {end}");
    }
    let _ = write!(context, " · emitted {}", text(event, "emitted_at"));
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&context, SLACK_FIELD_CHARS)}]}));
    json!({"text": line, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's limit on `client_payload`'s top-level properties.
    const GITHUB_PAYLOAD_KEYS: usize = 10;

    /// The §5.5 sample event.
    fn event() -> Value {
        json!({
            "event_id": "01JDEVENT", "emitted_at": "2026-11-25T14:03:10.004Z",
            "contract": "checkout", "contract_version": 3, "run_id": "run-1",
            "subject": {"service.version": "2.0.1", "service.name": "checkout"},
            "state": "ROLLED_BACK", "previous_state": "VALIDATING",
            "reason": "p95 latency 130.2ms exceeds threshold 120ms <!channel> & co",
            "window": {"start": "2026-11-25T14:02:00Z", "end": "2026-11-25T14:03:00Z"},
            "observed": {"p50_latency_ms": 41.0, "p95_latency_ms": 130.2, "p99_latency_ms": 210.9,
                         "error_rate_percent": 0.4, "conversion_rate_percent": 17.1, "samples": 5234},
            "run": {"started_at": "2026-11-25T13:40:00.000Z", "samples": 48210, "windows": 23,
                    "p95_latency_ms": 88.1, "error_rate_percent": 0.3, "conversion_rate_percent": 18.0},
            "failures": ["p95 latency 130.2ms exceeds threshold 120ms", "error rate too high"],
            "dry_run": false, "checks": []
        })
    }

    fn links(public_url: Option<&str>) -> Links {
        Links {
            public_url: public_url.map(str::to_string),
            subject_by: HashMap::from([(
                "checkout".to_string(),
                vec!["service.name".to_string(), "service.version".to_string()],
            )]),
        }
    }

    fn rendered(format: WebhookFormat, public_url: Option<&str>) -> Value {
        let body = render(format, &event().to_string(), &links(public_url)).expect("renders");
        serde_json::from_str(&body).expect("JSON")
    }

    #[test]
    fn json_is_the_stored_event_byte_for_byte() {
        let stored = "{\"b\": 1,   \"a\": 2}";
        let body = render(WebhookFormat::Json, stored, &Links::default()).expect("renders");
        assert_eq!(body, stored);
    }

    #[test]
    fn github_is_a_repository_dispatch_within_githubs_limits() {
        let body = rendered(WebhookFormat::Github, Some("https://verdict.example.com"));
        assert_eq!(body["event_type"], "verdict-rolled-back");
        let payload = body["client_payload"].as_object().expect("object");
        assert!(payload.len() <= GITHUB_PAYLOAD_KEYS, "{payload:?}");
        assert_eq!(payload["subject"], "checkout/2.0.1");
        assert_eq!(payload["subject_attributes"]["service.version"], "2.0.1");
        assert_eq!(payload["state"], "ROLLED_BACK");
        assert_eq!(payload["event_id"], "01JDEVENT");
        assert_eq!(payload["event"], event());
        assert_eq!(
            payload["run_url"],
            "https://verdict.example.com/api/v1/runs/checkout/checkout/2.0.1"
        );
        assert!(body["event_type"].as_str().is_some_and(|t| t.len() <= 100));
        let none = rendered(WebhookFormat::Github, None);
        assert_eq!(none["client_payload"]["run_url"], Value::Null);
        assert_eq!(github_event_type("PROMOTED"), "verdict-promoted");
        assert_eq!(github_event_type("VALIDATING"), "verdict-validating");
    }

    #[test]
    fn slack_has_text_blocks_figures_and_a_link() {
        let body = rendered(WebhookFormat::Slack, Some("https://verdict.example.com"));
        let text = body["text"].as_str().expect("text");
        assert!(text.contains("checkout/2.0.1 ROLLED_BACK"), "{text}");
        // Escaped: no mention, no broken link.
        assert!(text.contains("&lt;!channel&gt; &amp; co"), "{text}");
        assert!(
            text.contains("<https://verdict.example.com/api/v1/runs/checkout/checkout/2.0.1|run>"),
            "{text}"
        );
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header");
        let all = body["blocks"].to_string();
        for needle in [
            "*Contract*\\ncheckout v3",
            "*Subject*\\ncheckout/2.0.1",
            "VALIDATING → ROLLED_BACK",
            "*Samples*\\n48210 over 23 windows",
            "88.1 ms (deciding window 130.2 ms)",
            "0.30 % (deciding window 0.40 %)",
            "error rate too high",
            "Open the run in verdict",
            "event 01JDEVENT",
        ] {
            assert!(all.contains(needle), "{needle:?} not in {all}");
        }
        let fields = blocks[2]["fields"].as_array().expect("fields");
        assert!(fields.len() <= 10);
        let plain = rendered(WebhookFormat::Slack, None);
        assert!(!plain.to_string().contains("Open the run"));
    }

    #[test]
    fn slack_respects_block_limits_for_long_reasons() {
        let mut e = event();
        e["reason"] = Value::String("x".repeat(10_000));
        e["contract"] = Value::String("c".repeat(400));
        let body: Value = serde_json::from_str(
            &render(WebhookFormat::Slack, &e.to_string(), &Links::default()).expect("renders"),
        )
        .expect("JSON");
        let header = body["blocks"][0]["text"]["text"].as_str().expect("header");
        assert!(header.chars().count() <= SLACK_HEADER_CHARS);
        let reason = body["blocks"][1]["text"]["text"].as_str().expect("reason");
        assert!(reason.chars().count() <= SLACK_SECTION_CHARS);
        assert!(reason.ends_with('…'));
        // A subject far too long for any block: every text within Slack's
        // limits, and no cut link.
        let mut e = event();
        e["subject"]["service.version"] = Value::String(format!("big-{}", "é<&>".repeat(3000)));
        let links = links(Some("https://verdict.example.com"));
        let body: Value = serde_json::from_str(
            &render(WebhookFormat::Slack, &e.to_string(), &links).expect("renders"),
        )
        .expect("JSON");
        assert!(body["text"].as_str().expect("text").chars().count() <= SLACK_SECTION_CHARS + 10);
        for block in body["blocks"].as_array().expect("blocks") {
            if let Some(t) = block["text"]["text"].as_str() {
                assert!(t.chars().count() <= SLACK_SECTION_CHARS, "{}", &t[..80]);
            }
        }
        assert!(!body.to_string().contains("Open the run"));
    }

    #[test]
    fn run_urls_escape_what_a_path_cannot_hold() {
        assert_eq!(
            run_url("http://v", "c", "a%2Fb/c d"),
            "http://v/api/v1/runs/c/a%252Fb/c%20d"
        );
    }

    #[test]
    fn a_damaged_event_is_an_error_not_a_panic() {
        for bad in ["", "[1]", "{"] {
            assert!(render(WebhookFormat::Slack, bad, &Links::default()).is_err());
            assert!(render(WebhookFormat::Github, bad, &Links::default()).is_err());
        }
    }
}
