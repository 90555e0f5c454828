//! The layers of `src/` (README, Architecture): no top-level module imports one in a layer
//! above its own, and no two modules of one layer import each other in a circle. Read from the
//! source itself: every `crate::<module>` path in a module's files is an import of that module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer, bottom first.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &["discord", "time_fmt", "config"]),
    ("runtime", &["runtime"]),
    ("services", &["presence", "fanout", "storage", "card", "per_ip", "lanyard", "metrics", "cluster"]),
    ("wiring", &["shard"]),
    ("edges", &["http", "socket", "ingest", "bot", "sim"]),
    ("process", &["server", "control", "demo"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module → the other top-level modules its files name as `crate::<module>`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if first == "lib" || first == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(first.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            // `lantern::x` in doc examples and `$crate::` in macros are not imports here.
            if text[..i].ends_with('$') {
                continue;
            }
            let name: String = text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != first {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn every_top_level_module_has_a_layer() {
    let unplaced: Vec<String> = imports().into_keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "modules with no layer in tests/layers.rs: {unplaced:?}");
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let mut upward = Vec::new();
    for (module, deps) in imports() {
        let Some(own) = layer_of(&module) else { continue };
        for dep in deps {
            if let Some(theirs) = layer_of(&dep) {
                if theirs > own {
                    upward.push(format!("{module} ({}) -> {dep} ({})", LAYERS[own].0, LAYERS[theirs].0));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up a layer: {upward:#?}");
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let graph = imports();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(node: &str, graph: &BTreeMap<String, BTreeSet<String>>, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
