//! The module layering of `src/lib.rs` holds: every `crate::` path in `src/`
//! goes from a module to one its row of the layering table allows, and the
//! table itself has no cycle. The table is read from `src/lib.rs`, so it is
//! written once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it may import (`None` = any).
type Table = BTreeMap<String, Option<BTreeSet<String>>>;

/// Modules every module may import besides its row: shared unit-test
/// fixtures.
const ALWAYS: [&str; 1] = ["test_util"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The table of `src/lib.rs`'s "Layering" section.
fn table(lib: &str) -> Table {
    let mut table = Table::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | `") else {
            continue;
        };
        let (module, rest) = row
            .split_once('`')
            .expect("a row names its module in backticks");
        let allowed = rest
            .trim()
            .trim_start_matches('|')
            .trim()
            .trim_end_matches('|')
            .trim();
        let allowed = if allowed == "*" {
            None
        } else {
            Some(
                allowed
                    .split(',')
                    .map(|m| m.trim().trim_matches('`').to_string())
                    .filter(|m| !m.is_empty())
                    .collect(),
            )
        };
        table.insert(module.to_string(), allowed);
    }
    table
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/runs/engine.rs` → `runs`);
/// `None` for `lib.rs` and `main.rs`.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// How deep a file sits inside its top-level module (`src/a.rs` and
/// `src/a/mod.rs` 0, `src/a/b.rs` 1, `src/a/b/c.rs` 2).
fn depth_of(file: &Path) -> usize {
    let rel = file.strip_prefix(src()).expect("under src");
    let parts = rel.components().count();
    let is_mod = rel.file_name().is_some_and(|n| n == "mod.rs");
    parts.saturating_sub(if is_mod { 2 } else { 1 })
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules named right after `crate::` (`crate::a::b`,
/// `crate::{a, b::c}`), with their line numbers. Comments are skipped.
fn imports(text: &str) -> Vec<(usize, String)> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    let mut offset = 0;
    while let Some(i) = rest.find("crate::") {
        let at = offset + i;
        let line = code[..at].matches('\n').count() + 1;
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let mut depth = 1;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && !c.is_whitespace() => {
                        out.push((line, ident(&group[j..]).to_string()));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push((line, ident(after).to_string()));
        }
        offset = at + "crate::".len();
        rest = &code[offset..];
    }
    out
}

/// `super::` chains longer than the file's depth (plus one for an inline
/// test module) would leave its module without saying `crate::`.
fn escaping_super(text: &str, depth: usize) -> Option<usize> {
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("super::") {
            // Length of the `super::super::…` run starting here.
            let run = rest[i..]
                .split("super::")
                .skip(1)
                .take_while(|s| s.is_empty())
                .count()
                + 1;
            if run > depth + 1 {
                return Some(n + 1);
            }
            rest = &rest[i + "super::".len() * run..];
        }
    }
    None
}

fn rule(table: &Table, module: &str) -> String {
    match table.get(module) {
        Some(Some(allowed)) if allowed.is_empty() => format!("{module} may import no other module"),
        Some(Some(allowed)) => format!(
            "{module} may import only: {}",
            allowed.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        Some(None) => format!("{module} may import any module"),
        None => format!("{module} has no row in the table"),
    }
}

/// Every import in `src/` that the table does not allow, as messages.
fn violations(table: &Table) -> Vec<String> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    all.sort();
    let mut problems = Vec::new();
    for file in all {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        let shown = file
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap_or(&file)
            .display()
            .to_string();
        let Some(allowed) = table.get(&module) else {
            problems.push(format!(
                "{shown}: module {module} has no row in the layering table of src/lib.rs"
            ));
            continue;
        };
        if let Some(line) = escaping_super(&text, depth_of(&file)) {
            problems.push(format!("{shown}:{line}: a super:: path leaves module {module}; write crate:: so the layering can be checked"));
        }
        let Some(allowed) = allowed else { continue };
        for (line, target) in imports(&text) {
            if target == module || allowed.contains(&target) || ALWAYS.contains(&target.as_str()) {
                continue;
            }
            if !table.contains_key(&target) {
                // Items of the crate root (none today) are not layered.
                continue;
            }
            problems.push(format!(
                "{shown}:{line}: imports crate::{target}, but {} (layering table in src/lib.rs)",
                rule(table, &module)
            ));
        }
    }
    problems
}

/// A cycle among the table's rows, if any.
fn cycle(table: &Table) -> Option<Vec<String>> {
    fn visit(
        table: &Table,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        if let Some(Some(next)) = table.get(node) {
            for n in next {
                if let Some(c) = visit(table, n, path, done) {
                    return Some(c);
                }
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    table
        .keys()
        .find_map(|k| visit(table, k, &mut Vec::new(), &mut done))
}

#[test]
fn imports_follow_the_layering_table() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let table = table(&lib);
    assert!(
        table.len() >= 10 && table.contains_key("model") && table.contains_key("runs"),
        "the layering table of src/lib.rs was not found: {table:?}"
    );
    if let Some(c) = cycle(&table) {
        panic!(
            "the layering table of src/lib.rs has a cycle: {}",
            c.join(" -> ")
        );
    }
    let problems = violations(&table);
    assert!(
        problems.is_empty(),
        "imports against the layering:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_every_kind_of_path() {
    let text = "use crate::model::{A, B};\nuse crate::{storage, runs::engine::{X, Y}};\n// crate::api in a comment\nfn f() { crate::proto::event_json(x); }\nuse crate::{\n    exporters,\n    api::{a, b},\n};";
    let found: Vec<(usize, String)> = imports(text);
    let names: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        names,
        ["model", "storage", "runs", "proto", "exporters", "api"]
    );
    assert_eq!(found[3].0, 4);
    assert_eq!(escaping_super("use super::super::x;", 1), None);
    assert_eq!(escaping_super("use super::super::super::x;", 1), Some(1));

    // A back-arrow is caught with the file and the rule.
    let mut table = Table::new();
    table.insert("storage".into(), Some(["model".to_string()].into()));
    table.insert("runs".into(), Some(["storage".to_string()].into()));
    assert_eq!(rule(&table, "storage"), "storage may import only: model");
    table.insert("model".into(), Some(["runs".to_string()].into()));
    assert!(cycle(&table).is_some());
}
