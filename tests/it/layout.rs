//! The layers hold: within each crate of the workspace, no module imports one that
//! imports it back (through `crate::<module>` paths, outside tests), and the model
//! (`shared::model`) names no HTTP or AWS type; a binary built without its test harness has
//! no tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the crate in `src` → the top-level modules it names.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .expect("src")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let module = name.strip_suffix(".rs").map(str::to_owned).or_else(|| entry.path().is_dir().then_some(name));
            module.filter(|m| m != "lib" && m != "main" && m != "bin")
        })
        .collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut text = String::new();
        let file = src.join(format!("{module}.rs"));
        for path in [file, src.join(module).join("mod.rs")] {
            if let Ok(body) = std::fs::read_to_string(&path) {
                text.push_str(body.split("#[cfg(test)]").next().unwrap_or_default());
            }
        }
        let mut folder = Vec::new();
        if let Ok(entries) = std::fs::read_dir(src.join(module)) {
            folder.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        }
        for path in folder.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
            let body = std::fs::read_to_string(&path).unwrap_or_default();
            text.push_str(body.split("#[cfg(test)]").next().unwrap_or_default());
        }
        let named: BTreeSet<String> = text
            .match_indices("crate::")
            .map(|(at, _)| text[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect())
            .filter(|name: &String| name != module && modules.contains(name))
            .collect();
        graph.insert(module.clone(), named);
    }
    graph
}

/// A cycle in `graph`, if any.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

fn crates() -> Vec<PathBuf> {
    let root = crate::support::root();
    let mut found = vec![root.join("shared"), root.join("local"), root.join("catalog"), root.join("testkit")];
    for entry in std::fs::read_dir(root.join("functions")).expect("functions/").filter_map(Result::ok) {
        found.push(entry.path());
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut checked = 0;
    for folder in crates() {
        let graph = imports(&folder.join("src"));
        checked += graph.len();
        assert_eq!(cycle(&graph), None, "{}: modules that import each other", folder.display());
    }
    assert!(checked >= 30, "{checked} modules");
    let looped = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert!(cycle(&looped).is_some(), "the check finds a cycle");
}

#[test]
fn the_model_names_no_http_or_aws_type() {
    let src = crate::support::root().join("shared/src");
    let mut files = vec![src.join("model.rs")];
    files.extend(std::fs::read_dir(src.join("model")).expect("model/").filter_map(Result::ok).map(|e| e.path()));
    for file in files {
        let text = std::fs::read_to_string(&file).expect("model file");
        for forbidden in ["aws_sdk", "aws_lambda", "lambda_http", "http::", "reqwest", "crate::store", "crate::queue"] {
            assert!(!text.contains(forbidden), "{} names {forbidden}", file.display());
        }
    }
}

/// The `[[bin]]` targets of `manifest` that set `test = false`, as (name, source path).
fn binaries_without_tests(manifest: &str) -> Vec<(String, String)> {
    let value = |block: &str, key: &str| {
        block.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    manifest
        .split("[[bin]]")
        .skip(1)
        .map(|block| block.split("\n[").next().unwrap_or_default())
        .filter(|block| value(block, "test").as_deref() == Some("false"))
        .filter_map(|block| Some((value(block, "name")?, value(block, "path")?)))
        .collect()
}

/// A binary whose unit-test harness is not built (to save a link per binary in the test
/// command) must have no tests: they would never run.
#[test]
fn a_binary_built_without_its_test_harness_has_no_tests() {
    let mut checked = 0;
    for folder in crates() {
        let manifest = std::fs::read_to_string(folder.join("Cargo.toml")).expect("Cargo.toml");
        for (name, path) in binaries_without_tests(&manifest) {
            let source = std::fs::read_to_string(folder.join(&path)).unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
            for marker in ["#[test]", "#[tokio::test", "#[cfg(test)]"] {
                assert!(!source.contains(marker), "{name} ({path}) has `test = false` but contains {marker}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} binaries checked");
    let sample =
        "[[bin]]\nname = \"a\"\npath = \"src/a.rs\"\ntest = false\n\n[[bin]]\nname = \"b\"\npath = \"src/b.rs\"\n";
    assert_eq!(binaries_without_tests(sample), vec![("a".to_owned(), "src/a.rs".to_owned())]);
}
