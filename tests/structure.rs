//! The layering docs/architecture.md promises: no two modules of a crate
//! (`sluice`'s `src/`, and each `crates/*/src/`) import
//! each other, directly or through others. Read from the source
//! text (each file's `crate::`, `super::` and `self::` paths), so a new
//! cycle fails here with the modules that form it.
//!
//! A module may use what its ancestors define (a `mod.rs` is its
//! children's shared interface), so paths to an ancestor are not edges.
//! Unit-test modules (`tests.rs`, `tests/`) may reach anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path from the crate root: `["xds", "server"]`.
type ModPath = Vec<String>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "tests" {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            out.push(path);
        }
    }
}

/// `src/xds/server.rs` → `xds::server`; `src/xds/mod.rs` → `xds`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: ModPath = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text with comments, string literals and `#[cfg(test)]` modules
/// written inline (`mod tests { … }`) removed.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let line = line.split("//").next().unwrap_or("");
        if trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        let opens = line.matches('{').count();
        let closes = line.matches('}').count();
        if pending_cfg_test && skip_depth.is_none() && trimmed.starts_with("mod ") && opens > 0 {
            skip_depth = Some(depth);
        }
        if !trimmed.is_empty() {
            pending_cfg_test = false;
        }
        depth = depth + opens - closes.min(depth + opens);
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        // String literals may hold `crate::`-like text (docs, messages).
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Every path the code names from `crate`, `super` or `self`, as module
/// paths from the crate root (use-trees expanded).
fn referenced(module: &ModPath, code: &str) -> Vec<ModPath> {
    // `super` is the parent module, whether this one is `a/b.rs` or
    // `a/b/mod.rs`; `self` is this module.
    let here = module;
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let word_start = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        let root = if !word_start {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), 7))
        } else if rest.starts_with("super::") {
            Some((here[..here.len().saturating_sub(1)].to_vec(), 7))
        } else if rest.starts_with("self::") {
            Some((here.clone(), 6))
        } else {
            None
        };
        let Some((base, skip)) = root else {
            i += 1;
            continue;
        };
        let (paths, end) = parse_tree(&chars, i + skip, base);
        out.extend(paths);
        i = end.max(i + 1);
    }
    out
}

/// Parses `a::b::{c, d::e}` from `at`, appending segments to `prefix`;
/// returns the full paths and where parsing stopped.
fn parse_tree(chars: &[char], mut at: usize, mut prefix: ModPath) -> (Vec<ModPath>, usize) {
    loop {
        while at < chars.len() && chars[at].is_whitespace() {
            at += 1;
        }
        if at < chars.len() && chars[at] == '{' {
            let mut all = Vec::new();
            at += 1;
            loop {
                while at < chars.len() && (chars[at].is_whitespace() || chars[at] == ',') {
                    at += 1;
                }
                if at >= chars.len() || chars[at] == '}' {
                    return (all, at + 1);
                }
                let (sub, next) = parse_tree(chars, at, prefix.clone());
                all.extend(sub);
                at = next;
            }
        }
        let start = at;
        while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
            at += 1;
        }
        if start == at {
            return (vec![prefix], at);
        }
        let seg: String = chars[start..at].iter().collect();
        if seg == "super" {
            prefix.pop();
        } else if seg != "self" {
            prefix.push(seg);
        }
        if chars.get(at) == Some(&':') && chars.get(at + 1) == Some(&':') {
            at += 2;
        } else {
            return (vec![prefix], at);
        }
    }
}

/// The longest prefix of `path` that is a module with a file.
fn resolve<'a>(path: &ModPath, modules: &'a BTreeSet<ModPath>) -> Option<&'a ModPath> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n].to_vec()))
}

/// The crates' source directories, each with fewer modules than it has
/// (so a graph that was not read fails).
const CRATES: [(&str, usize); 5] = [
    ("src", 30),
    ("crates/sluice-core/src", 30),
    ("crates/sluice-discovery/src", 8),
    ("crates/sluice-sim/src", 30),
    ("crates/sluice-xds/src", 6),
];

/// The import graph of the crate whose sources are in `dir`.
fn graph(dir: &str) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).expect("read source");
        let targets = edges.entry(module.clone()).or_default();
        for path in referenced(&module, &code_of(&text)) {
            let Some(target) = resolve(&path, &modules) else {
                continue;
            };
            // A module may use what its ancestors define.
            if target != &module && !module.starts_with(target) {
                targets.insert(target.clone());
            }
        }
    }
    edges
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(
    edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    start: &ModPath,
) -> Option<Vec<ModPath>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let shown = |m: &ModPath| m.join("::");
    let mut cycles = Vec::new();
    for (dir, floor) in CRATES {
        let edges = graph(dir);
        assert!(
            edges.len() > floor,
            "the module graph of {dir} was not read ({} modules)",
            edges.len()
        );
        cycles.extend(edges.keys().filter_map(|m| cycle_from(&edges, m)).map(|c| {
            format!(
                "{dir}: {}",
                c.iter().map(shown).collect::<Vec<_>>().join(" -> ")
            )
        }));
    }
    assert!(
        cycles.is_empty(),
        "import cycles between modules:\n{}",
        cycles.join("\n")
    );
}

/// The reader itself: a known import is seen, so an empty graph cannot
/// pass the test above.
#[test]
fn the_reader_sees_known_imports() {
    let edges = graph("src");
    let core = graph("crates/sluice-core/src");
    let xds = graph("crates/sluice-xds/src");
    let m = |s: &str| s.split("::").map(str::to_string).collect::<ModPath>();
    let serve = &edges[&m("serve")];
    assert!(serve.contains(&m("admin")), "{serve:?}");
    let stream = &xds[&m("stream")];
    assert!(stream.contains(&m("published")), "{stream:?}");
    // `super::` from a file module: rules/route.rs names `super::check`.
    assert!(core[&m("rules::route")].contains(&m("rules::check")));
}

/// The arrows between crates docs/architecture.md draws: the simulator and
/// the I/O crates depend on `sluice-core` (and the generated Envoy gRPC
/// stubs) and on none of each other, so only the binary composes them
/// (cargo itself refuses a cycle back to `sluice`); the Envoy API crates
/// depend on no `sluice-*` crate (the messages come in as `envoy-types`).
/// Read from each manifest's `sluice-*` dependency lines.
#[test]
fn library_crates_depend_on_the_core_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed: [(&str, &[&str]); 6] = [
        ("sluice-core", &[]),
        ("sluice-discovery", &["sluice-core"]),
        ("sluice-envoy-api", &[]),
        ("sluice-envoy-grpc", &[]),
        ("sluice-sim", &["sluice-core", "sluice-envoy-grpc"]),
        ("sluice-xds", &["sluice-core", "sluice-envoy-grpc"]),
    ];
    for (name, may) in allowed {
        let manifest = root.join("crates").join(name).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("read manifest");
        let used: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.split([' ', '.', '=']).next())
            .filter(|dep| dep.starts_with("sluice-"))
            .collect();
        let may: BTreeSet<&str> = may.iter().copied().collect();
        assert!(
            used.is_subset(&may),
            "{name} depends on {:?}; it may depend on {may:?} only",
            used.difference(&may).collect::<Vec<_>>()
        );
    }
}
