//! What a flag rollout is made of, shared by the run engine (which steps
//! it), the storage (which keeps it with the run), the `unleash` exporter
//! (which applies its changes) and the API and `/metrics` (which show it).
//!
//! A [`Rollout`] is one run's flag as one exporter drives it; every change
//! of its value is a [`FlagChange`], an outbox row delivered at least once.
//! A change carries an absolute value (rollout 25, or the flag off), so
//! delivering it twice, or delivering only the latest of several, leaves
//! the flag as the engine decided.

use serde::{Deserialize, Serialize};

use super::{Subject, UnixNanos};

/// A flag name with `{attribute}` placeholders filled in from a run's
/// subject (`checkout-{service.version}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Attribute(String),
}

/// Longest Unleash name (its `nameType`).
pub const MAX_NAME: usize = 100;

/// Whether `name` is a valid Unleash name: 1–100 characters that
/// `encodeURIComponent` leaves as they are, and neither `.` nor `..` (what
/// Unleash's `isUrlFriendly` checks).
pub fn is_unleash_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && name.bytes().all(unreserved)
}

/// Bytes `encodeURIComponent` does not escape.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

impl FlagTemplate {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<FlagTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_string()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("{text:?}: '}}' without '{{'"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Text(rest[..i].to_string()));
                    }
                    let after = &rest[i + 1..];
                    let Some(end) = after.find('}') else {
                        return Err(format!("{text:?}: '{{' without '}}'"));
                    };
                    let name = after[..end].trim();
                    if name.is_empty() || name.contains('{') {
                        return Err(format!(
                            "{text:?}: a placeholder must name a subject attribute, as in {{service.version}}"
                        ));
                    }
                    parts.push(Part::Attribute(name.to_string()));
                    rest = &after[end + 1..];
                }
            }
        }
        let template = FlagTemplate {
            text: text.to_string(),
            parts,
        };
        if template.parts.is_empty() {
            return Err("must not be empty".into());
        }
        for p in &template.parts {
            if let Part::Text(t) = p {
                if let Some(c) = t.bytes().find(|b| !unreserved(*b)) {
                    return Err(format!(
                        "{text:?}: {:?} is not allowed in an Unleash flag name (letters, digits and - _ . ! ~ * ' ( ) are)",
                        c as char
                    ));
                }
            }
        }
        Ok(template)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The attributes it names, in order.
    pub fn attributes(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Attribute(a) => Some(a.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The flag of `subject`; `None` when the subject lacks an attribute
    /// the template names.
    pub fn fill(&self, subject: &Subject) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Attribute(a) => {
                    let (_, v) = subject.attributes().iter().find(|(k, _)| k == a)?;
                    out.push_str(v);
                }
            }
        }
        Some(out)
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    /// Going up the steps while the run validates.
    Stepping,
    /// The run was promoted: 100 %.
    Promoted,
    /// The run was rolled back: 0 %, or the flag off.
    RolledBack,
}

/// One run's flag, as one exporter drives it. Stored with the run (JSON),
/// so a restart resumes at the same step and hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The run.
    pub run_id: String,
    /// Full exporter id (`unleash/checkout`).
    pub exporter: String,
    /// The flag's name, filled in.
    pub flag: String,
    /// Where it stands.
    pub phase: RolloutPhase,
    /// Index of the current step in the exporter's `steps` (the last one
    /// once promoted).
    pub step: usize,
    /// The rollout percentage of the latest change.
    pub percent: u32,
    /// Whether the latest change leaves the flag on.
    pub enabled: bool,
    /// Id of the latest change (its outbox row).
    pub change_id: String,
    /// When the latest change was committed.
    pub changed_at: UnixNanos,
    /// When Unleash acknowledged the latest change; `None` until then.
    pub acked_at: Option<UnixNanos>,
    /// Windows counted at the current step since it was acknowledged.
    pub counted: u32,
    /// End of the last window counted at this step.
    pub last_counted_end: Option<UnixNanos>,
    /// How many steps the exporter has.
    pub steps: usize,
    /// The earliest time the next step (at the last step: promotion) can
    /// come; `None` while Unleash has not acknowledged the current step,
    /// and once final.
    pub next_step_at: Option<UnixNanos>,
}

impl Rollout {
    /// Windows count toward the next step when they start at or after
    /// this: one SDK refresh interval after Unleash acknowledged the step,
    /// so no window mixes SDKs holding the old value and the new one.
    pub fn counts_from(&self, refresh: UnixNanos) -> Option<UnixNanos> {
        self.acked_at.map(|at| at.saturating_add(refresh))
    }
}

/// One change of a flag: what an outbox row of an `unleash` exporter
/// carries (its JSON is the row's body, shown by `GET /api/v1/deliveries`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagChange {
    /// `flag_change`: tells these rows from verdict events.
    pub kind: String,
    /// The change's stable id (the outbox row's `event_id`).
    pub change_id: String,
    /// When it was committed (RFC 3339).
    pub emitted_at: String,
    /// Contract name.
    pub contract: String,
    /// The run.
    pub run_id: String,
    /// The joined subject.
    pub subject: String,
    /// Full exporter id.
    pub exporter: String,
    /// The flag.
    pub flag: String,
    /// The rollout percentage to set.
    pub percent: u32,
    /// Whether the flag is to be on (`false`: turned off, the percentage
    /// left alone).
    pub enabled: bool,
    /// A rollback: retried until applied, counted while not.
    pub rollback: bool,
    /// The run's state when the change was decided.
    pub state: String,
    /// Why, as a sentence (`step 2 of 5: 2 windows passed at 5%`).
    pub reason: String,
}

/// The `kind` of a [`FlagChange`].
pub const FLAG_CHANGE: &str = "flag_change";

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject::new(vec![
            ("service.name".into(), "checkout".into()),
            ("service.version".into(), "2.0.1".into()),
        ])
    }

    #[test]
    fn templates_fill_in_subject_attributes() {
        let t = FlagTemplate::parse("checkout-{service.version}").expect("parses");
        assert_eq!(t.attributes().collect::<Vec<_>>(), ["service.version"]);
        assert_eq!(t.fill(&subject()).as_deref(), Some("checkout-2.0.1"));
        let plain = FlagTemplate::parse("checkout-canary").expect("parses");
        assert_eq!(plain.fill(&subject()).as_deref(), Some("checkout-canary"));
        let missing = FlagTemplate::parse("{team}-{service.version}").expect("parses");
        assert_eq!(missing.fill(&subject()), None);
    }

    #[test]
    fn bad_templates_say_why() {
        for (text, why) in [
            ("", "must not be empty"),
            ("checkout-{service.version", "'{' without '}'"),
            ("checkout-}", "'}' without '{'"),
            ("checkout-{}", "must name a subject attribute"),
            ("checkout {service.version}", "' ' is not allowed"),
            ("checkout/{service.version}", "'/' is not allowed"),
        ] {
            let err = FlagTemplate::parse(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn unleash_names_are_url_friendly() {
        assert!(is_unleash_name("checkout-2.0.1"));
        assert!(!is_unleash_name("checkout-2.0.1+build"));
        assert!(!is_unleash_name(".."));
        assert!(!is_unleash_name(&"x".repeat(101)));
    }
}
