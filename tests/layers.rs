//! The runtime's modules import in one direction only: every path in `pipeline-runtime/src` that
//! leaves its own module (`crate::x`, a root re-export such as `crate::Report`, or `super::`
//! climbing out of it) names a module of a lower layer, or of its own layer listed before it in
//! the module map in `pipeline-runtime/src/lib.rs`. That order inside a layer is what makes a
//! cycle impossible: two modules of one layer cannot each come before the other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a module stands: its layer, then its place in its layer's row of the module map.
type Rank = (u32, usize);

/// The rank of each module, read from the module map's table in lib.rs's docs.
fn ranks(lib_rs: &str) -> HashMap<String, Rank> {
    let mut ranks = HashMap::new();
    for line in lib_rs.lines() {
        let Some(row) = line.strip_prefix("//! | ") else { continue };
        let mut cells = row.split(" | ");
        let (Some(layer), Some(modules)) = (cells.next(), cells.next()) else { continue };
        let Some(Ok(layer)) = layer.split_whitespace().next().map(str::parse::<u32>) else {
            continue;
        };
        for (place, module) in modules.split(", ").enumerate() {
            ranks.insert(module.trim().trim_matches('`').to_owned(), (layer, place));
        }
    }
    ranks
}

/// The crate root's re-exports (`pub use report::Report;`, `pub use pipeline::{Stop, Pipeline};`):
/// the module each re-exported name comes from, so `crate::Report` counts as a use of `report`.
fn root_reexports(lib_rs: &str) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for line in code(lib_rs).lines() {
        let Some(path) = line.trim().strip_prefix("pub use ") else { continue };
        let path = path.trim_end_matches(';');
        let Some((module, items)) = path.split_once("::") else { continue };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.rsplit("::").next().unwrap().trim();
            let name = name.rsplit(" as ").next().unwrap().trim();
            if !name.is_empty() && name != "*" {
                names.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    names
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

/// The module a source file belongs to: its first path component (`call_stats/stack.rs` is
/// `call_stats`), with `private.rs` being `__private`.
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

/// The module path of a source file: `call_stats/stack.rs` is `call_stats::stack`, `trace/native/mod.rs`
/// is `trace::native`, `clock.rs` is `clock`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap();
    let mut path: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_str().unwrap().trim_end_matches(".rs").to_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The top-level modules that `super::` paths reach when they climb out of the file's own
/// module to the crate root: in `call_stats/stack.rs`, `super::super::trace::x` names `trace`.
/// (A chain that climbs as far only from inside an inline `mod tests` stops one level lower;
/// what it names is then not a top-level module and is ignored.)
fn super_paths(code: &str, depth: usize) -> Vec<String> {
    let mut modules = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("super::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            rest = &rest["super::".len()..];
            continue;
        }
        let mut climbs = 0;
        while let Some(after) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = after;
        }
        if climbs >= depth {
            let name: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            modules.push(name);
        }
    }
    modules
}

/// Every use across modules in the runtime's sources: (file, using module, used module).
fn cross_module_uses(
    src: &Path,
    reexports: &HashMap<String, String>,
) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut uses = Vec::new();
    for file in &files {
        let Some(module) = module_of(src, file) else { continue };
        let code = code(&std::fs::read_to_string(file).unwrap());
        let depth = module_path(src, file).len();
        let named = crate_paths(&code).into_iter().chain(super_paths(&code, depth));
        for used in named {
            let used = reexports.get(&used).cloned().unwrap_or(used);
            let used = if used == "private" { "__private".to_owned() } else { used };
            if used != module {
                let shown = file.strip_prefix(src).unwrap().display().to_string();
                uses.push((shown, module.clone(), used));
            }
        }
    }
    uses
}

/// The uses that go against the order: up a layer, or to a module of the same layer listed
/// after the user.
fn violations(ranks: &HashMap<String, Rank>, uses: &[(String, String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (file, module, used) in uses {
        let rank = *ranks
            .get(module)
            .unwrap_or_else(|| panic!("`{module}` is missing from the module map in lib.rs"));
        // Items of the crate root that are not re-exports (none today) and names inside string
        // literals are not modules.
        let Some(&used_rank) = ranks.get(used) else { continue };
        if used_rank > rank {
            let why = if used_rank.0 > rank.0 {
                "a higher layer"
            } else {
                "listed after it in its layer"
            };
            found.push(format!(
                "{file} (`{module}`, {rank:?}) uses `{used}` ({used_rank:?}): {why}"
            ));
        }
    }
    found
}

fn runtime_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline-runtime/src")
}

#[test]
fn every_module_imports_from_a_lower_layer_or_earlier_in_its_own() {
    let src = runtime_src();
    let lib_rs = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let ranks = ranks(&lib_rs);
    assert!(ranks.len() >= 25, "the module map's table was not found: {ranks:?}");
    let uses = cross_module_uses(&src, &root_reexports(&lib_rs));
    let violations = violations(&ranks, &uses);
    assert!(violations.is_empty(), "imports against the module order:\n{}", violations.join("\n"));
}

#[test]
fn a_cycle_inside_a_layer_is_caught() {
    let table = "//! | 0 recording | `clock`, `mode`, `call_stats` | x |";
    let ranks = ranks(table);
    let uses = |pairs: &[(&str, &str)]| -> Vec<(String, String, String)> {
        pairs.iter().map(|(a, b)| ("f.rs".to_owned(), a.to_string(), b.to_string())).collect()
    };
    assert!(violations(&ranks, &uses(&[("call_stats", "mode"), ("mode", "clock")])).is_empty());
    let cycle = violations(&ranks, &uses(&[("call_stats", "mode"), ("mode", "call_stats")]));
    assert_eq!(cycle.len(), 1, "{cycle:?}");
    assert!(cycle[0].contains("`mode`") && cycle[0].contains("listed after it"), "{cycle:?}");
}

#[test]
fn the_checker_finds_grouped_inline_reexported_and_super_paths_and_skips_comments() {
    let text = "use crate::{a, b::{c, d}, e};\n// crate::f in a comment\nlet x = crate::g::h();";
    assert_eq!(crate_paths(&code(text)), ["a", "b", "e", "g"]);
    let table = "//! | 2 outputs | `profiler`, `report` | the session |\n//! | --- | --- | --- |";
    let ranks = ranks(table);
    assert_eq!((ranks["profiler"], ranks["report"], ranks.len()), ((2, 0), (2, 1), 2));
    let lib = "pub use report::Report;\npub use pipeline::{Stop, Pipeline};\n// pub use x::Y;";
    let reexports = root_reexports(lib);
    assert_eq!((reexports["Report"].as_str(), reexports["Stop"].as_str()), ("report", "pipeline"));
    assert_eq!(reexports.len(), 3);
    let nested =
        "use super::shard::Row;\nuse super::super::trace::x;\nfn f() { super::super::super::y(); }";
    assert_eq!(super_paths(nested, 2), ["trace", "y"]);
}
