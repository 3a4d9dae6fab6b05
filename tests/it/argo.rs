//! Argo Rollouts' `web` metric provider against the real binary (issue
//! 13.4): the README's `AnalysisTemplate` is read out of the README, its
//! URL fetched and its `successCondition` / `failureCondition` evaluated,
//! with Argo's rules, against the API's answers for a PENDING, a
//! VALIDATING, a PROMOTED and a ROLLED_BACK run. The template cannot drift
//! from what the API answers.
//!
//! What Argo does (argoproj/argo-rollouts):
//! - `metricproviders/webmetric/webmetric.go`: a non-2xx answer is a
//!   measurement *error*; the JSON body, through `jsonPath` (default `{$}`,
//!   the whole body), becomes `result`;
//! - `utils/evaluate/evaluate.go`, `EvaluateResult`: with both conditions
//!   set, the failure condition wins, then the success condition, and a
//!   result that meets neither is *inconclusive*; conditions are expr-lang
//!   expressions, where a missing map key is `nil` (not equal to a string);
//! - `utils/analysis/factory.go`, `ValidateMetric`: `count` must be at least
//!   `failureLimit + consecutiveSuccessLimit` and at least
//!   `inconclusiveLimit`.

use serde_json::Value;

use crate::durable::Verdict;
use crate::flagger::{promoted, rolled_back, validating, write_pipeline};
use crate::{get_json, TempDir};

/// A measurement's phase, as Argo's `EvaluateResult` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Successful,
    Failed,
    Inconclusive,
}

/// Argo's `EvaluateResult` with both conditions set.
fn evaluate(result: &Value, success: &Condition, failure: &Condition) -> Phase {
    if failure.holds(result) {
        Phase::Failed
    } else if success.holds(result) {
        Phase::Successful
    } else {
        Phase::Inconclusive
    }
}

/// The expression forms the README uses, and only those:
/// `result.a.b == "TEXT"` or `!=`. Anything else fails the test, naming
/// the expression, so a README change that this evaluator would misread is
/// caught rather than misjudged.
#[derive(Debug)]
struct Condition {
    path: Vec<String>,
    equal: bool,
    literal: String,
}

impl Condition {
    fn parse(expr: &str) -> Condition {
        let unknown = || -> ! {
            panic!("the README's condition {expr:?} has a form tests/it/argo.rs cannot evaluate")
        };
        let (lhs, rhs, equal) = if let Some((l, r)) = expr.split_once("==") {
            (l, r, true)
        } else if let Some((l, r)) = expr.split_once("!=") {
            (l, r, false)
        } else {
            unknown()
        };
        let mut parts = lhs.trim().split('.');
        if parts.next() != Some("result") {
            unknown();
        }
        let path: Vec<String> = parts.map(str::to_string).collect();
        let ident = |p: &String| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        };
        if path.is_empty() || !path.iter().all(ident) {
            unknown();
        }
        let rhs = rhs.trim();
        let literal = match rhs.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(l) if !l.contains(['"', '\\']) => l.to_string(),
            _ => unknown(),
        };
        Condition {
            path,
            equal,
            literal,
        }
    }

    /// expr-lang's member access on a JSON object: a missing key is `nil`,
    /// which equals no string.
    fn holds(&self, result: &Value) -> bool {
        let mut v = Some(result);
        for key in &self.path {
            v = v.and_then(|v| v.get(key.as_str()));
        }
        let same = v.and_then(Value::as_str) == Some(self.literal.as_str());
        same == self.equal
    }
}

/// The README's fenced YAML block that holds `kind: AnalysisTemplate`.
fn analysis_template() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut blocks = readme.split("```yaml\n").skip(1).filter_map(|b| {
        b.split_once("\n```")
            .map(|(block, _)| block.to_string())
            .filter(|block| block.contains("kind: AnalysisTemplate"))
    });
    let block = blocks.next().expect("an AnalysisTemplate in README.md");
    assert!(
        blocks.next().is_none(),
        "README.md has two AnalysisTemplates"
    );
    block
}

/// The value of `key:` in `block` (a YAML scalar: plain, or quoted with
/// `'` or `"` without escapes), with a trailing ` # comment` removed.
fn scalar(block: &str, key: &str) -> Option<String> {
    let line = block
        .lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim();
    let value = if let Some(q) = line.strip_prefix('\'') {
        q.split_once('\'').expect("closing '").0.to_string()
    } else if let Some(q) = line.strip_prefix('"') {
        q.split_once('"').expect("closing \"").0.to_string()
    } else {
        line.split(" #").next().unwrap_or("").trim().to_string()
    };
    Some(value)
}

fn number(block: &str, key: &str) -> i64 {
    scalar(block, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("README AnalysisTemplate: no whole number {key}"))
}

#[test]
fn the_readme_template_passes_argos_own_checks() {
    let t = analysis_template();
    let (count, failure, success, inconclusive) = (
        number(&t, "count"),
        number(&t, "failureLimit"),
        number(&t, "consecutiveSuccessLimit"),
        number(&t, "inconclusiveLimit"),
    );
    // Argo's ValidateMetric.
    assert!(count >= failure + success && count >= inconclusive);
    assert!(
        scalar(&t, "interval").is_some(),
        "count > 1 needs an interval"
    );
    // What the README promises: the first PROMOTED succeeds, the first
    // ROLLED_BACK fails, and inconclusive looks never end the analysis
    // before `count` (it ends when inconclusive > inconclusiveLimit).
    assert_eq!((failure, success, inconclusive), (0, 1, count));
    // The whole body is `result`: no jsonPath, or the default.
    assert!(matches!(
        scalar(&t, "jsonPath").as_deref(),
        None | Some("{$}")
    ));
}

#[test]
fn the_evaluator_follows_argos_rules() {
    let s = Condition::parse(r#"result.state == "PROMOTED""#);
    let f = Condition::parse(r#"result.state == "ROLLED_BACK""#);
    let phase = |state: Value| evaluate(&serde_json::json!({ "state": state }), &s, &f);
    assert_eq!(phase("PROMOTED".into()), Phase::Successful);
    assert_eq!(phase("ROLLED_BACK".into()), Phase::Failed);
    assert_eq!(phase("VALIDATING".into()), Phase::Inconclusive);
    assert_eq!(phase(Value::Null), Phase::Inconclusive);
    assert_eq!(
        evaluate(&serde_json::json!({}), &s, &f),
        Phase::Inconclusive
    );
    assert!(Condition::parse(r#"result.state != "PENDING""#).holds(&serde_json::json!({})));
    for unknown in [
        "result.state == PROMOTED",
        r#"result["state"] == "PROMOTED""#,
        r#"result.state in ["PROMOTED"]"#,
        r#"asInt(result) > 3"#,
    ] {
        assert!(
            std::panic::catch_unwind(|| Condition::parse(unknown)).is_err(),
            "{unknown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_analysis_template_reads_each_state_right() {
    let t = analysis_template();
    let success = Condition::parse(&scalar(&t, "successCondition").expect("successCondition"));
    let failure = Condition::parse(&scalar(&t, "failureCondition").expect("failureCondition"));
    let url = scalar(&t, "url").expect("provider.web.url");
    let path = &url[url
        .find("/api/")
        .expect("an API path in the template's url")..];

    let dir = TempDir::new("argo");
    let v = Verdict::start(&write_pipeline(&dir));
    validating(&v, "3.0.0").await;
    promoted(&v, "3.1.0").await;
    rolled_back(&v, "3.2.0").await;
    for (version, state, phase) in [
        ("3.9.9", "PENDING", Phase::Inconclusive),
        ("3.0.0", "VALIDATING", Phase::Inconclusive),
        ("3.1.0", "PROMOTED", Phase::Successful),
        ("3.2.0", "ROLLED_BACK", Phase::Failed),
    ] {
        let subject = format!("checkout/{version}");
        let url = v.api(
            &path
                .replace("{{args.contract}}", "checkout")
                .replace("{{args.subject}}", &subject),
        );
        let (status, result) = get_json(&url).await;
        // Argo counts any non-2xx answer as an error, not a measurement.
        assert_eq!(status, 200, "{url}: {result}");
        assert_eq!(result["state"], state, "{result}");
        assert_eq!(
            evaluate(&result, &success, &failure),
            phase,
            "{state}: {result}"
        );
    }
}
