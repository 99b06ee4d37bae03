//! The module tree follows the data: no module of `instance/src` names one that lies downstream of it, so there are
//! no import cycles between the top-level modules. Run alone with `cargo test -p canal-instance --test layering`.
//!
//! The order below is the pipeline (source → schema → convert → store → meta → server), with the foundations before
//! it and the wiring after it. A module may use its own layer and the ones above it in the list, never one below.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules, upstream first. Modules on one line are peers and must not use each other.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["protocol"],
    &["ha"],
    &["binlog"],
    &["schema"],
    &["convert"],
    &["store"],
    &["meta"],
    &["observe"],
    &["server"],
    &["sink"],
    &["config"],
    &["client"],
    &["instance", "decode"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to: `binlog/source.rs` and `binlog/mod.rs` are `binlog`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::<module>` a file names, in code and in doc links alike.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        match name.as_str() {
            "" => {}
            // The crate root re-exports the error type.
            "Error" | "Result" => {
                found.insert("error".to_string());
            }
            _ => {
                found.insert(name);
            }
        }
        rest = after;
    }
    found
}

#[test]
fn no_module_uses_one_downstream_of_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut unplaced = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unplaced.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        for used in named_modules(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(_) => violations.push(format!(
                    "{} (module `{module}`) uses `crate::{used}`, which is not upstream of it",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                None => {
                    unplaced.insert(used);
                }
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules missing from LAYERS in tests/layering.rs: {unplaced:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against the data flow:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_a_downstream_import() {
    let names = named_modules("use crate::server::destination::Destination;\n/// see [`crate::store`]");
    assert_eq!(names, BTreeSet::from(["server".to_string(), "store".to_string()]));
    assert!(layer_of("server") > layer_of("store"));
}
