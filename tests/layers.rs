//! The shape of `src/`, checked: no import circle between top-level modules, no lower
//! layer importing `config`, no source file over 600 lines (docs/design.md, "Module
//! map"). Reads the sources as text: every `crate::<module>` path outside comments,
//! including the names inside `use crate::{a, b::c}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers below `config`: they are configured by it and must not import it.
const BELOW_CONFIG: [&str; 14] = [
    "store", "source", "pipeline", "crypto", "digest", "pipe", "manifest", "signing", "notify",
    "metrics", "retry", "units", "names", "https",
];

const MAX_LINES: usize = 600;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/store/s3/auth.rs` -> `store`); `None`
/// for the crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules `code` names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `vault_crate::` or similar, not a path of ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the names at the group's top level.
            let mut depth = 0;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if at_start && !item.is_empty() {
                            out.insert(std::mem::take(&mut item));
                        }
                        at_start = true;
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        item.push(c);
                    } else if !item.is_empty() {
                        out.insert(std::mem::take(&mut item));
                        at_start = false;
                    }
                }
            }
            if at_start && !item.is_empty() {
                out.insert(item);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Every top-level module's imports of other top-level modules.
fn graph() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        let edges = graph.entry(from.clone()).or_default();
        for to in imports(&fs::read_to_string(&file).unwrap()) {
            if to != from && to != "self" && to != "super" {
                edges.entry(to).or_default().push(shown.clone());
            }
        }
    }
    graph
}

/// A circle through `start`, if there is one: the modules along it.
fn circle(
    graph: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    start: &str,
) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).map(|e| e.keys()).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let graph = graph();
    assert!(graph.contains_key("store") && graph.contains_key("config"));
    let mut circles = Vec::new();
    for module in graph.keys() {
        if let Some(path) = circle(&graph, module) {
            let steps: Vec<String> = path
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let next = path.get(i + 1).unwrap_or(&path[0]);
                    format!("{m} -> {next} (in {})", graph[m][next].join(", "))
                })
                .collect();
            circles.push(steps.join("; "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_layers_below_config_do_not_import_it() {
    let graph = graph();
    let offenders: Vec<String> = BELOW_CONFIG
        .iter()
        .filter_map(|m| {
            let files = graph.get(*m)?.get("config")?;
            Some(format!("{m} imports config in {}", files.join(", ")))
        })
        .collect();
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn no_source_file_is_over_600_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these by concept: {}",
        long.join(", ")
    );
}

#[test]
fn the_import_reader_sees_every_form() {
    let code = "use crate::a::B;\nuse crate::{c, d::E, f::{g, h}};\n// crate::commented\n\
                let x = crate::i::j();\nuse crate::{\n    k,\n    l::{m, n},\n};\n";
    let found: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(found, ["a", "c", "d", "f", "i", "k", "l"]);
}
