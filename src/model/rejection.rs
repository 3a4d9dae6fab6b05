//! Items rejected for a series: what they were, why, and how many. The
//! receivers tell the series' shard, the shard tells the run engine, and a
//! run that has no samples says why (`no latency samples: 412 points of
//! validation.score rejected, unit "1" is not s, ms or us`).
//!
//! Everything here is bounded whatever arrives: a tally tells apart at most
//! [`MAX_KINDS`] kinds (the rest are counted together) and keeps at most
//! [`MAX_TEXT`] characters of any name or detail that came from the wire.

/// Most kinds of rejection one tally tells apart; items of further kinds
/// are counted together as "for other reasons".
pub const MAX_KINDS: usize = 4;

/// Longest name or detail kept from the wire, in characters.
pub const MAX_TEXT: usize = 120;

/// `text`, cut to [`MAX_TEXT`] characters (with `…` when cut).
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// One kind of rejected item and how many of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// What was rejected: `spans` or `points`.
    pub noun: &'static str,
    /// The metric the points belong to; empty for spans.
    pub metric: String,
    /// The reason's label (`unit`, `late`, …, as in
    /// `verdict_receiver_rejected_items_total`): with `noun` and `metric`,
    /// the kind.
    pub reason: &'static str,
    /// The reason in words (`unit "1" is not s, ms or us`).
    pub why: String,
    /// How many.
    pub count: u64,
}

impl Rejected {
    /// Whether it is the kind `(noun, metric, reason)`.
    pub fn same_kind(&self, noun: &str, metric: &str, reason: &str) -> bool {
        self.noun == noun && self.reason == reason && self.metric == metric
    }

    /// What was rejected, for `count` items: `points of validation.score`,
    /// `span`.
    pub fn what(&self, count: u64) -> String {
        let noun = match count {
            1 => self.noun.strip_suffix('s').unwrap_or(self.noun),
            _ => self.noun,
        };
        if self.metric.is_empty() {
            noun.to_string()
        } else {
            format!("{noun} of {}", self.metric)
        }
    }

    /// `412 points of validation.score rejected, unit "1" is not s, ms or us`.
    pub fn sentence(&self) -> String {
        format!(
            "{} {} rejected, {}",
            self.count,
            self.what(self.count),
            self.why
        )
    }
}

/// The rejections of one series, bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectionTally {
    kinds: Vec<Rejected>,
    /// Items of kinds beyond [`MAX_KINDS`].
    other: u64,
}

impl RejectionTally {
    /// Counts `r` (its first detail of a kind is the one kept).
    pub fn add(&mut self, r: &Rejected) {
        if let Some(k) = self
            .kinds
            .iter_mut()
            .find(|k| k.same_kind(r.noun, &r.metric, r.reason))
        {
            k.count = k.count.saturating_add(r.count);
        } else if self.kinds.len() < MAX_KINDS {
            self.kinds.push(Rejected {
                metric: clip(&r.metric),
                why: clip(&r.why),
                ..r.clone()
            });
        } else {
            self.other = self.other.saturating_add(r.count);
        }
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &RejectionTally) {
        for k in &other.kinds {
            self.add(k);
        }
        self.other = self.other.saturating_add(other.other);
    }

    /// Items rejected in all.
    pub fn total(&self) -> u64 {
        self.kinds
            .iter()
            .fold(self.other, |t, k| t.saturating_add(k.count))
    }

    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The kinds told apart, most items first.
    pub fn kinds(&self) -> Vec<&Rejected> {
        let mut kinds: Vec<&Rejected> = self.kinds.iter().collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.count));
        kinds
    }

    /// Every kind as a sentence, most items first, joined with `; `
    /// (`412 points of validation.score rejected, unit "1" is not s, ms or
    /// us; 3 points of validation.score rejected, late: window already
    /// closed`).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.kinds().iter().map(|k| k.sentence()).collect();
        if self.other > 0 {
            parts.push(format!("{} more rejected for other reasons", self.other));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(count: u64) -> Rejected {
        Rejected {
            noun: "points",
            metric: "validation.score".into(),
            reason: "unit",
            why: "unit \"1\" is not s, ms or us".into(),
            count,
        }
    }

    #[test]
    fn a_tally_counts_by_kind_and_reads_as_a_sentence() {
        let mut t = RejectionTally::default();
        t.add(&unit(400));
        t.add(&Rejected {
            noun: "spans",
            metric: String::new(),
            reason: "late",
            why: "late: window already closed".into(),
            count: 3,
        });
        t.add(&unit(12));
        assert_eq!(t.total(), 415);
        assert_eq!(
            t.describe(),
            "412 points of validation.score rejected, unit \"1\" is not s, ms or us; \
             3 spans rejected, late: window already closed"
        );
    }

    /// Hostile input cannot grow a tally: kinds beyond the bound are
    /// counted together, and names and details are clipped.
    #[test]
    fn a_tally_is_bounded_whatever_arrives() {
        let mut t = RejectionTally::default();
        let long = "x".repeat(100_000);
        for i in 0..10_000u64 {
            t.add(&Rejected {
                noun: "points",
                metric: format!("{long}{i}"),
                reason: "invalid_point",
                why: long.clone(),
                count: 1,
            });
        }
        assert_eq!(t.kinds.len(), MAX_KINDS);
        assert_eq!(t.other, 10_000 - MAX_KINDS as u64);
        assert_eq!(t.total(), 10_000);
        for k in &t.kinds {
            assert!(k.metric.chars().count() <= MAX_TEXT + 1);
            assert!(k.why.chars().count() <= MAX_TEXT + 1);
        }
        assert!(t.describe().len() < 4 * 2 * (MAX_TEXT * 4 + 64));
        assert!(t
            .describe()
            .ends_with("9996 more rejected for other reasons"));
        // Counts saturate rather than wrap.
        let mut big = RejectionTally::default();
        big.add(&unit(u64::MAX));
        big.add(&unit(5));
        assert_eq!(big.total(), u64::MAX);
    }

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("short"), "short");
        let cut = clip(&"é".repeat(500));
        assert_eq!(cut.chars().count(), MAX_TEXT + 1);
        assert!(cut.ends_with('…'));
    }
}
