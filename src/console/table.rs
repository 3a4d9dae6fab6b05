//! Plain-text tables of the API's run JSON, for `verdict runs`. The input
//! is exactly what the API answers (the `verdict.v1.Run` JSON), so the
//! terminal shows the same data as the API, Argo and the status page.

use std::fmt::Write as _;

use serde_json::Value;

use super::fmt::{ago, millis, percent, text, window_span};

/// A table: a header row and rows of cells, printed with columns padded to
/// their widest cell (counted in characters) and two spaces between them.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// True when only the header is there.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The table as text, one line per row; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The runs of a listing (`{"runs": [...]}`) as a table, newest first as
/// the API gives them. `now` is the API's `as_of` or the local time, in
/// RFC 3339.
pub fn runs(list: &Value, now: &str) -> String {
    let mut t = Table::new(&[
        "CONTRACT", "SUBJECT", "STATE", "SAMPLES", "P95", "ERRORS", "CONV", "STARTED", "REASON",
    ]);
    for run in list["runs"].as_array().into_iter().flatten() {
        let figures = &run["run"];
        let mut contract = text(&run["contract"]);
        if let Some(v) = run["contract_version"].as_u64() {
            let _ = write!(contract, " v{v}");
        }
        let mut state = text(&run["state"]);
        if run["superseded"] == Value::Bool(true) {
            state.push_str(" (replaced)");
        }
        if run.get("unreadable").is_some() {
            state.push_str(" (unreadable)");
        }
        t.row(vec![
            contract,
            text(&run["subject"]),
            state,
            text(&figures["samples"]),
            millis(&figures["p95_latency_ms"]),
            percent(&figures["error_rate_percent"]),
            percent(&figures["conversion_rate_percent"]),
            ago(run["started_at"].as_str(), now),
            text(&run["reason"]),
        ]);
    }
    if t.is_empty() {
        return "no runs yet\n".into();
    }
    t.render()
}

/// One run (`GET /api/v1/runs/{contract}/{subject}`): its state and
/// figures, its checks, its windows (newest first) and its transitions.
pub fn run(run: &Value, now: &str) -> String {
    let mut out = String::new();
    let figures = &run["run"];
    let _ = writeln!(
        out,
        "{} {}  (contract version {}, run {})",
        text(&run["contract"]),
        text(&run["subject"]),
        text(&run["contract_version"]),
        text(&run["run_id"]),
    );
    let _ = writeln!(out, "state:    {}", text(&run["state"]));
    let _ = writeln!(out, "reason:   {}", text(&run["reason"]));
    if let Some(why) = run["unreadable"].as_str() {
        let _ = writeln!(out, "stored data unreadable: {}", super::fmt::visible(why));
    }
    let started = run["started_at"].as_str();
    let _ = writeln!(
        out,
        "started:  {} ({})   decided: {}",
        super::fmt::visible(started.unwrap_or("-")),
        ago(started, now),
        text(&run["decided_at"]),
    );
    let _ = writeln!(
        out,
        "samples:  {} in {} window(s)   p95 {}   errors {}   conversions {}",
        text(&figures["samples"]),
        text(&figures["windows"]),
        millis(&figures["p95_latency_ms"]),
        percent(&figures["error_rate_percent"]),
        percent(&figures["conversion_rate_percent"]),
    );
    let mut checks = Table::new(&[
        "CHECK", "STATUS", "ESTIMATE", "LOWER", "UPPER", "LIMIT", "SAMPLES",
    ]);
    for c in run["checks"].as_array().into_iter().flatten() {
        checks.row(vec![
            text(&c["check"]),
            text(&c["status"]),
            percent(&c["estimate_percent"]),
            percent(&c["lower_percent"]),
            percent(&c["upper_percent"]),
            percent(&c["limit_percent"]),
            text(&c["samples"]),
        ]);
    }
    if !checks.is_empty() {
        out.push('\n');
        out.push_str(&checks.render());
    }
    let mut windows = Table::new(&[
        "WINDOW (UTC)",
        "SAMPLES",
        "P95",
        "ERRORS",
        "CONV",
        "RESULT",
        "FAILURES",
    ]);
    for w in run["windows"].as_array().into_iter().flatten() {
        let failures: Vec<String> = w["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        windows.row(vec![
            window_span(w["start"].as_str(), w["end"].as_str()),
            text(&w["samples"]),
            millis(&w["p95_latency_ms"]),
            percent(&w["error_rate_percent"]),
            percent(&w["conversion_rate_percent"]),
            text(&w["result"]),
            failures.join("; "),
        ]);
    }
    if !windows.is_empty() {
        out.push('\n');
        out.push_str(&windows.render());
    }
    let mut transitions = Table::new(&["AT", "STATE", "REASON"]);
    for e in run["transitions"].as_array().into_iter().flatten() {
        transitions.row(vec![
            text(&e["emitted_at"]),
            format!("{} -> {}", text(&e["previous_state"]), text(&e["state"])),
            text(&e["reason"]),
        ]);
    }
    if !transitions.is_empty() {
        out.push('\n');
        out.push_str(&transitions.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_line_up_on_characters_not_bytes() {
        let mut t = Table::new(&["A", "B", "C"]);
        t.row(vec!["é".repeat(3), "x".into(), "last".into()]);
        t.row(vec!["yy".into(), "zzzz".into(), "end".into()]);
        assert_eq!(
            t.render(),
            "A    B     C\nééé  x     last\nyy   zzzz  end\n"
        );
    }

    #[test]
    fn a_listing_shows_state_figures_and_age() {
        let list = json!({"runs": [{
            "contract": "checkout", "contract_version": 2, "subject": "checkout/2.0.1",
            "state": "VALIDATING", "reason": "2 of 3 checks proven passing",
            "started_at": "2026-12-03T10:00:00.000Z", "superseded": false,
            "run": {"samples": 1234, "p95_latency_ms": 212.345, "error_rate_percent": 0.4,
                    "conversion_rate_percent": null}
        }]});
        let text = runs(&list, "2026-12-03T10:05:30.000Z");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for want in [
            "checkout v2",
            "checkout/2.0.1",
            "VALIDATING",
            "1234",
            "212 ms",
            "0.40%",
            "5m30s ago",
            "2 of 3 checks",
        ] {
            assert!(lines[1].contains(want), "{want} in {text}");
        }
        assert_eq!(runs(&json!({"runs": []}), "x"), "no runs yet\n");
    }

    #[test]
    fn one_run_shows_checks_windows_and_transitions() {
        let one = json!({
            "contract": "checkout", "contract_version": 1, "subject": "2.0.1", "run_id": "r1",
            "state": "ROLLED_BACK", "reason": "error rate 6.1% exceeds threshold 2%",
            "started_at": "2026-12-03T10:00:00.000Z", "decided_at": "2026-12-03T10:03:00.000Z",
            "run": {"samples": 900, "windows": 3, "p95_latency_ms": 80.0,
                    "error_rate_percent": 6.1, "conversion_rate_percent": null},
            "checks": [{"check": "error_rate", "status": "failing", "estimate_percent": 6.1,
                        "lower_percent": 4.9, "upper_percent": 7.5, "limit_percent": 2.0,
                        "samples": 900}],
            "windows": [{"start": "2026-12-03T10:02:00Z", "end": "2026-12-03T10:03:00Z",
                         "samples": 300, "p95_latency_ms": 81.0, "error_rate_percent": 7.0,
                         "result": "fail", "failures": ["error rate 7% > 2%"]}],
            "transitions": [{"emitted_at": "2026-12-03T10:03:00.100Z",
                             "previous_state": "VALIDATING", "state": "ROLLED_BACK",
                             "reason": "error rate 6.1% exceeds threshold 2%"}]
        });
        let text = run(&one, "2026-12-03T10:04:00.000Z");
        for want in [
            "state:    ROLLED_BACK",
            "error_rate  failing  6.10%     4.90%  7.50%  2.00%  900",
            "10:02:00-10:03:00",
            "error rate 7% > 2%",
            "VALIDATING -> ROLLED_BACK",
            "(4m ago)",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
