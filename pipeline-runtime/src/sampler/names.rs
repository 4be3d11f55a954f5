//! One name per function: a sampled frame spelled the way the report, the trace and the metrics
//! spell it (`module::function`), whatever the debug info gave.
//!
//! A function the compiler kept whole is named by its symbol, with its module path
//! (`launch_day::run_model`). One inlined into its caller is named by its debug info, which in
//! line-tables-only builds (and often otherwise) has no path at all (`run_model`, or
//! `submit<launch_day::Order, …>` with its generic arguments). Both become the same name: the
//! module path is found from the source file (a `#[stage]` or `#[profiled]` annotation in that
//! file says which module it is; a crate's own `src/` tree says it for the toolkit and for
//! crates from the registry), and a function's own generic arguments are dropped, since a
//! symbol's name does not carry them either.

use std::path::Path;

use crate::callsite::CallsiteKind;

/// What the annotations in each source file say about its module and functions.
pub(crate) struct Qualifier {
    files: Vec<AnnotatedFile>,
}

/// A source file with at least one annotated stage or function.
struct AnnotatedFile {
    /// As `file!()` gave it: relative to the package or workspace (`examples/launch_day.rs`)
    /// or absolute.
    file: &'static str,
    /// The module every annotation in the file named; `None` when they disagree (a file
    /// with inline `mod` blocks), and then none is guessed.
    module: Option<&'static str>,
    /// The report's names of the file's annotated functions (`launch_day::fraud_score`,
    /// `launch_day::Scorer::score`).
    functions: Vec<&'static str>,
}

impl Qualifier {
    /// From every stage and function annotated and called so far in the process.
    pub(crate) fn from_annotations() -> Self {
        let mut files: Vec<AnnotatedFile> = Vec::new();
        for site in crate::callsite::callsites() {
            let (file, _) = site.location();
            if file.is_empty() {
                continue; // a stage named at run time: no source of its own
            }
            let module = site.module_path();
            let at = match files.iter().position(|known| known.file == file) {
                Some(at) => at,
                None => {
                    files.push(AnnotatedFile { file, module: Some(module), functions: Vec::new() });
                    files.len() - 1
                }
            };
            let known = &mut files[at];
            if known.module.is_some_and(|seen| seen != module) {
                known.module = None;
            }
            if site.kind() == CallsiteKind::Function && !known.functions.contains(&site.name()) {
                known.functions.push(site.name());
            }
        }
        Qualifier { files }
    }

    /// The name of a function the debug info or the symbol table calls `raw`, defined in
    /// `file` when known.
    pub(crate) fn name(&self, raw: &str, file: Option<&Path>) -> String {
        let name = without_own_generics(raw);
        if has_path(name) {
            return name.to_owned();
        }
        let Some(file) = file else { return name.to_owned() };
        if let Some(annotated) = self.files.iter().find(|known| same_file(file, known.file)) {
            let mut same_name =
                annotated.functions.iter().filter(|f| f.rsplit("::").next() == Some(name));
            if let (Some(only), None) = (same_name.next(), same_name.next()) {
                return (*only).to_owned(); // the annotated function itself
            }
            if let Some(module) = annotated.module {
                return format!("{module}::{name}");
            }
        }
        match module_of_crate_file(file) {
            Some(module) => format!("{module}::{name}"),
            None => name.to_owned(),
        }
    }
}

/// `name` without the generic arguments of its last segment: `submit<Order, Envelope<Order>>`
/// and `core::submit::<Order>` read `submit` and `core::submit`; `<Vec<T> as Drop>::drop` keeps
/// its impl path (it says whose `drop`).
pub(crate) fn without_own_generics(name: &str) -> &str {
    if !name.ends_with('>') {
        return name;
    }
    let mut depth = 0usize;
    for (at, c) in name.char_indices().rev() {
        match c {
            '>' => depth += 1,
            '<' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if at == 0 {
                        return name; // the whole name is one `<…>`: not a function's arguments
                    }
                    let base = &name[..at];
                    return base.strip_suffix("::").unwrap_or(base);
                }
            }
            _ => {}
        }
    }
    name
}

/// Whether `name` has a path (`a::b`, `<A as B>::c`) rather than only a function's own name.
fn has_path(name: &str) -> bool {
    let mut depth = 0usize;
    let bytes = name.as_bytes();
    for (at, &c) in bytes.iter().enumerate() {
        match c {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(at + 1) == Some(&b':') => return true,
            _ => {}
        }
    }
    name.starts_with('<')
}

/// Whether the debug info's `path` is the file `file!()` called `annotated`.
fn same_file(path: &Path, annotated: &str) -> bool {
    let annotated = Path::new(annotated);
    if annotated.is_absolute() {
        return path == annotated;
    }
    path.ends_with(annotated)
}

/// A package directory's crate: `backtrace-0.3.76` is `backtrace` (everything before the
/// version).
pub(crate) fn crate_of_package(package: &str) -> &str {
    match package.rfind('-') {
        Some(at) if package[at + 1..].starts_with(|c: char| c.is_ascii_digit()) => &package[..at],
        _ => package,
    }
}

/// The module of a file in a crate's `src/` tree, for the toolkit's own crate, the standard
/// library's and crates from the registry: `…/pipeline-runtime/src/workers/core.rs` is `pipeline_runtime::workers::
/// core`, `…/hashbrown-0.15.2/src/map.rs` is `hashbrown::map`.
fn module_of_crate_file(file: &Path) -> Option<String> {
    let parts: Vec<String> =
        file.components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect();
    let src = parts.iter().rposition(|part| part == "src")?;
    let package = parts.get(src.checked_sub(1)?)?;
    let from_registry = parts.iter().any(|part| part == "registry");
    let standard_library = src >= 2 && parts[src - 2] == "library";
    if !(from_registry || standard_library || package == "pipeline-runtime") {
        return None;
    }
    let mut module = crate_of_package(package).replace('-', "_");
    let inside = &parts[src + 1..];
    for (at, part) in inside.iter().enumerate() {
        let last = at + 1 == inside.len();
        let part = if last { part.strip_suffix(".rs")? } else { part.as_str() };
        if last && ["lib", "main", "mod"].contains(&part) {
            break;
        }
        module.push_str("::");
        module.push_str(part);
    }
    Some(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(
        file: &'static str,
        module: &'static str,
        functions: &[&'static str],
    ) -> Qualifier {
        Qualifier {
            files: vec![AnnotatedFile {
                file,
                module: Some(module),
                functions: functions.to_vec(),
            }],
        }
    }

    #[test]
    fn an_inlined_function_gets_the_module_path_its_file_is_annotated_with() {
        let names = annotated(
            "examples/launch_day.rs",
            "launch_day",
            &["launch_day::fraud_score", "launch_day::Scorer::score"],
        );
        let file = Some(Path::new("/work/main/examples/launch_day.rs"));
        assert_eq!(names.name("fraud_score", file), "launch_day::fraud_score");
        assert_eq!(names.name("score", file), "launch_day::Scorer::score");
        assert_eq!(names.name("run_model", file), "launch_day::run_model");
        assert_eq!(names.name("launch_day::run_model", None), "launch_day::run_model");
        // Another file's function of the same name is not taken for it.
        let other = Some(Path::new("/work/main/examples/other_launch_day.rs"));
        assert_eq!(names.name("fraud_score", other), "fraud_score");
    }

    #[test]
    fn crates_name_their_modules_by_their_source_tree() {
        let names = annotated("src/main.rs", "app", &[]);
        let runtime = Path::new("/work/main/pipeline-runtime/src/workers/core.rs");
        assert_eq!(
            names.name("submit<launch_day::Order, Envelope<Order>>", Some(runtime)),
            "pipeline_runtime::workers::core::submit"
        );
        let registry =
            Path::new("/root/.cargo/registry/src/index.crates.io-1/hashbrown-0.15.2/src/map.rs");
        assert_eq!(names.name("insert<u64>", Some(registry)), "hashbrown::map::insert");
        let lib = Path::new("/root/.cargo/registry/src/i/serde_json-1.0.1/src/lib.rs");
        assert_eq!(names.name("from_str", Some(lib)), "serde_json::from_str");
        let core = Path::new("/rustc/0123abc/library/core/src/str/mod.rs");
        assert_eq!(names.name("replace", Some(core)), "core::str::replace");
        // A user's file without annotations: no guess.
        assert_eq!(names.name("helper", Some(Path::new("/work/app/src/util.rs"))), "helper");
    }

    #[test]
    fn a_functions_own_generic_arguments_go_and_impl_paths_stay() {
        assert_eq!(without_own_generics("submit<A, B<C>>"), "submit");
        assert_eq!(without_own_generics("app::core::submit::<A>"), "app::core::submit");
        assert_eq!(without_own_generics("{closure#1}<Order, Map<Range<u64>>>"), "{closure#1}");
        assert_eq!(
            without_own_generics("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"),
            "<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"
        );
        assert_eq!(without_own_generics("<T as app::Trait<u8>>"), "<T as app::Trait<u8>>");
        assert!(has_path("<app::Fraud as pipeline_runtime::Stage<u8>>::process"));
        assert!(!has_path("send<pipeline_runtime::workers::core::Envelope<Order>>"));
    }
}
