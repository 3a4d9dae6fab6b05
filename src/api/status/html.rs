//! The status page's HTML: one layout (styles inline, a small script for
//! live refresh), the overview of runs by contract and one page per run.
//! Everything is rendered from the API's own run JSON, so the page shows
//! exactly what the API answers; it links to reads only, never to the
//! write endpoints.

use std::fmt::Write as _;

use serde_json::Value;

use super::chart::{self, Limit, Point};
use crate::config::{ContractSpec, Decision};
use crate::console::fmt::{ago, millis, percent, text, visible, window_span};
use crate::console::path_part;

/// `s` with the five HTML special characters escaped: safe in text and in
/// quoted attributes. Every value from data goes through here.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root{color-scheme:light;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;background:#f6f8fa}
body{margin:0}header{background:#24292f;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:baseline;flex-wrap:wrap}
header a{color:#fff;text-decoration:none;font-weight:600}header small{color:#d0d7de}
main{padding:1rem;max-width:1100px;margin:0 auto}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.8rem 1rem;margin-bottom:1rem}
h1{font-size:1.3rem;margin:.2rem 0 .6rem;word-break:break-all}h2{font-size:1.1rem;margin:.2rem 0 .5rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eaeef2;vertical-align:top}
th{color:#57606a;font-weight:600;white-space:nowrap}td.num{text-align:right;white-space:nowrap}
.state{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600;white-space:nowrap}
.PROMOTED{background:#dafbe1;color:#1a7f37}.ROLLED_BACK{background:#ffebe9;color:#cf222e}
.VALIDATING{background:#ddf4ff;color:#0969da}.PENDING{background:#eaeef2;color:#57606a}
.pass{color:#1a7f37}.fail{color:#cf222e}.insufficient{color:#57606a}
.passing{color:#1a7f37}.failing{color:#cf222e}.open{color:#57606a}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.5rem}
.figures div{background:#f6f8fa;border-radius:6px;padding:.4rem .6rem}.figures b{display:block;font-size:1.1rem}
.muted{color:#57606a}.banner{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem 1rem;margin-bottom:1rem}
.chart{width:100%;height:auto;max-height:220px}.bounds{width:100%;max-width:320px;height:28px}
ol.timeline{padding-left:1.2rem}ol.timeline li{margin:.3rem 0}
"#;

/// Refreshes `<main>` from the same URL every 5 s while the tab is
/// visible. Without it the page is complete; a reload shows the same.
pub const SCRIPT: &str = r#"
(function(){
  var stamp=document.getElementById('live');
  document.documentElement.setAttribute('data-live','on');
  stamp.textContent='live';
  function refresh(){
    if(document.hidden)return;
    fetch(location.href,{cache:'no-store',headers:{'Accept':'text/html'}}).then(function(r){
      if(!r.ok)throw new Error('HTTP '+r.status);return r.text();
    }).then(function(t){
      var next=new DOMParser().parseFromString(t,'text/html').querySelector('main');
      var main=document.querySelector('main');
      if(next&&main){main.replaceWith(next);}
      stamp.textContent='live · '+new Date().toLocaleTimeString();
    }).catch(function(e){stamp.textContent='live · update failed ('+e.message+')';});
  }
  setInterval(refresh,5000);
})();
"#;

/// A whole page around `body`.
pub fn layout(title: &str, as_of: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{t} · verdict</title><style>{STYLE}</style></head>
<body><header><a href="/">verdict</a><small>as of {as_of}</small><small id="live">reload for fresh data</small>
<small><a href="/api/v1/runs">JSON</a></small></header>
<main>{body}</main>
<script>{SCRIPT}</script></body></html>"#,
        t = esc(title),
        as_of = esc(as_of),
    )
}

/// A state as a coloured badge.
pub fn badge(state: &str) -> String {
    let class = match state {
        "PROMOTED" | "ROLLED_BACK" | "VALIDATING" | "PENDING" => state,
        _ => "PENDING",
    };
    format!(r#"<span class="state {class}">{}</span>"#, esc(state))
}

/// The link to a run's page.
pub fn run_href(contract: &str, subject: &str) -> String {
    format!(
        "/runs/{}/{}",
        path_part(contract).replace('/', "%2F"),
        path_part(subject)
    )
}

/// The contract's thresholds and decision, in one line.
pub fn contract_summary(spec: &ContractSpec) -> String {
    let mut parts = spec.thresholds.describe("≤", "≥", " ms");
    parts.push(format!("min {} samples", spec.min_samples));
    parts.push(match spec.decision {
        Decision::Sequential => format!("sequential, alpha {}", spec.alpha),
        Decision::Windows => format!(
            "windows: {} passing promote, {} failing roll back",
            spec.pass_windows, spec.fail_windows
        ),
    });
    if spec.baseline.is_some() {
        parts.push("compared with the baseline".into());
    }
    if spec.dry_run {
        parts.push("dry run".into());
    }
    esc(&parts.join(" · "))
}

/// The overview: per contract, the runs shown and how many more it has
/// (named, with a link to the API's list of them all).
pub fn overview(
    contracts: &[(&ContractSpec, Vec<Value>, usize)],
    now: &str,
    banner: Option<&str>,
) -> String {
    let mut body = String::new();
    if let Some(b) = banner {
        let _ = write!(body, r#"<div class="banner">{}</div>"#, esc(b));
    }
    if contracts.is_empty() {
        body.push_str("<section><p>No contract is configured.</p></section>");
    }
    for (spec, runs, more) in contracts {
        let _ = write!(
            body,
            r#"<section><h2>{} <span class="muted">v{}</span></h2><p class="muted">{}</p>"#,
            esc(&spec.name),
            spec.version,
            contract_summary(spec)
        );
        if runs.is_empty() {
            body.push_str(r#"<p class="muted">No run yet: no release has sent data for this contract.</p></section>"#);
            continue;
        }
        body.push_str(r#"<div class="scroll"><table><thead><tr><th>Subject</th><th>State</th><th>Samples</th><th>p95</th><th>Errors</th><th>Conversions</th><th>Started</th><th>Reason</th></tr></thead><tbody>"#);
        for run in runs {
            let f = &run["run"];
            let subject = text(&run["subject"]);
            // The link is built from the subject itself: its display
            // spelling writes control characters as escapes (`\n`), which
            // is another subject.
            let raw = run["subject"].as_str().unwrap_or_default();
            let _ = write!(
                body,
                r#"<tr><td><a href="{href}">{s}</a></td><td>{badge}</td><td class="num">{n}</td><td class="num">{p95}</td><td class="num">{err}</td><td class="num">{conv}</td><td class="num">{age}</td><td>{reason}</td></tr>"#,
                href = esc(&run_href(&spec.name, raw)),
                s = esc(&subject),
                badge = badge(&text(&run["state"])),
                n = esc(&text(&f["samples"])),
                p95 = esc(&millis(&f["p95_latency_ms"])),
                err = esc(&percent(&f["error_rate_percent"])),
                conv = esc(&percent(&f["conversion_rate_percent"])),
                age = esc(&ago(run["started_at"].as_str(), now)),
                reason = esc(&text(&run["reason"])),
            );
        }
        body.push_str("</tbody></table></div>");
        if *more > 0 {
            let _ = write!(
                body,
                r#"<p class="muted">{more} more runs, not shown: all of them at <a href="{href}">{href}</a></p>"#,
                href = esc(&format!(
                    "/api/v1/runs/{}",
                    path_part(&spec.name).replace('/', "%2F")
                )),
            );
        }
        body.push_str("</section>");
    }
    body
}

/// The windows of a run as chart points, oldest first.
fn points(windows: &[Value], figure: &str, check: Option<&str>) -> Vec<Point> {
    windows
        .iter()
        .rev()
        .map(|w| {
            let value = w[figure].as_f64();
            let band = match check {
                Some(name) => w["checks"].as_array().and_then(|cs| {
                    cs.iter().find(|c| c["check"] == name).and_then(|c| {
                        Some((c["lower_percent"].as_f64()?, c["upper_percent"].as_f64()?))
                    })
                }),
                // Latency: the figure's own error (the sketch's accuracy).
                None => value
                    .zip(w["p95_latency_error_ms"].as_f64())
                    .map(|(v, e)| (v - e, v + e)),
            };
            let start = w["start"].as_str().unwrap_or("");
            let label = start
                .split_once('T')
                .map_or(start, |(_, t)| t)
                .trim_end_matches('Z')
                .to_string();
            Point {
                label,
                value,
                band,
                result: text(&w["result"]),
            }
        })
        .collect()
}

/// One run's page: state, figures, checks with their bounds, charts of its
/// windows against the thresholds, the windows, its transitions and the
/// deliveries of its events still pending.
pub fn run_page(spec: &ContractSpec, run: &Value, pending: &[Value], now: &str) -> String {
    let f = &run["run"];
    let subject = text(&run["subject"]);
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<section><p class="muted"><a href="/">runs</a> / {contract} v{version} · run {id}</p><h1>{subject} {badge}</h1><p>{reason}</p>"#,
        contract = esc(&spec.name),
        version = esc(&text(&run["contract_version"])),
        id = esc(&text(&run["run_id"])),
        subject = esc(&subject),
        badge = badge(&text(&run["state"])),
        reason = esc(&text(&run["reason"])),
    );
    if let Some(why) = run["unreadable"].as_str() {
        let _ = write!(
            body,
            r#"<p class="banner">Stored data unreadable: {}</p>"#,
            esc(&visible(why))
        );
    }
    let _ = write!(
        body,
        r#"<div class="figures"><div>samples<b>{}</b></div><div>windows<b>{}</b></div><div>p95<b>{}</b></div><div>errors<b>{}</b></div><div>conversions<b>{}</b></div><div>started<b>{}</b></div><div>decided<b>{}</b></div></div><p class="muted">{}</p></section>"#,
        esc(&text(&f["samples"])),
        esc(&text(&f["windows"])),
        esc(&millis(&f["p95_latency_ms"])),
        esc(&percent(&f["error_rate_percent"])),
        esc(&percent(&f["conversion_rate_percent"])),
        esc(&ago(run["started_at"].as_str(), now)),
        esc(&run["decided_at"]
            .as_str()
            .map_or("-".into(), |d| ago(Some(d), now))),
        contract_summary(spec),
    );
    if let Some(checks) = run["checks"].as_array().filter(|c| !c.is_empty()) {
        body.push_str(r#"<section><h2>Checks</h2><div class="scroll"><table><thead><tr><th>Check</th><th>Status</th><th>Estimate</th><th>95% bounds</th><th>Allowed</th><th>Samples</th><th></th></tr></thead><tbody>"#);
        for c in checks {
            let name = text(&c["check"]);
            let status = text(&c["status"]);
            let (lo, hi, limit) = (
                c["lower_percent"].as_f64().unwrap_or(0.0),
                c["upper_percent"].as_f64().unwrap_or(100.0),
                c["limit_percent"].as_f64().unwrap_or(0.0),
            );
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td class="{s}">{s}</td><td class="num">{}</td><td class="num">{}–{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                esc(&name),
                esc(&percent(&c["estimate_percent"])),
                esc(&percent(&c["lower_percent"])),
                esc(&percent(&c["upper_percent"])),
                esc(&percent(&c["limit_percent"])),
                esc(&text(&c["samples"])),
                chart::bounds(&name, lo, hi, c["estimate_percent"].as_f64(), limit),
                s = esc(&status),
            );
        }
        body.push_str("</tbody></table></div><p class=\"muted\">A check is proven when its 95% bounds lie wholly on one side of what is allowed (red line).</p></section>");
    }
    let windows: Vec<Value> = run["windows"].as_array().cloned().unwrap_or_default();
    if !windows.is_empty() {
        let t = &spec.thresholds;
        let charts = [
            (
                "p95 latency per window",
                "p95_latency_ms",
                " ms",
                None,
                t.max_p95_latency_ms.map(|v| Limit {
                    value: v,
                    ceiling: true,
                }),
            ),
            (
                "error rate per window",
                "error_rate_percent",
                "%",
                Some("error_rate"),
                t.max_error_rate_percent.map(|v| Limit {
                    value: v,
                    ceiling: true,
                }),
            ),
            (
                "conversion rate per window",
                "conversion_rate_percent",
                "%",
                Some("conversion_rate"),
                t.min_conversion_rate_percent.map(|v| Limit {
                    value: v,
                    ceiling: false,
                }),
            ),
        ];
        body.push_str("<section><h2>Windows</h2>");
        for (title, figure, unit, check, limit) in charts {
            let pts = points(&windows, figure, check);
            // Conversions only where the contract checks them (spans of
            // other services carry none); the others whenever there is
            // something to draw.
            let conversions = figure == "conversion_rate_percent";
            if (conversions && limit.is_none())
                || (limit.is_none() && pts.iter().all(|p| p.value.is_none()))
            {
                continue;
            }
            let _ = write!(
                body,
                r#"<h3>{}</h3>{}"#,
                esc(title),
                chart::line(title, unit, &pts, limit)
            );
        }
        body.push_str(r#"<div class="scroll"><table><thead><tr><th>Window (UTC)</th><th>Samples</th><th>p95</th><th>Errors</th><th>Conversions</th><th>Result</th><th>Failures</th></tr></thead><tbody>"#);
        for w in &windows {
            let failures: Vec<String> = w["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let result = text(&w["result"]);
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="{r}">{r}</td><td>{}</td></tr>"#,
                esc(&window_span(w["start"].as_str(), w["end"].as_str())),
                esc(&text(&w["samples"])),
                esc(&millis(&w["p95_latency_ms"])),
                esc(&percent(&w["error_rate_percent"])),
                esc(&percent(&w["conversion_rate_percent"])),
                esc(&failures.join("; ")),
                r = esc(&result),
            );
        }
        body.push_str("</tbody></table></div></section>");
    }
    let transitions: Vec<Value> = run["transitions"].as_array().cloned().unwrap_or_default();
    if !transitions.is_empty() {
        body.push_str(r#"<section><h2>Transitions</h2><ol class="timeline">"#);
        for e in transitions.iter().rev() {
            let _ = write!(
                body,
                r#"<li><span class="muted">{}</span> {} → {} — {}</li>"#,
                esc(&text(&e["emitted_at"])),
                badge(&text(&e["previous_state"])),
                badge(&text(&e["state"])),
                esc(&text(&e["reason"])),
            );
        }
        body.push_str("</ol></section>");
    }
    if !pending.is_empty() {
        body.push_str(r#"<section><h2>Deliveries not done</h2><div class="scroll"><table><thead><tr><th>Exporter</th><th>Event</th><th>State</th><th>Attempts</th><th>Next attempt</th><th>Last error</th></tr></thead><tbody>"#);
        for d in pending {
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&text(&d["exporter"])),
                esc(&format!(
                    "{} ({})",
                    text(&d["event"]["state"]),
                    text(&d["event_id"])
                )),
                esc(&text(&d["state"])),
                esc(&text(&d["attempts"])),
                esc(&text(&d["next_attempt_at"])),
                esc(&text(&d["last_error"])),
            );
        }
        body.push_str("</tbody></table></div></section>");
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A contract `name` with a p95 threshold of 100 ms.
    fn spec(name: &str) -> ContractSpec {
        ContractSpec::with_thresholds(
            name,
            crate::config::Thresholds {
                max_p95_latency_ms: Some(100.0),
                ..Default::default()
            },
        )
    }

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn hostile_values_never_become_markup() {
        let spec = spec("c<b>");
        let run = serde_json::json!({
            "subject": "<img src=x onerror=alert(1)>", "state": "<b>", "reason": "\"><script>",
            "run": {"samples": 1}, "started_at": null,
        });
        let page = overview(
            &[(&spec, vec![run.clone()], 0)],
            "2026-12-03T10:00:00Z",
            Some("<i>"),
        );
        assert!(!page.contains("<img") && !page.contains("<script") && !page.contains("<b>"));
        assert!(!page.contains("<i>"));
        let one = run_page(&spec, &run, &[], "2026-12-03T10:00:00Z");
        assert!(!one.contains("<img") && !one.contains("<script"), "{one}");
        assert!(one.contains("&lt;img src=x onerror=alert(1)&gt;"));
    }

    /// A subject with control characters links to its own run: the link
    /// is percent-encoded from the raw subject, not from the escaped text
    /// the page shows.
    #[test]
    fn links_are_built_from_the_raw_subject() {
        let spec = spec("default");
        let run = serde_json::json!({
            "subject": "svc/v1\nverdict_fake 1\u{0}", "state": "PENDING", "reason": "",
            "run": {"samples": 1}, "started_at": null,
        });
        let page = overview(&[(&spec, vec![run], 0)], "2026-12-03T10:00:00Z", None);
        assert!(
            page.contains(r#"href="/runs/default/svc/v1%0Averdict_fake%201%00""#),
            "{page}"
        );
        assert!(page.contains(r"svc/v1\nverdict_fake 1"), "{page}");
    }

    /// A subject with bidi controls or invisible characters is shown with
    /// them escaped: `\u{202e}0.1.2` cannot pass for release `2.1.0`.
    #[test]
    fn bidi_and_invisible_characters_are_shown_escaped() {
        let spec = spec("default");
        let run = serde_json::json!({
            "subject": "checkout/\u{202e}0.1.2\u{200b}\u{2066}", "state": "VALIDATING",
            "reason": "r\u{202e}", "run": {"samples": 1}, "started_at": null,
        });
        let page = overview(
            &[(&spec, vec![run.clone()], 0)],
            "2026-12-03T10:00:00Z",
            None,
        );
        let one = run_page(&spec, &run, &[], "2026-12-03T10:00:00Z");
        for html in [&page, &one] {
            assert!(
                html.contains(r"checkout/\u{202e}0.1.2\u{200b}\u{2066}"),
                "{html}"
            );
            assert!(!html.contains('\u{202e}') && !html.contains('\u{200b}'));
        }
    }
}
