//! The layering checker: reads the sources as text and reports every import that breaks the
//! rules ARCHITECTURE.md states.
//!
//! - Each top-level module of `src/` may import only the modules its entry in [`ALLOWED`]
//!   lists; leaves import only leaves.
//! - Inside a folder, the files (its `mod.rs`, the folder's face, aside) never import each other
//!   in a loop.
//! - No source file is longer than [`MAX_LINES`].
//!
//! Test code (a `#[cfg(test)]` block at the end of a file, a file declared under
//! `#[cfg(test)]`) and comments are not read: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may be.
pub const MAX_LINES: usize = 600;

/// Modules that import no layer, only other leaves.
pub const LEAVES: &[&str] = &[
    "args",
    "blocking",
    "clients",
    "clock",
    "command_table",
    "config",
    "glob",
    "net",
    "peers",
    "protocol",
    "reply",
    "sabotage",
    "slot",
    "stats",
];

/// Each layer and what it may import besides the leaves, from the top down.
pub const ALLOWED: &[(&str, &[&str])] = &[
    ("main", &["app"]),
    (
        "app",
        &[
            "server",
            "connection",
            "commands",
            "node",
            "state_machine",
            "wasm",
            "keyspace",
            "replication",
        ],
    ),
    ("server", &["connection", "commands"]),
    ("connection", &["commands"]),
    ("commands", &["node"]),
    (
        "node",
        &["state_machine", "wasm", "keyspace", "replication"],
    ),
    ("state_machine", &["wasm", "keyspace", "replication"]),
    ("wasm", &["keyspace"]),
    ("keyspace", &[]),
    ("replication", &[]),
];

/// One source file as the checker reads it.
#[derive(Debug)]
struct Source {
    /// Path relative to the crate root, e.g. `src/node/routing.rs`.
    path: PathBuf,
    /// The top-level module it belongs to (`node`), or `lib` / `main`.
    module: String,
    /// Its code without comments and without its test tail.
    code: String,
}

/// What the checker found wrong; empty when the tree follows the rules.
pub fn violations(root: &Path) -> Vec<String> {
    let sources = read_tree(root);
    let mut found = Vec::new();
    layer_violations(&sources, &mut found);
    sibling_cycles(&sources, &mut found);
    found
}

/// Files longer than [`MAX_LINES`] under `dirs` (relative to `root`), `target/` skipped.
pub fn long_files(root: &Path, dirs: &[&str]) -> Vec<String> {
    let mut long = Vec::new();
    for dir in dirs {
        for path in rust_files(&root.join(dir)) {
            let lines = std::fs::read_to_string(&path)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if lines > MAX_LINES {
                let shown = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                long.push(format!("{shown} has {lines} lines (at most {MAX_LINES})"));
            }
        }
    }
    long
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Reads `root/src`, leaving out test-only files and test tails.
fn read_tree(root: &Path) -> Vec<Source> {
    let src = root.join("src");
    let files = rust_files(&src);
    let test_only: BTreeSet<PathBuf> = files.iter().flat_map(|f| test_modules(f)).collect();
    files
        .into_iter()
        .filter(|f| !test_only.contains(f))
        .map(|path| {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            let inside = path.strip_prefix(&src).unwrap_or(&path);
            let first = inside.components().next().map_or(String::new(), |c| {
                c.as_os_str().to_string_lossy().into_owned()
            });
            let module = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            Source {
                path: relative,
                module,
                code: strip(&text),
            }
        })
        .collect()
}

/// The files of modules that `file` declares under `#[cfg(test)]`.
fn test_modules(file: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let dir = if file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
    {
        file.parent().map(Path::to_path_buf)
    } else {
        file.parent()
            .map(|p| p.join(file.file_stem().unwrap_or_default()))
    };
    let Some(dir) = dir else { return Vec::new() };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for pair in lines.windows(2) {
        if pair[0] == "#[cfg(test)]"
            && let Some(name) = pair[1]
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'))
        {
            out.push(dir.join(format!("{name}.rs")));
            out.push(dir.join(name).join("mod.rs"));
        }
    }
    out
}

/// The code of a file without comments and without the test block at its end (the first
/// `#[cfg(test)]` at the start of a line that is followed by a `mod` block).
fn strip(text: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if line.starts_with("#[cfg(test)]")
            && lines
                .get(i + 1)
                .is_some_and(|next| next.starts_with("mod ") && next.ends_with('{'))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The first identifiers after each occurrence of `prefix` (`crate::` → `node`, `keyspace`).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let boundary = at == 0
            || !rest.as_bytes()[at - 1].is_ascii_alphanumeric() && rest.as_bytes()[at - 1] != b'_';
        rest = &rest[at + prefix.len()..];
        if !boundary {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 {
            out.push(&rest[..end]);
        }
    }
    out
}

fn layer_violations(sources: &[Source], found: &mut Vec<String>) {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for source in sources {
        let module = source.module.as_str();
        if module == "lib" {
            continue;
        }
        let prefix = if module == "main" {
            "ferrite::"
        } else {
            "crate::"
        };
        let imported: BTreeSet<&str> = paths_after(&source.code, prefix).into_iter().collect();
        for target in imported {
            if target == module || target == "self" || target == "super" {
                continue;
            }
            let ok = if LEAVES.contains(&module) {
                LEAVES.contains(&target)
            } else if let Some(layer) = allowed.get(module) {
                LEAVES.contains(&target) || layer.contains(&target)
            } else {
                found.push(format!(
                    "{}: module '{module}' has no place in the layer table",
                    source.path.display()
                ));
                break;
            };
            if !ok {
                found.push(format!(
                    "{} ({module}) imports {target}, which its layer may not",
                    source.path.display()
                ));
            }
        }
    }
    // Leaves import leaves: no loop among them either.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources
        .iter()
        .filter(|s| LEAVES.contains(&s.module.as_str()))
    {
        for target in paths_after(&source.code, "crate::") {
            if target != source.module && LEAVES.contains(&target) {
                edges
                    .entry(source.module.clone())
                    .or_default()
                    .insert(target.to_owned());
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        found.push(format!(
            "leaves import each other in a loop: {}",
            cycle.join(" -> ")
        ));
    }
}

/// Loops among the files of one folder, its `mod.rs` aside.
fn sibling_cycles(sources: &[Source], found: &mut Vec<String>) {
    let mut by_dir: BTreeMap<PathBuf, Vec<&Source>> = BTreeMap::new();
    for source in sources {
        if let Some(dir) = source.path.parent() {
            by_dir.entry(dir.to_path_buf()).or_default().push(source);
        }
    }
    for (dir, files) in by_dir {
        let stem = |s: &Source| {
            s.path
                .file_stem()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned())
        };
        let siblings: BTreeSet<String> = files
            .iter()
            .map(|s| stem(s))
            .filter(|n| n != "mod" && n != "lib" && n != "main")
            .collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let from = stem(file);
            if !siblings.contains(&from) {
                continue;
            }
            let module_prefix = format!("crate::{}::", file.module);
            let mut named: Vec<&str> = paths_after(&file.code, "super::");
            named.extend(paths_after(&file.code, &module_prefix));
            named.extend(grouped_super_imports(&file.code));
            for name in named {
                if name != from && siblings.contains(name) {
                    edges
                        .entry(from.clone())
                        .or_default()
                        .insert(name.to_owned());
                }
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            found.push(format!(
                "files of {} import each other in a loop: {}",
                dir.display(),
                cycle.join(" -> ")
            ));
        }
    }
}

/// The first name of each item of `use super::{a::X, b, c::{Y, Z}}` groups (`a`, `b`, `c`).
fn grouped_super_imports(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("super::{") {
        rest = &rest[at + "super::{".len()..];
        let mut depth = 1;
        let mut item_start = 0;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                ',' if depth == 1 => {
                    out.push(leading_name(&rest[item_start..i]));
                    item_start = i + 1;
                }
                _ => {}
            }
        }
        out.push(leading_name(&rest[item_start..end]));
        rest = &rest[end..];
    }
    out.retain(|n| !n.is_empty());
    out
}

fn leading_name(item: &str) -> &str {
    let item = item.trim();
    let end = item
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(item.len());
    &item[..end]
}

/// A loop in `edges`, as the names along it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}
