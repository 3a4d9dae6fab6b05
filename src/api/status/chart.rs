//! Inline SVG charts for the status page: drawn on the server, so the page
//! needs no chart library, no build step and no JavaScript to show them.

use std::fmt::Write as _;

use super::html::esc;
use crate::console::fmt::significant as short;

/// One window on a chart.
#[derive(Debug, Clone)]
pub struct Point {
    /// The window's start, as the x label (`10:02`).
    pub label: String,
    /// The figure, absent when the window had none.
    pub value: Option<f64>,
    /// A confidence band around it (lower, upper), when there is one.
    pub band: Option<(f64, f64)>,
    /// `pass`, `fail` or `insufficient`: the marker's colour.
    pub result: String,
}

/// A threshold line: its value and whether it is a ceiling (`max`) or a
/// floor (`min`).
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Where the line is.
    pub value: f64,
    /// A ceiling (values above fail) or a floor (values below fail).
    pub ceiling: bool,
}

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 26.0;

fn colour(result: &str) -> &'static str {
    match result {
        "pass" => "#1a7f37",
        "fail" => "#cf222e",
        _ => "#8c959f",
    }
}

/// A chart of `points` (oldest first) against `limit`, in `unit`, with a
/// title read by screen readers. Empty windows leave gaps in the line.
pub fn line(title: &str, unit: &str, points: &[Point], limit: Option<Limit>) -> String {
    let mut top = points
        .iter()
        .flat_map(|p| [p.value, p.band.map(|b| b.1)])
        .flatten()
        .chain(limit.map(|l| l.value))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    if top <= 0.0 {
        top = 1.0;
    }
    top *= 1.15;
    let n = points.len().max(1);
    let step = (W - LEFT - RIGHT) / n as f64;
    let x = |i: usize| LEFT + step * (i as f64 + 0.5);
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}" preserveAspectRatio="none"><title>{t}</title>"#,
        t = esc(title)
    );
    // Axis and three grid lines with their values.
    for k in 0..=2 {
        let v = top / 1.15 * f64::from(k) / 2.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#d0d7de" stroke-width="1"/><text x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end" fill="#57606a">{v}</text>"##,
            x2 = W - RIGHT,
            y = y(v),
            tx = LEFT - 6.0,
            ty = y(v) + 4.0,
            v = esc(&format!("{}{unit}", short(v))),
        );
    }
    // Confidence bands, as bars behind the line.
    for (i, p) in points.iter().enumerate() {
        if let Some((lo, hi)) = p.band {
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#0969da" opacity="0.15"><title>{}</title></rect>"##,
                x(i) - step * 0.3,
                y(hi),
                step * 0.6,
                (y(lo) - y(hi)).max(1.0),
                esc(&format!(
                    "{}: 95% bounds {}–{}{unit}",
                    p.label,
                    short(lo),
                    short(hi)
                ))
            );
        }
    }
    if let Some(l) = limit {
        let _ = write!(
            svg,
            r##"<line class="limit" x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#cf222e" stroke-dasharray="6 4" stroke-width="1.5"/><text x="{x2}" y="{ty:.1}" font-size="11" text-anchor="end" fill="#cf222e">{what} {v}</text>"##,
            x2 = W - RIGHT,
            y = y(l.value),
            ty = y(l.value) - 4.0,
            what = if l.ceiling { "max" } else { "min" },
            v = esc(&format!("{}{unit}", short(l.value))),
        );
    }
    // The line, broken where a window had no figure.
    let mut segment: Vec<String> = Vec::new();
    let flush = |segment: &mut Vec<String>, svg: &mut String| {
        if segment.len() > 1 {
            let _ = write!(
                svg,
                r##"<polyline fill="none" stroke="#0969da" stroke-width="2" points="{}"/>"##,
                segment.join(" ")
            );
        }
        segment.clear();
    };
    for (i, p) in points.iter().enumerate() {
        match p.value.filter(|v| v.is_finite()) {
            Some(v) => segment.push(format!("{:.1},{:.1}", x(i), y(v))),
            None => flush(&mut segment, &mut svg),
        }
    }
    flush(&mut segment, &mut svg);
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p.value.filter(|v| v.is_finite()) {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}</title></circle>"#,
                x(i),
                y(v),
                colour(&p.result),
                esc(&format!("{}: {}{unit} ({})", p.label, short(v), p.result))
            );
        }
    }
    // First and last window's labels.
    for i in [0, points.len().saturating_sub(1)] {
        if let Some(p) = points.get(i) {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle" fill="#57606a">{}</text>"##,
                x(i),
                H - 8.0,
                esc(&p.label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A check's confidence interval on a 0–100 % scale (or −100…100 for a
/// difference from the baseline): the bounds as a bar, the estimate as a
/// dot and the allowed share as a line.
pub fn bounds(check: &str, lower: f64, upper: f64, estimate: Option<f64>, limit: f64) -> String {
    let (lo_axis, hi_axis) = if lower < 0.0 {
        (-100.0, 100.0)
    } else {
        (0.0, 100.0)
    };
    // Zoom in on what matters: the bounds and the limit, with margin.
    let lo_view = lower.min(limit).min(estimate.unwrap_or(limit));
    let hi_view = upper.max(limit).max(estimate.unwrap_or(limit));
    let margin = ((hi_view - lo_view) * 0.25).max(0.5);
    let (a, b) = (
        (lo_view - margin).max(lo_axis),
        (hi_view + margin).min(hi_axis),
    );
    let (w, h) = (320.0, 28.0);
    let x = |v: f64| 8.0 + (w - 16.0) * ((v - a) / (b - a).max(1e-9)).clamp(0.0, 1.0);
    let mut svg = format!(
        r#"<svg class="bounds" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(&format!(
            "{check}: 95% bounds {}%–{}%, limit {}%",
            short(lower),
            short(upper),
            short(limit)
        ))
    );
    let _ = write!(
        svg,
        r##"<line x1="8" x2="{}" y1="14" y2="14" stroke="#d0d7de"/><rect x="{:.1}" y="8" width="{:.1}" height="12" rx="3" fill="#0969da" opacity="0.35"/><line x1="{:.1}" x2="{:.1}" y1="2" y2="26" stroke="#cf222e" stroke-width="2" stroke-dasharray="3 2"/>"##,
        w - 8.0,
        x(lower),
        (x(upper) - x(lower)).max(2.0),
        x(limit),
        x(limit),
    );
    if let Some(e) = estimate {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="14" r="4" fill="#0969da"/>"##,
            x(e)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, value: Option<f64>, result: &str) -> Point {
        Point {
            label: label.into(),
            value,
            band: None,
            result: result.into(),
        }
    }

    #[test]
    fn a_chart_draws_the_line_the_limit_and_each_window() {
        let points = [
            point("10:00", Some(120.0), "pass"),
            point("10:01", None, "insufficient"),
            point("10:02", Some(80.0), "pass"),
            point("10:03", Some(510.0), "fail"),
        ];
        let svg = line(
            "p95 <latency>",
            " ms",
            &points,
            Some(Limit {
                value: 500.0,
                ceiling: true,
            }),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("p95 &lt;latency&gt;"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
        // The gap splits the line: one segment of two points.
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("max 500 ms") && svg.contains("#cf222e"));
        // Nothing to draw still gives a valid chart.
        assert!(line("empty", "%", &[], None).ends_with("</svg>"));
    }

    #[test]
    fn bounds_show_interval_estimate_and_limit() {
        let svg = bounds("error_rate", 4.9, 7.5, Some(6.1), 2.0);
        assert!(
            svg.contains("error_rate: 95% bounds 4.90%–7.50%, limit 2.00%"),
            "{svg}"
        );
        assert_eq!(svg.matches("<circle").count(), 1);
    }
}
