//! Rules of the code base that a test enforces: no unbounded queue anywhere in `src/`; the
//! top-level modules form layers along the data flow and import only the layers below them;
//! no source file grows past a size a reader can hold; `main.rs` stays thin; every folder's
//! `mod.rs` names its files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules of `src/`, lowest first. A module may import (`crate::…`) only modules
/// that come before it; docs/ARCHITECTURE.md ("Layout") explains each one.
const LAYERS: [&str; 15] = [
    "base", "market", "wire", "queue", "persist", "feed", "relay", "consumer", "serve", "bridge",
    "sim", "export", "config", "run", "cli",
];

/// Most lines of a source file before its `#[cfg(test)] mod …` (its production part).
const MAX_PRODUCTION_LINES: usize = 800;

/// Most lines of `src/main.rs`.
const MAX_MAIN_LINES: usize = 250;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&crate::util::repo("src"), &mut files);
    assert!(files.len() > 10);
    files.sort();
    files
}

/// The line without a `//` comment (good enough for Rust source: a `//` inside a string literal
/// only hides the rest of that line).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

#[test]
fn no_unbounded_queue_in_src() {
    // Constructors of queues that grow without limit.
    let forbidden = [
        "unbounded(",
        "unbounded::<",
        "mpsc::channel(",
        "mpsc::channel::<",
        "SegQueue",
    ];
    let mut hits = Vec::new();
    for f in src_files() {
        for (n, line) in fs::read_to_string(&f).unwrap().lines().enumerate() {
            if forbidden.iter().any(|p| code(line).contains(p)) {
                hits.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "unbounded queues are not allowed:\n{}",
        hits.join("\n")
    );
}

/// The top-level module a file of `src/` belongs to (`src/feed/venue/binance.rs` → `feed`);
/// `None` for the crate roots.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(stem) => Some(stem.to_owned()),
        None => Some(first),
    }
}

/// Every top-level module named right after `crate::` in `text`, including inside
/// `use crate::{a::X, b}` groups and in comments: a doc link (`[`crate::x`]`) is a reference
/// rustdoc resolves, and a comment that points up the layers is a dependency in the reader's head.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let preceded_by_ident = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        rest = &rest[i + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Names at the group's top level: after `{` and after each `,` at depth 0.
            let mut depth = 0;
            let mut at_item = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_item = true,
                    c if at_item && (c.is_alphanumeric() || c == '_') => {
                        let name: String = group[j..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        out.insert(name);
                        at_item = false;
                    }
                    _ => {}
                }
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

#[test]
fn crate_path_parser_sees_groups_and_doc_links() {
    let got = crate_paths(
        "use crate::{base::clock, market::{bars::Bar, event}};\n\
         /// see [`crate::cli`]\n\
         let x = crate::wire::protocol::encode(); $crate::queue\n",
    );
    let want: BTreeSet<String> = ["base", "cli", "market", "wire"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn top_level_modules_import_only_the_layers_below() {
    let src = crate::util::repo("src");
    let mut tops = BTreeSet::new();
    let mut violations = Vec::new();
    for f in src_files() {
        let Some(top) = top_module(&src, &f) else {
            continue;
        };
        let Some(rank) = LAYERS.iter().position(|l| *l == top) else {
            panic!(
                "{}: top-level module `{top}` is not in LAYERS (tests/it/hygiene.rs); \
                 place it in the data flow",
                f.display()
            );
        };
        tops.insert(top.clone());
        for used in crate_paths(&fs::read_to_string(&f).unwrap()) {
            if used == top {
                continue;
            }
            match LAYERS.iter().position(|l| *l == used) {
                Some(r) if r < rank => {}
                Some(_) => violations.push(format!(
                    "{}: `{top}` imports `crate::{used}`, which is not below it",
                    f.display()
                )),
                // `crate::SomeItem` at the root (none today) or a macro path: not a module.
                None => {}
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports must point down the data flow ({}):\n{}",
        LAYERS.join(" < "),
        violations.join("\n")
    );
    assert!(tops.len() <= LAYERS.len());
}

#[test]
fn source_files_stay_readable() {
    let mut long = Vec::new();
    for f in src_files() {
        let text = fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let production = lines
            .iter()
            .enumerate()
            .position(|(i, l)| {
                l.trim() == "#[cfg(test)]"
                    && lines
                        .get(i + 1)
                        .is_some_and(|n| n.trim_start().starts_with("mod ") || n.contains(" mod "))
            })
            .unwrap_or(lines.len());
        if production > MAX_PRODUCTION_LINES {
            long.push(format!("{}: {production} lines", f.display()));
        }
    }
    assert!(
        long.is_empty(),
        "production parts over {MAX_PRODUCTION_LINES} lines (split them at their seams):\n{}",
        long.join("\n")
    );
    let main = fs::read_to_string(crate::util::repo("src/main.rs")).unwrap();
    assert!(
        main.lines().count() <= MAX_MAIN_LINES,
        "src/main.rs only parses, dispatches and maps errors ({} lines, at most {MAX_MAIN_LINES})",
        main.lines().count()
    );
}

#[test]
fn every_folder_lists_its_files() {
    // A `mod.rs` (or `lib.rs`) opens with `//!` lines that name each file and folder beside it,
    // so that a reader finds where a thing lives without opening them all.
    let mut missing = Vec::new();
    let mut dirs = vec![crate::util::repo("src")];
    while let Some(dir) = dirs.pop() {
        let index = if dir == crate::util::repo("src") {
            dir.join("lib.rs")
        } else {
            dir.join("mod.rs")
        };
        let Ok(text) = fs::read_to_string(&index) else {
            continue;
        };
        let doc: String = text
            .lines()
            .filter(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_str().unwrap().to_owned();
            if p.is_dir() {
                dirs.push(p.clone());
            } else if p.extension().is_none_or(|x| x != "rs")
                || ["mod", "lib", "main"].contains(&name.as_str())
            {
                continue;
            }
            let named = [
                format!("`{name}`"),
                format!("`{name}.rs`"),
                format!("`{name}/`"),
                format!("[`{name}`]"),
            ];
            if !named.iter().any(|n| doc.contains(n.as_str())) {
                missing.push(format!("{} does not name `{name}`", index.display()));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
