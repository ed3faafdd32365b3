//! The workspace's layout rules, checked on its sources with plain file reads (issue 17):
//! no file in `crates/*/src` over [`MAX_LINES`] lines, and no import cycle between the
//! top-level modules of a crate.
//!
//! The module graph of a crate has an edge `a -> b` when a file of module `a` names
//! `crate::b` (also inside `use crate::{b, ...}`, or through a name the crate root
//! re-exports from `b`), or `super::b` from the file of `a` itself. Comments, doc comments
//! (intra-doc links included), string literals and `#[cfg(test)]` items do not count: test
//! code does not shape the crate. Files are found by following `mod` declarations from
//! `lib.rs` or `main.rs`, as the compiler does, so a test module's files are known as such.
//!
//! Layout: `tokens` (Rust source without comments), `scan` (one file's declarations and
//! references), `cycles` (cycles of a module graph); this file reads the workspace, builds
//! each crate's graph and holds the checks.

mod cycles;
mod scan;
mod tokens;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use cycles::{Graph, describe_cycles};
use scan::{Scanned, scan};

/// The most lines a source file may have (issue 17's "Done when").
const MAX_LINES: usize = 700;
/// The fewest crates and files the checks must have read, so that a broken walk fails.
const MIN_CRATES: usize = 5;
const MIN_FILES: usize = 100;
/// The fewest module edges the workspace must show, so that a broken scanner fails.
const MIN_EDGES: usize = 20;

/// One `.rs` file of a crate's `src`.
struct SourceFile {
    /// Relative to the workspace root.
    path: PathBuf,
    lines: usize,
    scanned: Scanned,
    /// Its module path from the crate root (empty for the root itself); `None` until the
    /// walk from the root reaches it.
    module: Option<Vec<String>>,
    /// Reached only through a `#[cfg(test)]` module.
    test: bool,
}

struct Crate {
    name: String,
    files: Vec<SourceFile>,
}

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test-kit lives in the workspace")
        .to_path_buf();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("the root Cargo.toml");
    assert!(
        manifest.contains("[workspace]"),
        "{} is no workspace",
        root.display()
    );
    root
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Reads every crate in `crates/` and places each file in its crate's module tree.
fn read_workspace() -> Vec<Crate> {
    let root = workspace_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("the crates folder")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|dir| {
            let mut paths = Vec::new();
            rust_files(&dir.join("src"), &mut paths);
            let files = paths
                .into_iter()
                .map(|path| {
                    let text = std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                    SourceFile {
                        path: path.strip_prefix(&root).expect("inside").to_path_buf(),
                        lines: text.lines().count(),
                        scanned: scan(&text),
                        module: None,
                        test: false,
                    }
                })
                .collect();
            let mut krate = Crate {
                name: dir
                    .file_name()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned(),
                files,
            };
            place_modules(
                &mut krate,
                dir.join("src").strip_prefix(&root).expect("inside"),
            );
            krate
        })
        .collect()
}

/// Follows `mod` declarations from `lib.rs` and `main.rs`, as the compiler finds files.
fn place_modules(krate: &mut Crate, src: &Path) {
    let index: BTreeMap<PathBuf, usize> = krate
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.clone(), i))
        .collect();
    // (file, module path, test only, reached through a #[path] attribute)
    let mut queue: VecDeque<(usize, Vec<String>, bool, bool)> = ["lib.rs", "main.rs"]
        .iter()
        .filter_map(|root| index.get(&src.join(root)))
        .map(|&i| (i, Vec::new(), false, false))
        .collect();
    while let Some((i, module, test, via_path)) = queue.pop_front() {
        let file = &mut krate.files[i];
        if file.module.is_some() {
            continue;
        }
        let test = test || file.scanned.test_only;
        file.module = Some(module.clone());
        file.test = test;
        let path = file.path.clone();
        let dir = path.parent().expect("a folder").to_path_buf();
        let stem = path
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        // A root, a mod.rs or a #[path] file holds its children in its own folder.
        let owns_dir = via_path || matches!(stem.as_str(), "lib" | "main" | "mod");
        let children_dir = if owns_dir {
            dir.clone()
        } else {
            dir.join(&stem)
        };
        for decl in &krate.files[i].scanned.mods {
            let candidates = match &decl.path {
                Some(p) => vec![dir.join(p)],
                None => vec![
                    children_dir.join(format!("{}.rs", decl.name)),
                    children_dir.join(&decl.name).join("mod.rs"),
                ],
            };
            let mut child = module.clone();
            child.push(decl.name.clone());
            if let Some(&c) = candidates.iter().find_map(|p| index.get(&normalize(p))) {
                queue.push_back((c, child, test || decl.test, decl.path.is_some()));
            }
        }
    }
}

/// `a/b/../c` as `a/c` (for `#[path]` values).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The graph of a crate's top-level modules (test files left out).
fn module_graph(krate: &Crate) -> Graph {
    let tops: BTreeSet<&str> = krate
        .files
        .iter()
        .filter_map(|f| f.module.as_ref()?.first().map(String::as_str))
        .collect();
    // Names the crate root brings in from a top-level module (`pub use session::Session`).
    let mut reexports: BTreeMap<&str, &str> = BTreeMap::new();
    for f in &krate.files {
        if f.module.as_ref().is_some_and(Vec::is_empty) {
            for (name, first) in &f.scanned.uses {
                if tops.contains(first.as_str()) && !tops.contains(name.as_str()) {
                    reexports.insert(name, first);
                }
            }
        }
    }
    let mut graph = Graph::new();
    for f in &krate.files {
        let Some(module) = &f.module else { continue };
        let Some(from) = module.first() else { continue };
        if f.test {
            continue;
        }
        for r in &f.scanned.references {
            // `super::x` names a top-level module only from a top-level module's own file.
            if r.supers != 0 && r.supers != module.len() {
                continue;
            }
            let (to, via) = if tops.contains(r.first.as_str()) {
                (r.first.as_str(), String::new())
            } else if let Some(&to) = reexports.get(r.first.as_str()) {
                (to, format!(", re-exported from {to}"))
            } else {
                continue;
            };
            if to == from {
                continue;
            }
            let prefix = if r.supers == 0 { "crate" } else { "super" };
            graph
                .entry(from.clone())
                .or_default()
                .entry(to.to_owned())
                .or_insert_with(|| {
                    format!(
                        "{}:{}: {prefix}::{}{via}",
                        f.path.display(),
                        r.line,
                        r.first
                    )
                });
        }
    }
    graph
}

/// That the checks read the workspace, not an empty or misplaced folder.
fn assert_looked(crates: &[Crate]) {
    let files: usize = crates.iter().map(|c| c.files.len()).sum();
    assert!(
        crates.len() >= MIN_CRATES,
        "read {} crates in crates/, expected at least {MIN_CRATES}",
        crates.len()
    );
    assert!(
        files >= MIN_FILES,
        "read {files} files in crates/*/src, expected at least {MIN_FILES}"
    );
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let crates = read_workspace();
    assert_looked(&crates);
    let long: Vec<String> = crates
        .iter()
        .flat_map(|c| &c.files)
        .filter(|f| f.lines > MAX_LINES)
        .map(|f| format!("{}: {} lines", f.path.display(), f.lines))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by job):\n{}",
        long.join("\n")
    );
}

#[test]
fn no_import_cycle_between_the_top_level_modules_of_a_crate() {
    let crates = read_workspace();
    assert_looked(&crates);
    // Every file must be in its crate's module tree, else the walk missed a declaration.
    let lost: Vec<String> = crates
        .iter()
        .flat_map(|c| &c.files)
        .filter(|f| f.module.is_none())
        .map(|f| f.path.display().to_string())
        .collect();
    assert!(
        lost.is_empty(),
        "files no `mod` declaration reaches:\n{}",
        lost.join("\n")
    );
    let mut edges = 0;
    let mut found = Vec::new();
    for krate in &crates {
        let graph = module_graph(krate);
        edges += graph.values().map(BTreeMap::len).sum::<usize>();
        found.extend(describe_cycles(&krate.name, &graph));
    }
    assert!(
        edges >= MIN_EDGES,
        "found {edges} edges between modules, expected at least {MIN_EDGES}"
    );
    assert!(
        found.is_empty(),
        "import cycles between top-level modules (each edge with one reference):\n{}",
        found.join("\n")
    );
}
