//! `verdict runs [CONTRACT [SUBJECT]]`: what the API says about runs, as a
//! table in the terminal, as the API's JSON for scripts (`--json`), or
//! followed live (`--watch`) through a rollout.
//!
//! It reads the same endpoints as everyone else (`GET /api/v1/runs…`), so
//! the terminal can never disagree with what Argo Rollouts or a webhook saw.
//! Exit codes: 0 when the data was shown; with `--watch` on one run, 0 once
//! it is PROMOTED and 1 once it is ROLLED_BACK; 2 when the API could not be
//! read (a connection failure during `--watch` is shown and retried).

pub mod fmt;
pub mod table;

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

/// Runs listed by `verdict runs` without a contract.
const LISTED: usize = 200;

/// What to show.
#[derive(Debug, Clone)]
pub struct RunsQuery {
    /// The API's base URL (`http://127.0.0.1:8686`).
    pub api: String,
    /// For an `https://` API: CA certificates trusted besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// One contract's current runs.
    pub contract: Option<String>,
    /// One run of `contract` (values joined with `/`).
    pub subject: Option<String>,
    /// The API's JSON instead of a table.
    pub json: bool,
    /// Refresh every `interval` until stopped (or the run is decided).
    pub watch: bool,
    /// How often `--watch` refreshes.
    pub interval: Duration,
    /// Include runs that were replaced (reset, or an earlier contract
    /// version) in the listing of every run.
    pub all: bool,
}

/// Why the API could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No answer (refused, timed out, not HTTP).
    #[error("cannot reach the verdict API at {url}: {cause}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// The root cause.
        cause: String,
    },
    /// The API's certificate is refused (unknown issuer, expired, not
    /// valid yet, not for this host), or the TLS handshake failed: told as
    /// such, since waiting will not change it.
    #[error("cannot reach the verdict API at {url}: {problem}")]
    Certificate {
        /// What was asked.
        url: String,
        /// The certificate's problem.
        problem: crate::tls::TlsFailure,
    },
    /// An answer that is not the data (404 unknown contract, 400 bad
    /// subject, 503 storage).
    #[error("{url} answered {status}: {message}")]
    Refused {
        /// What was asked.
        url: String,
        /// HTTP status.
        status: u16,
        /// The API's `error`, or the body.
        message: String,
    },
    /// The command line cannot be served.
    #[error("{0}")]
    Usage(String),
}

impl ConsoleError {
    /// Worth asking again while watching (the server may be restarting).
    fn transient(&self) -> bool {
        match self {
            ConsoleError::Unreachable { .. } => true,
            ConsoleError::Refused { status, .. } => *status >= 500,
            ConsoleError::Certificate { .. } | ConsoleError::Usage(_) => false,
        }
    }
}

/// How `verdict runs` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The data was shown.
    Shown,
    /// `--watch` on one run saw it decided PROMOTED.
    Promoted,
    /// `--watch` on one run saw it decided ROLLED_BACK.
    RolledBack,
}

/// A subject (or contract) as a URL path: the `/` between values kept,
/// everything that cannot stand in a path percent-encoded, `%` included —
/// the API decodes the path once, so the key `a%2Fb/c` (values `a/b` and
/// `c`) travels as `a%252Fb/c`.
pub fn path_part(s: &str) -> String {
    // `.` and `..` segments would be resolved away by browsers and
    // clients: written %2E.
    if s.split('/').any(|seg| seg == "." || seg == "..") {
        return s
            .split('/')
            .map(|seg| match seg {
                "." | ".." => seg.replace('.', "%2E"),
                other => path_part(other),
            })
            .collect::<Vec<_>>()
            .join("/");
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RunsQuery {
    /// The endpoint this query reads. The contract and subject may be
    /// written as the tables show them, control characters escaped
    /// (`checkout/2.0\u{7}`): they are read back first ([`fmt::typed`]).
    pub fn url(&self) -> Result<String, ConsoleError> {
        let base = self.api.trim_end_matches('/');
        let contract = self
            .contract
            .as_deref()
            .map(|c| path_part(&fmt::typed(c)).replace('/', "%2F"));
        Ok(match (contract, &self.subject) {
            (None, None) => format!("{base}/api/v1/runs?limit={LISTED}"),
            (Some(c), None) => format!("{base}/api/v1/runs/{c}"),
            (Some(c), Some(s)) => {
                format!(
                    "{base}/api/v1/runs/{c}/{}",
                    path_part(fmt::typed(s).trim_start_matches('/'))
                )
            }
            (None, Some(_)) => {
                return Err(ConsoleError::Usage(
                    "a subject needs its contract: verdict runs CONTRACT SUBJECT".into(),
                ))
            }
        })
    }
}

/// Reads the query's endpoint once.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Value, ConsoleError> {
    let unreachable = |e: reqwest::Error| match crate::tls::failure_in(&e) {
        Some(problem) => ConsoleError::Certificate {
            url: url.to_string(),
            problem,
        },
        None => ConsoleError::Unreachable {
            url: url.to_string(),
            cause: crate::retry::error_chain(&e),
        },
    };
    let resp = client.get(url).send().await.map_err(unreachable)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(unreachable)?;
    let json = serde_json::from_slice::<Value>(&body);
    if status != 200 {
        let message = match &json {
            Ok(v) => v["error"]
                .as_str()
                .map_or_else(|| v.to_string(), str::to_string),
            Err(_) => String::from_utf8_lossy(&body).chars().take(300).collect(),
        };
        return Err(ConsoleError::Refused {
            url: url.to_string(),
            status,
            message,
        });
    }
    json.map_err(|e| ConsoleError::Refused {
        url: url.to_string(),
        status,
        message: format!("not JSON: {e}"),
    })
}

/// The current time as the API writes it.
fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The answer as the user asked for it.
fn render(q: &RunsQuery, mut data: Value) -> String {
    let cut = q.contract.is_none() && data["runs"].as_array().is_some_and(|r| r.len() >= LISTED);
    if q.contract.is_none() && !q.all {
        if let Some(runs) = data["runs"].as_array_mut() {
            runs.retain(|r| r["superseded"] != Value::Bool(true));
        }
    }
    if q.json {
        return format!("{data}\n");
    }
    let now = now();
    if q.subject.is_some() {
        table::run(&data, &now)
    } else if cut {
        format!(
            "{}Only the {LISTED} runs started last are listed: `verdict runs CONTRACT` lists every current run of a contract.\n",
            table::runs(&data, &now)
        )
    } else {
        table::runs(&data, &now)
    }
}

/// The decision a one-run answer holds, if final.
fn decided(q: &RunsQuery, data: &Value) -> Option<Outcome> {
    q.subject.as_ref()?;
    match data["state"].as_str() {
        Some("PROMOTED") => Some(Outcome::Promoted),
        Some("ROLLED_BACK") => Some(Outcome::RolledBack),
        _ => None,
    }
}

/// Shows the runs once, or follows them with `--watch`. `terminal` clears
/// the screen between refreshes (otherwise each refresh is appended).
pub async fn execute(
    q: &RunsQuery,
    out: &mut impl Write,
    terminal: bool,
) -> Result<Outcome, ConsoleError> {
    let url = q.url()?;
    crate::tls::ensure_provider();
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("https:"))
    {
        let tls = crate::tls::trusting(q.ca_file.as_deref()).map_err(ConsoleError::Usage)?;
        builder = builder.tls_backend_preconfigured(tls);
    }
    let client = builder
        .build()
        .map_err(|e| ConsoleError::Usage(format!("cannot build an HTTP client: {e}")))?;
    // A closed pipe (`| head`) ends the command quietly, and `--watch`
    // with it: no one reads the next refresh.
    let write = |out: &mut dyn Write, text: &str| {
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_ok()
    };
    if !q.watch {
        let data = fetch(&client, &url).await?;
        write(out, &render(q, data));
        return Ok(Outcome::Shown);
    }
    loop {
        let shown = fetch(&client, &url).await;
        let mut text = String::new();
        if terminal && !q.json {
            text.push_str("\x1b[H\x1b[2J");
        }
        let outcome = match shown {
            Ok(data) => {
                let outcome = decided(q, &data);
                text.push_str(&render(q, data));
                outcome
            }
            Err(err) if err.transient() => {
                text.push_str(&format!("{err}; retrying\n"));
                None
            }
            Err(err) => return Err(err),
        };
        if !q.json {
            text.push_str(&format!(
                "\nas of {}; every {} (Ctrl-C to stop)\n",
                now(),
                humantime::format_duration(q.interval)
            ));
        }
        if !write(out, &text) {
            return Ok(outcome.unwrap_or(Outcome::Shown));
        }
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
        tokio::time::sleep(q.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(contract: Option<&str>, subject: Option<&str>) -> RunsQuery {
        RunsQuery {
            api: "http://127.0.0.1:8686/".into(),
            ca_file: None,
            contract: contract.map(str::to_string),
            subject: subject.map(str::to_string),
            json: false,
            watch: false,
            interval: Duration::from_secs(2),
            all: false,
        }
    }

    /// A listing cut at its limit says so (not in `--json`, which scripts
    /// read); a shorter one does not.
    #[test]
    fn a_cut_listing_says_so() {
        let run = serde_json::json!({"contract": "c", "subject": "s", "state": "VALIDATING"});
        let full = serde_json::json!({"runs": vec![run.clone(); LISTED]});
        let short = serde_json::json!({"runs": vec![run; 3]});
        assert!(render(&query(None, None), full.clone()).contains("Only the 200 runs"));
        assert!(!render(&query(None, None), short).contains("Only the"));
        let mut json = query(None, None);
        json.json = true;
        assert!(!render(&json, full).contains("Only the"));
    }

    #[test]
    fn urls_keep_the_subject_encoding() {
        assert_eq!(
            query(None, None).url().expect("url"),
            "http://127.0.0.1:8686/api/v1/runs?limit=200"
        );
        assert_eq!(
            query(Some("checkout"), None).url().expect("url"),
            "http://127.0.0.1:8686/api/v1/runs/checkout"
        );
        assert_eq!(
            query(Some("checkout"), Some("a%2Fb/2.0 rc?1"))
                .url()
                .expect("url"),
            "http://127.0.0.1:8686/api/v1/runs/checkout/a%252Fb/2.0%20rc%3F1"
        );
        assert_eq!(
            query(Some("c"), Some("../v..")).url().expect("url"),
            "http://127.0.0.1:8686/api/v1/runs/c/%2E%2E/v.."
        );
        // As the tables show a subject with control characters.
        assert_eq!(
            query(Some("c"), Some("svc/2.0\\u{7}\\r"))
                .url()
                .expect("url"),
            "http://127.0.0.1:8686/api/v1/runs/c/svc/2.0%07%0D"
        );
        assert!(matches!(
            query(None, Some("x")).url(),
            Err(ConsoleError::Usage(_))
        ));
    }
}
