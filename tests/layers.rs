//! The runtime's layers import downwards only: every `crate::` path in
//! `pipeline-runtime/src` names a module of the file's own layer or a lower one, as the module
//! map in `pipeline-runtime/src/lib.rs` lays them out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The layer of each module, read from the module map's table in lib.rs's docs.
fn layers(lib_rs: &str) -> HashMap<String, u32> {
    let mut layers = HashMap::new();
    for line in lib_rs.lines() {
        let Some(row) = line.strip_prefix("//! | ") else { continue };
        let mut cells = row.split(" | ");
        let (Some(layer), Some(modules)) = (cells.next(), cells.next()) else { continue };
        let Some(Ok(layer)) = layer.split_whitespace().next().map(str::parse::<u32>) else {
            continue;
        };
        for module in modules.split(", ") {
            layers.insert(module.trim().trim_matches('`').to_owned(), layer);
        }
    }
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The module a source file belongs to: its first path component (`recorder/stack.rs` is
/// `recorder`), with `private.rs` being `__private`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first.trim_end_matches(".rs") {
        "lib" => None,
        "private" => Some("__private".to_owned()),
        module => Some(module.to_owned()),
    }
}

/// The code of a file without its comments (doc links are not imports).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `crate::` paths name: `crate::a::b`, and each path in
/// `crate::{a, b::c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut modules = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut at_path_start = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && c == ',' {
                    if !name.is_empty() {
                        modules.push(std::mem::take(&mut name));
                    }
                    at_path_start = true;
                    continue;
                }
                if at_path_start {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                    } else if !name.is_empty() {
                        modules.push(std::mem::take(&mut name));
                        at_path_start = false;
                    }
                }
            }
            if !name.is_empty() {
                modules.push(name);
            }
        } else {
            let name: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            modules.push(name);
        }
    }
    modules
}

#[test]
fn every_module_imports_from_its_own_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline-runtime/src");
    let layers = layers(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(layers.len() >= 15, "the module map's table was not found: {layers:?}");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let layer = *layers
            .get(&module)
            .unwrap_or_else(|| panic!("`{module}` is missing from the module map in lib.rs"));
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&code(&text)) {
            // Items of the crate root (`crate::Error`, re-exports) are not modules.
            let Some(&used_layer) = layers.get(&used) else { continue };
            if used_layer > layer {
                violations.push(format!(
                    "{} (`{module}`, layer {layer}) uses `crate::{used}` (layer {used_layer})",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layers:\n{}", violations.join("\n"));
}

#[test]
fn the_checker_finds_grouped_and_inline_paths_and_skips_comments() {
    let text = "use crate::{a, b::{c, d}, e};\n// crate::f in a comment\nlet x = crate::g::h();";
    assert_eq!(crate_paths(&code(text)), ["a", "b", "e", "g"]);
    let table = "//! | 2 outputs | `profiler`, `report` | the session |\n//! | --- | --- | --- |";
    let layers = layers(table);
    assert_eq!((layers["profiler"], layers["report"], layers.len()), (2, 2, 2));
}
