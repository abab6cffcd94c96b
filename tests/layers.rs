//! The crate's layers point only down: a module may use modules of the layers below its own,
//! never above; modules of one layer are independent of each other (except the CLI and its
//! load generator, one program). The table is the architecture drawn in `src/lib.rs`; this test reads every
//! source file and fails on every path that reaches up or sideways (`crate::x`, `crate::{x, ..}`, or a
//! `super::` chain that climbs out of its top-level module).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first.
const LAYERS: &[&[&str]] = &[
    &[
        "crypto",
        "time",
        "duration",
        "outcome",
        "policy",
        "telemetry",
    ],
    &["backend", "store"],
    &["escrow"],
    &["audit", "alarms", "cluster"],
    &["config"],
    &["service", "backup"],
    &["access"],
    &["api"],
    &["replication"],
    &["metrics"],
    &["aws"],
    &["server"],
    &["cli", "bench"],
];

/// Modules of one layer that are one piece and may use each other.
const ONE_PIECE: &[&str] = &["cli", "bench"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file below `src/`: `src/service/secrets/mod.rs` is `service::secrets`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().expect("a file name");
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules named by the paths in `code` (comments already removed).
fn targets(code: &str, module: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of a brace group: skip nested groups.
            let mut depth = 0;
            let mut expect_name = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expect_name = true,
                    c if expect_name && depth == 0 && (c.is_ascii_alphabetic() || c == '_') => {
                        found.insert(ident_at(&group[i..]).to_owned());
                        expect_name = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident_at(rest).to_owned());
        }
    }
    // `super::super::x` from deep inside a module can climb to the crate root.
    for (line_at, _) in code.match_indices("super::") {
        let preceded = code[..line_at].ends_with("super::");
        if preceded {
            continue;
        }
        let mut depth = 0;
        let mut tail = &code[line_at..];
        while let Some(next) = tail.strip_prefix("super::") {
            depth += 1;
            tail = next;
        }
        if depth >= module.len() {
            found.insert(ident_at(tail).to_owned());
        }
    }
    found
}

fn without_comments(source: &str) -> String {
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        if relative == Path::new("main.rs") {
            continue;
        }
        let module = module_path(relative);
        let Some(top) = module.first() else {
            continue; // lib.rs: the root declares every module.
        };
        let own = layer_of(top).unwrap_or_else(|| {
            panic!("module `{top}` is in no layer: add it to LAYERS in tests/layers.rs")
        });
        let code = without_comments(&std::fs::read_to_string(&file).expect("read source"));
        for target in targets(&code, &module) {
            if target == *top || target == "self" {
                continue;
            }
            match layer_of(&target) {
                Some(layer) if layer < own => {}
                Some(layer)
                    if layer == own
                        && ONE_PIECE.contains(&top.as_str())
                        && ONE_PIECE.contains(&target.as_str()) => {}
                Some(_) => upward.push(format!("{}: {top} uses {target}", relative.display())),
                None => {} // a crate-root item (a macro, `crate::Error`), not a module
            }
        }
    }
    assert!(
        upward.is_empty(),
        "uses that point up a layer or across one:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_scanner_sees_every_form_of_path() {
    let module = vec!["store".to_owned(), "records".to_owned()];
    let code = "use crate::{backend::KeyRef, crypto::{self, hex}};\n\
                let x = crate::service::thing();\n\
                use super::super::api::pb;\n\
                use super::Sibling;\n\
                my_crate::ignored();";
    let found: Vec<_> = targets(code, &module).into_iter().collect();
    assert_eq!(found, ["api", "backend", "crypto", "service"]);
    assert!(without_comments("// use crate::api;\nuse crate::store;").contains("store"));
    assert!(!without_comments("  //! see crate::api").contains("api"));
}
