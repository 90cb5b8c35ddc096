//! The documentation a newcomer reads: the README stays short, every relative link in
//! README.md, BENCHMARKS.md and docs/ leads to a file that exists (and, with a `#anchor`,
//! to a heading of that file, as GitHub names it), and every page of docs/ is linked
//! from somewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// The README: what it is, the picture, the two commands, deploying, and links.
const README_MAX_LINES: usize = 300;

/// Every Markdown file the test reads, relative to the root.
fn pages(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("docs/").filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    let mut found = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    walk(&root.join("docs"), &mut found);
    found.sort();
    found
}

/// The lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchor GitHub gives a heading: lower case, link syntax reduced to its text, every
/// character but letters, digits, spaces, `-` and `_` dropped, spaces made `-`.
fn anchor(heading: &str) -> String {
    let mut text = String::new();
    let mut chars = heading.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c == ']' && chars.peek() == Some(&'(') {
            // `[text](target)`: the target goes.
            for skipped in chars.by_ref() {
                if skipped == ')' {
                    break;
                }
            }
            continue;
        }
        text.push(c);
    }
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor the headings of `text` give (a repeated one gets `-1`, `-2`, …).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut all = BTreeSet::new();
    for line in prose(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor(line[hashes..].trim().trim_end_matches('#'));
        let n = seen.entry(base.clone()).or_default();
        all.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
        *n += 1;
    }
    all
}

/// The targets of the Markdown links in `text` (`[text](target)`), outside code.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        let mut before = 0;
        while let Some(at) = rest.find("](") {
            // Inside an inline code span when an odd number of backticks come before it.
            let ticks = line[..before + at].matches('`').count();
            let target: String = rest[at + 2..].chars().take_while(|c| *c != ')' && !c.is_whitespace()).collect();
            if ticks % 2 == 0 && !target.is_empty() {
                found.push(target);
            }
            before += at + 2;
            rest = &rest[at + 2..];
        }
    }
    found
}

/// `path` with `.` and `..` resolved, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            Component::Normal(_) | Component::RootDir | Component::Prefix(_) => out.push(component),
        }
    }
    out
}

#[test]
fn the_readme_is_short_and_every_link_in_the_docs_resolves() {
    let root = crate::support::root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(lines <= README_MAX_LINES, "README.md has {lines} lines; the rest belongs in docs/");

    let pages = pages(&root);
    let mut broken = Vec::new();
    let mut linked: BTreeSet<PathBuf> = BTreeSet::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("page");
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let destination =
                if path.is_empty() { page.clone() } else { normalize(&page.parent().expect("folder").join(path)) };
            let shown = format!("{}: {target}", page.strip_prefix(&root).unwrap_or(page).display());
            if !destination.exists() {
                broken.push(format!("{shown}: no such file"));
                continue;
            }
            linked.insert(destination.clone());
            if !fragment.is_empty() {
                let text = std::fs::read_to_string(&destination).unwrap_or_default();
                if !anchors(&text).contains(fragment) {
                    broken.push(format!("{shown}: no heading gives #{fragment}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 50, "{checked} links checked");
    let unlinked: Vec<_> = pages.iter().filter(|p| p.starts_with(root.join("docs")) && !linked.contains(*p)).collect();
    assert!(unlinked.is_empty(), "pages nothing links to: {unlinked:?}");
}

#[test]
fn anchors_are_github_s() {
    assert_eq!(
        anchor("Invoking a function without Docker: `scripts/invoke`"),
        "invoking-a-function-without-docker-scriptsinvoke"
    );
    assert_eq!(anchor("Pagstar's hints"), "pagstars-hints");
    assert_eq!(anchor("What is verified, and how"), "what-is-verified-and-how");
    assert_eq!(anchors("# A\n## A\n```\n# B\n```\n"), BTreeSet::from(["a".to_owned(), "a-1".to_owned()]));
    assert_eq!(links("[x](a.md) `[y](b.md)` [`z`](c.md#d) [w](https://e)"), ["a.md", "c.md#d", "https://e"]);
}
