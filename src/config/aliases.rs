//! A bound on how far a pipeline file's YAML aliases expand.
//!
//! Both YAML readers verdict uses (its own conversion in `yaml.rs` and
//! config-rs's) copy the anchored node at every alias, so a few hundred
//! bytes of nested aliases (`b: &b [*a, *a, …]`, nine levels deep) become
//! a billion nodes and gigabytes of memory: `validate` runs out of memory
//! and a reload can get the serving process killed. This pass reads the
//! parser's events only, which costs the size of the text, and adds up
//! what the tree would hold, so such a file is refused before anything
//! expands it.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// The most nodes (scalars, lists, maps) a pipeline file's aliases may
/// add, each alias counted as the node it copies. A real file has a few
/// hundred nodes in all; the rest of the tree is bounded by the size
/// limit on the file itself.
pub(super) const MAX_EXPANDED_NODES: u64 = 100_000;

/// `Err` with the message verdict reports when the aliases of `text` would
/// copy more than [`MAX_EXPANDED_NODES`] nodes. Text that does not parse passes:
/// config-rs then says what is wrong with it.
pub(super) fn check(text: &str) -> Result<(), String> {
    let mut parser = Parser::new_from_str(text);
    // Nodes of the tree so far, aliases expanded.
    let mut total: u64 = 0;
    // Of those, the nodes aliases copied.
    let mut copied: u64 = 0;
    // Expanded size of each anchored node, by the parser's anchor id.
    let mut sizes: HashMap<usize, u64> = HashMap::new();
    // Open lists and maps: their anchor id and `total` before them.
    let mut open: Vec<(usize, u64)> = Vec::new();
    loop {
        let Ok((event, _)) = parser.next_token() else {
            return Ok(());
        };
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(_, _, anchor, _) => {
                total = total.saturating_add(1);
                if anchor != 0 {
                    sizes.insert(anchor, 1);
                }
            }
            Event::Alias(anchor) => {
                let size = sizes.get(&anchor).copied().unwrap_or(1);
                total = total.saturating_add(size);
                copied = copied.saturating_add(size);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((anchor, total));
                total = total.saturating_add(1);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, before)) = open.pop() {
                    if anchor != 0 {
                        sizes.insert(anchor, total - before);
                    }
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
        }
        if copied > MAX_EXPANDED_NODES {
            return Err(format!(
                "the file's YAML aliases (`*name`) expand to more than {MAX_EXPANDED_NODES} nodes \
                 (the limit); a pipeline file has a few hundred, so verdict does not expand them \
                 (write the repeated parts out, or use fewer nested aliases)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "billion laughs" file: `levels` anchors, each a list of ten
    /// aliases of the one before.
    fn bomb(levels: u8) -> String {
        let mut text =
            String::from("a0: &a0 [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
        for level in 1..levels {
            let prev = format!("*a{}", level - 1);
            let items = [prev.as_str(); 10].join(",");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        text.push_str(&format!("receivers: *a{}\n", levels - 1));
        text
    }

    #[test]
    fn a_nested_alias_bomb_is_refused_before_it_expands() {
        let error = check(&bomb(9)).expect_err("a billion nodes");
        assert!(error.contains("more than 100000 nodes"), "{error}");
        // The size is counted, not built: 10^30 nodes are refused as fast.
        assert!(check(&bomb(30)).is_err());
    }

    #[test]
    fn ordinary_aliases_and_files_pass() {
        assert_eq!(check(&bomb(4)), Ok(()));
        assert_eq!(
            check("base: &b {x: 1, y: [1, 2]}\nother: *b\nthird: *b\n"),
            Ok(())
        );
        assert_eq!(check("a: [\n"), Ok(()), "left to config-rs to report");
        assert_eq!(check(""), Ok(()));
    }

    #[test]
    fn a_large_file_without_aliases_is_left_to_the_size_limit() {
        let text: String = (0..60_000).map(|i| format!("k{i}: {i}\n")).collect();
        assert_eq!(check(&text), Ok(()));
        let many = format!(
            "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: [{}]\n",
            vec!["*a"; 12_000].join(",")
        );
        assert!(check(&many).is_err(), "12,000 copies of 10 nodes");
    }
}
