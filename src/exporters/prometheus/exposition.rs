//! The metric families `/metrics` serves and the two formats it writes
//! them in: the Prometheus text format 0.0.4 and OpenMetrics 1.0.0
//! (which Prometheus asks for first). The families are the same; the
//! formats differ in how a counter or an info family is named (OpenMetrics
//! names the family without its `_total`/`_info` suffix, its samples
//! keep it), in `# UNIT`, in escaping and in the closing `# EOF`.
//!
//! verdict's own counters and gauges live in the `metrics` recorder, which
//! renders only the text format; [`parse_recorder`] reads that text back
//! into families, so that both formats are written by one writer here.

use std::fmt::Write as _;

/// The type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// Any value.
    Gauge,
    /// Labels describing something, value 1; the name ends in `_info`
    /// (a gauge in the text format).
    Info,
}

/// One sample: the labels as written between braces (already escaped;
/// empty for none) and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    labels: String,
    value: f64,
}

/// A metric family: name (as its samples are named), type, help and
/// samples. A family without samples is not written.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    name: String,
    kind: Type,
    help: String,
    samples: Vec<Sample>,
}

impl Family {
    /// An empty family.
    pub fn new(name: &str, kind: Type, help: &str) -> Family {
        Family {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            samples: Vec::new(),
        }
    }

    /// A gauge.
    pub fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, Type::Gauge, help)
    }

    /// The name its samples have.
    #[cfg(test)]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a sample with `labels` (values are escaped here).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut text = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            let sep = if i == 0 { "{" } else { "," };
            let _ = write!(text, "{sep}{k}=\"{}\"", escape_label(v));
        }
        if !text.is_empty() {
            text.push('}');
        }
        self.samples.push(Sample {
            labels: text,
            value,
        });
    }

    /// The name of the family in OpenMetrics: without the suffix its
    /// samples carry.
    fn openmetrics_name(&self) -> &str {
        let suffix = match self.kind {
            Type::Counter => "_total",
            Type::Info => "_info",
            Type::Gauge => "",
        };
        self.name.strip_suffix(suffix).unwrap_or(&self.name)
    }

    /// The OpenMetrics unit, when the name ends in one of the base units
    /// verdict uses (OpenMetrics requires the unit to be the name's suffix).
    fn unit(&self) -> Option<&'static str> {
        let name = self.openmetrics_name();
        ["seconds", "bytes", "ratio"]
            .into_iter()
            .find(|u| name.strip_suffix(u).is_some_and(|n| n.ends_with('_')))
    }
}

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics 1.0.0 when it
    /// is accepted with a higher weight than the text format (as
    /// Prometheus asks by default), the text format otherwise (no header,
    /// `*/*`, a browser, or only an OpenMetrics version other than 1.0.0).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.unwrap_or("").split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let (mut q, mut version) = (1.0_f64, None);
            for param in params {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.parse().unwrap_or(0.0),
                    "version" => version = Some(value.to_string()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if version.as_deref().is_none_or(|v| v == "1.0.0") =>
                {
                    openmetrics = openmetrics.max(q);
                }
                "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => {
                    text = text.max(q);
                }
                "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics > text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Writes `families` in `format`.
pub fn render(families: &[Family], format: Format) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        match format {
            Format::Text => {
                let kind = match f.kind {
                    Type::Counter => "counter",
                    Type::Gauge | Type::Info => "gauge",
                };
                let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help, false));
                let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            }
            Format::OpenMetrics => {
                let name = f.openmetrics_name();
                let kind = match f.kind {
                    Type::Counter => "counter",
                    Type::Gauge => "gauge",
                    Type::Info => "info",
                };
                let _ = writeln!(out, "# TYPE {name} {kind}");
                if let Some(unit) = f.unit() {
                    let _ = writeln!(out, "# UNIT {name} {unit}");
                }
                let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help, true));
            }
        }
        for s in &f.samples {
            let _ = writeln!(out, "{}{} {}", f.name, s.labels, value(s.value));
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A value as both formats write it (`+Inf`, `-Inf`, `NaN`; Rust writes
/// `inf`).
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// Escapes a label value (the same in both formats).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes a help text: the text format escapes backslashes and line
/// feeds only, OpenMetrics double quotes too.
fn escape_help(v: &str, quotes: bool) -> String {
    let v = v.replace('\\', "\\\\").replace('\n', "\\n");
    if quotes {
        v.replace('"', "\\\"")
    } else {
        v
    }
}

/// Reads the text format as the `metrics` recorder writes it (`# HELP`,
/// `# TYPE counter|gauge`, one sample per line, no timestamps) into
/// families, sorted by name and labels so that every scrape lists them in
/// the same order. A line it cannot read is left out (the recorder never
/// writes one).
pub fn parse_recorder(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    fn family<'a>(families: &'a mut Vec<Family>, name: &str) -> &'a mut Family {
        let at = match families.iter().position(|f| f.name == name) {
            Some(at) => at,
            None => {
                families.push(Family::new(name, Type::Gauge, ""));
                families.len() - 1
            }
        };
        &mut families[at]
    }
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            family(&mut families, name).help = unescape_help(help);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            family(&mut families, name).kind = match kind {
                "counter" => Type::Counter,
                _ => Type::Gauge,
            };
        } else if line.starts_with('#') {
            continue;
        } else if let Some((series, v)) = line.rsplit_once(' ') {
            let Ok(value) = v.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.find('{') {
                Some(at) => series.split_at(at),
                None => (series, ""),
            };
            family(&mut families, name).samples.push(Sample {
                labels: labels.to_string(),
                value,
            });
        }
    }
    for f in &mut families {
        f.samples.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    families.sort_by(|a, b| a.name.cmp(&b.name));
    families
}

fn unescape_help(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        let mut late = Family::new("verdict_late_samples_total", Type::Counter, "Late samples.");
        late.sample(&[], 3.0);
        let mut latency = Family::gauge("verdict_window_latency_seconds", "Latency \"p\" a\\b.");
        latency.sample(&[("subject", "a\"b\\c\nd")], 0.25);
        latency.sample(&[("subject", "x")], f64::INFINITY);
        let mut info = Family::new("verdict_build_info", Type::Info, "Build.");
        info.sample(&[("version", "1.0")], 1.0);
        let empty = Family::gauge("verdict_nothing", "Never written.");
        vec![late, latency, info, empty]
    }

    #[test]
    fn the_text_format_names_families_as_their_samples() {
        assert_eq!(
            render(&families(), Format::Text),
            "# HELP verdict_late_samples_total Late samples.\n\
             # TYPE verdict_late_samples_total counter\n\
             verdict_late_samples_total 3\n\
             # HELP verdict_window_latency_seconds Latency \"p\" a\\\\b.\n\
             # TYPE verdict_window_latency_seconds gauge\n\
             verdict_window_latency_seconds{subject=\"a\\\"b\\\\c\\nd\"} 0.25\n\
             verdict_window_latency_seconds{subject=\"x\"} +Inf\n\
             # HELP verdict_build_info Build.\n\
             # TYPE verdict_build_info gauge\n\
             verdict_build_info{version=\"1.0\"} 1\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_and_info_families_without_their_suffix() {
        assert_eq!(
            render(&families(), Format::OpenMetrics),
            "# TYPE verdict_late_samples counter\n\
             # HELP verdict_late_samples Late samples.\n\
             verdict_late_samples_total 3\n\
             # TYPE verdict_window_latency_seconds gauge\n\
             # UNIT verdict_window_latency_seconds seconds\n\
             # HELP verdict_window_latency_seconds Latency \\\"p\\\" a\\\\b.\n\
             verdict_window_latency_seconds{subject=\"a\\\"b\\\\c\\nd\"} 0.25\n\
             verdict_window_latency_seconds{subject=\"x\"} +Inf\n\
             # TYPE verdict_build info\n\
             # HELP verdict_build Build.\n\
             verdict_build_info{version=\"1.0\"} 1\n\
             # EOF\n"
        );
    }

    #[test]
    fn units_come_from_whole_name_suffixes() {
        let unit = |name: &str, kind| Family::new(name, kind, "").unit();
        assert_eq!(
            unit("process_cpu_seconds_total", Type::Counter),
            Some("seconds")
        );
        assert_eq!(
            unit("process_resident_memory_bytes", Type::Gauge),
            Some("bytes")
        );
        assert_eq!(
            unit("verdict_window_error_ratio", Type::Gauge),
            Some("ratio")
        );
        assert_eq!(unit("verdict_queue_depth", Type::Gauge), None);
        assert_eq!(unit("verdict_megabytes", Type::Gauge), None);
    }

    #[test]
    fn the_recorder_text_reads_back_sorted() {
        let text = "# TYPE b_total counter\nb_total{x=\"2\"} 5\nb_total{x=\"1\"} 0\n\n\
                    # HELP a_gauge What a\\\\b is.\n# TYPE a_gauge gauge\na_gauge 0.5\n\n\
                    # TYPE c counter\nc{m=\"a b\"} 7\n";
        let got = parse_recorder(text);
        let names: Vec<&str> = got.iter().map(Family::name).collect();
        assert_eq!(names, ["a_gauge", "b_total", "c"]);
        assert_eq!(got[0].help, "What a\\b is.");
        assert_eq!(got[0].kind, Type::Gauge);
        assert_eq!(got[1].kind, Type::Counter);
        assert_eq!(
            got[1].samples,
            [
                Sample {
                    labels: "{x=\"1\"}".into(),
                    value: 0.0
                },
                Sample {
                    labels: "{x=\"2\"}".into(),
                    value: 5.0
                }
            ]
        );
        assert_eq!(got[2].samples[0].labels, "{m=\"a b\"}");
    }

    #[test]
    fn openmetrics_only_when_preferred() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        let text_first =
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.8";
        assert_eq!(Format::negotiate(Some(text_first)), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        for text in [
            None,
            Some(""),
            Some("*/*"),
            Some("text/html,application/xhtml+xml,*/*;q=0.8"),
            Some("application/openmetrics-text;version=0.0.1"),
            Some("application/openmetrics-text;q=0"),
            Some("application/openmetrics-text;q=0.5,*/*"),
        ] {
            assert_eq!(Format::negotiate(text), Format::Text, "{text:?}");
        }
    }
}
