//! How figures of the API's JSON read to people, shared by `verdict runs`
//! and the status page: latencies in ms to three significant digits,
//! percentages to two decimals, ages as `5m30s ago`, absent as `-`.

use serde_json::Value;

/// A JSON value as a table cell: strings with their control characters
/// made visible (a subject is whatever a sender wrote, and an escape
/// sequence or a carriage return must not repaint the terminal), null as
/// `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => visible(s),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `s` with control characters and invisible formatting characters (see
/// [`hidden`]) written as escapes (`\u{1b}`, `\r`, `\u{202e}`), so that it
/// can be shown and typed back: [`typed`] reads it back to `s`.
/// A string that needs no escape is shown as it is, backslashes included;
/// once any escape is written (or a backslash in `s` would read as one),
/// its backslashes are doubled so that none is mistaken for an escape.
pub fn visible(s: &str) -> String {
    if !s.chars().any(hidden) && typed(s) == s {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c {
            '\\' => "\\\\".to_string(),
            c if hidden(c) => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Characters that do not show as themselves: controls, line and
/// paragraph separators, and every default-ignorable code point (Unicode's
/// `Default_Ignorable_Code_Point`), the invisible characters a sender could
/// put in a subject to make it read as another one — bidirectional
/// embeddings, overrides and isolates (`"\u{202e}0.1.2"` displays as
/// `2.1.0`), zero-width spaces and joiners, variation selectors, tags,
/// fillers, the byte-order mark and the soft hyphen.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{34f}'
                | '\u{61c}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fff8}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

/// A string as a person typed it after reading it from [`visible`]: `\\`,
/// `\t`, `\r`, `\n` and `\u{HEX}` read as the characters they stand for;
/// any other backslash stays as it is.
pub fn typed(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        match unescape(tail) {
            Some((c, used)) => {
                out.push(c);
                rest = &tail[used..];
            }
            None => {
                out.push('\\');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character an escape stands for and the bytes it takes after its
/// backslash, when `tail` starts with one.
fn unescape(tail: &str) -> Option<(char, usize)> {
    let simple = match tail.as_bytes().first()? {
        b'\\' => Some('\\'),
        b't' => Some('\t'),
        b'r' => Some('\r'),
        b'n' => Some('\n'),
        _ => None,
    };
    if let Some(c) = simple {
        return Some((c, 1));
    }
    let hex = tail.strip_prefix("u{")?;
    let end = hex.find('}')?;
    if end == 0 || end > 6 {
        return None;
    }
    let c = char::from_u32(u32::from_str_radix(&hex[..end], 16).ok()?)?;
    Some((c, end + 3))
}

/// A latency in ms (`212 ms`, `8.25 ms`, `0.0812 ms`), or `-`.
pub fn millis(v: &Value) -> String {
    match v.as_f64() {
        Some(ms) => format!("{} ms", significant(ms)),
        None => "-".into(),
    }
}

/// A percentage with two decimals (`0.40%`), or `-`.
pub fn percent(v: &Value) -> String {
    match v.as_f64() {
        Some(p) => format!("{p:.2}%"),
        None => "-".into(),
    }
}

/// `x` to three significant digits, without exponent for everyday sizes.
pub fn significant(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.001 {
        let decimals = (-a.log10()).floor() as usize + 3;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.2e}")
    }
}

fn parse(t: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok()
}

/// How long before `now` the RFC 3339 time `then` was, to the second
/// (`5m30s ago`), or `-`.
pub fn ago(then: Option<&str>, now: &str) -> String {
    let (Some(then), Some(now)) = (then.and_then(parse), parse(now)) else {
        return "-".into();
    };
    match now.duration_since(then) {
        Ok(d) => format!(
            "{} ago",
            humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                .to_string()
                .replace(' ', "")
        ),
        Err(_) => "just now".into(),
    }
}

/// A window as `2026-12-03 10:02:00-10:03:00` (the end's date when it is
/// another day).
pub fn window_span(start: Option<&str>, end: Option<&str>) -> String {
    let day_time = |t: &str| {
        let t = t.trim_end_matches('Z');
        let t = t.split('.').next().unwrap_or(t);
        match t.split_once('T') {
            Some((d, h)) => (d.to_string(), h.to_string()),
            None => (String::new(), t.to_string()),
        }
    };
    match (start, end) {
        (Some(s), Some(e)) => {
            let ((sd, st), (ed, et)) = (day_time(s), day_time(e));
            if sd == ed {
                format!("{sd} {st}-{et}")
            } else {
                format!("{sd} {st}-{ed} {et}")
            }
        }
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn figures_read_naturally() {
        let cases = [
            (json!(212.345), "212 ms"),
            (json!(8.254), "8.25 ms"),
            (json!(42.07), "42.1 ms"),
            (json!(0.08123), "0.0812 ms"),
            (json!(0.0), "0 ms"),
            (json!(null), "-"),
        ];
        for (v, want) in cases {
            assert_eq!(millis(&v), want);
        }
        assert_eq!(percent(&json!(6.1)), "6.10%");
        assert_eq!(percent(&Value::Null), "-");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let hostile = json!("esc\u{1b}[31mRED\u{7}\rPROMOTED");
        let shown = text(&hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "esc\\u{1b}[31mRED\\u{7}\\rPROMOTED");
        assert_eq!(text(&json!("2.0.1")), "2.0.1");
    }

    #[test]
    fn what_is_shown_can_be_typed_back() {
        for s in [
            "2.0.1",
            "esc\u{1b}[31mRED\u{7}\rPROMOTED",
            "tab\there\nnew\0zero",
            "C:\\dir\\file",
            "a\\u{7}",
            "a\\nb",
            "trailing\\",
            "\\\\",
            "bel\u{7} and a backslash \\ too",
            "\u{85}next line",
            "\u{202e}0.1.2",
            "\u{202e}evil\u{202c}/x",
            "a\u{2066}b\u{2069}\u{200b}\u{200f}\u{2028}\u{2029}\u{feff}\u{61c}",
            // Invisible after a digit, or blank: tags, variation selectors,
            // the Hangul filler, the combining grapheme joiner.
            "2.1.0\u{e0020}",
            "2.1.0\u{fe0f}",
            "2.1.0\u{3164}",
            "2.1\u{34f}.0\u{e0041}\u{115f}\u{ffa0}",
        ] {
            let shown = visible(s);
            assert!(!shown.chars().any(hidden), "{shown:?}");
            assert_eq!(typed(&shown), s, "{s:?} shown as {shown:?}");
        }
        // Backslashes that read as nothing are shown as they are.
        assert_eq!(visible("C:\\dir"), "C:\\dir");
        // A subject cannot reverse itself into another release's name.
        assert_eq!(visible("\u{202e}0.1.2"), "\\u{202e}0.1.2");
        assert_eq!(visible("2.1.0 café ✓"), "2.1.0 café ✓");
        assert_eq!(visible("a\\u{7}"), "a\\\\u{7}");
        assert_eq!(typed("bad\\u{zz}\\q"), "bad\\u{zz}\\q");
    }

    #[test]
    fn ages_and_windows() {
        let now = "2026-12-03T10:05:30.250Z";
        assert_eq!(ago(Some("2026-12-03T10:00:00.000Z"), now), "5m30s ago");
        assert_eq!(ago(Some("2026-12-03T11:00:00Z"), now), "just now");
        assert_eq!(ago(None, now), "-");
        assert_eq!(ago(Some("not a time"), now), "-");
        assert_eq!(
            window_span(Some("2026-12-03T10:02:00Z"), Some("2026-12-03T10:03:00Z")),
            "2026-12-03 10:02:00-10:03:00"
        );
        assert_eq!(
            window_span(Some("2026-12-03T23:59:00Z"), Some("2026-12-04T00:00:00Z")),
            "2026-12-03 23:59:00-2026-12-04 00:00:00"
        );
    }
}
