//! Names for sampled addresses: each distinct address is resolved once (with the functions
//! inlined at it, when the binary has line tables), and each sample's call path is cut to what
//! ran inside its stage.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::marker::Marker;
use crate::recorder::{self, CallsiteId};

/// The frame shown for a sample taken inside the toolkit itself (the recorder between a stage's
/// calls): the profiler's own cost, charged to the stage it measured.
pub(crate) const RUNTIME_FRAME: &str = "(pipeline runtime)";

/// The end of the name of the method `#[stage]` moves a stage's `process` body to.
const STAGE_BODY: &str = "::__pipeline_stage_process";
/// Its name where it was inlined (debug info has no path for inlined functions).
const INLINED_STAGE_BODY: &str = "__pipeline_stage_process";

/// One distinct call path and how many samples found it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NamedStack {
    /// The stage the thread was in; `None` outside every stage.
    pub(crate) stage: Option<&'static str>,
    /// The innermost `#[profiled]` function inside that stage, if any.
    pub(crate) function: Option<&'static str>,
    /// Function names, outermost first. Inside a stage the path starts below the toolkit's own
    /// frames (the worker loop, `Stage::process`'s wrapper), at the user's code.
    pub(crate) frames: Vec<Arc<str>>,
    pub(crate) samples: u64,
}

/// A named path's identity: (stage, innermost profiled function, frames).
type PathKey = (Option<&'static str>, Option<&'static str>, Vec<Arc<str>>);

/// Names every (marker, addresses innermost first, count) and merges paths that read the same.
pub(crate) fn name<'a>(raw: impl Iterator<Item = (Marker, &'a [usize], u64)>) -> Vec<NamedStack> {
    let mut resolver = Resolver::default();
    let mut merged: HashMap<PathKey, u64> = HashMap::new();
    for (marker, addresses, count) in raw {
        let mut frames: Vec<Frame> = Vec::new();
        for (depth, &address) in addresses.iter().enumerate().rev() {
            // The interrupted address is exact; the others are return addresses, which the
            // resolver moves back by one byte into the call instruction.
            let exact = depth == 0;
            frames.extend(resolver.frames(address, exact).iter().cloned());
        }
        let stage = callsite_name(marker.stage);
        if stage.is_some() {
            frames = below_runtime(frames);
        }
        let mut names: Vec<Arc<str>> =
            without_std_library(frames).into_iter().map(|frame| frame.name).collect();
        if let Some(stage) = stage {
            // An inlined copy of the stage's body has only its short debug-info name.
            for name in names.iter_mut().filter(|name| &***name == INLINED_STAGE_BODY) {
                *name = resolver.intern(format!("{stage}::process"));
            }
        }
        *merged.entry((stage, callsite_name(marker.function), names)).or_default() += count;
    }
    let mut stacks: Vec<NamedStack> = merged
        .into_iter()
        .map(|((stage, function, frames), samples)| NamedStack { stage, function, frames, samples })
        .collect();
    stacks.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.frames.cmp(&b.frames)));
    stacks
}

fn callsite_name(id: CallsiteId) -> Option<&'static str> {
    (id != 0).then(|| recorder::lookup(id).name())
}

/// A function on a sampled stack.
#[derive(Clone, Debug, PartialEq)]
struct Frame {
    name: Arc<str>,
    /// The toolkit's own code.
    runtime: bool,
    /// The standard library's (core, alloc, std).
    std: bool,
}

/// Whether a function is the toolkit's own code: by its path, or for an inlined function
/// (whose debug-info name has no path) by its source file.
fn is_runtime(name: &str, file: Option<&Path>) -> bool {
    name.trim_start_matches('<').starts_with("pipeline_runtime::")
        || file.is_some_and(|file| {
            file.components().any(|part| {
                let part = part.as_os_str().to_string_lossy();
                part == "pipeline-runtime" || part.starts_with("pipeline-runtime-")
            })
        })
}

/// Whether a function is the standard library's (core, alloc, std), by its path or source file.
fn is_std_library(name: &str, file: Option<&Path>) -> bool {
    let name = name.trim_start_matches('<');
    ["core::", "alloc::", "std::"].iter().any(|path| name.starts_with(path))
        || file.is_some_and(|file| {
            let file = file.to_string_lossy();
            ["/library/core/", "/library/alloc/", "/library/std/"]
                .iter()
                .any(|dir| file.contains(dir))
        })
}

/// The path without the standard library's functions, whose time is charged to the function
/// that called them: the loop's `next`, `black_box`, a `Vec`'s growth and drop glue are the
/// caller's work. A path made only of them keeps its innermost frame.
fn without_std_library(mut frames: Vec<Frame>) -> Vec<Frame> {
    let last = frames.pop();
    frames.retain(|frame| !frame.std);
    match last {
        Some(last) if !last.std || frames.is_empty() => frames.push(last),
        _ => {}
    }
    frames
}

/// The frames after the innermost frame of the toolkit: what the stage's own code called. A
/// sample inside the toolkit keeps one frame, [`RUNTIME_FRAME`].
fn below_runtime(frames: Vec<Frame>) -> Vec<Frame> {
    match frames.iter().rposition(|frame| frame.runtime) {
        Some(last) if last + 1 == frames.len() => {
            vec![Frame { name: Arc::from(RUNTIME_FRAME), runtime: true, std: false }]
        }
        Some(last) => frames[last + 1..].to_vec(),
        None => frames,
    }
}

/// The one `Arc` for `name`.
fn intern(interned: &mut HashMap<String, Arc<str>>, name: String) -> Arc<str> {
    Arc::clone(interned.entry(name).or_insert_with_key(|name| Arc::from(name.as_str())))
}

/// Resolves addresses to functions, each address once.
#[derive(Default)]
struct Resolver {
    cache: HashMap<(usize, bool), Vec<Frame>>,
    /// One `Arc` per distinct name.
    interned: HashMap<String, Arc<str>>,
}

impl Resolver {
    fn intern(&mut self, name: String) -> Arc<str> {
        intern(&mut self.interned, name)
    }

    /// The functions at `address`, outermost first: the function the address is in, then the
    /// ones inlined into it (when the binary has line tables).
    fn frames(&mut self, address: usize, exact: bool) -> &[Frame] {
        let Resolver { cache, interned } = self;
        cache.entry((address, exact)).or_insert_with(|| {
            // (name, source file), innermost first, as `resolve` reports them.
            let mut found: Vec<(String, Option<PathBuf>)> = Vec::new();
            // `resolve` looks up `address - 1`: right for a return address, one byte early
            // for the interrupted instruction.
            let lookup = if exact { address.wrapping_add(1) } else { address };
            backtrace::resolve(lookup as *mut std::ffi::c_void, |symbol| {
                let Some(name) = symbol.name() else { return };
                // `#[stage]` moves the user's `process` body to this hidden method.
                let name = format!("{name:#}");
                let name = match name.strip_suffix(STAGE_BODY) {
                    Some(owner) => format!("{owner}::process"),
                    None => name,
                };
                found.push((name, symbol.filename().map(Path::to_path_buf)));
            });
            if found.is_empty() {
                found.push((format!("{address:#x}"), None));
            }
            found
                .into_iter()
                .rev()
                .map(|(name, file)| {
                    let runtime = is_runtime(&name, file.as_deref());
                    let std = is_std_library(&name, file.as_deref());
                    // The toolkit's inlined functions say whose they are.
                    let name = if runtime && !name.contains("::") {
                        format!("pipeline_runtime::{name}")
                    } else {
                        name
                    };
                    let name = intern(interned, name);
                    Frame { name, runtime, std }
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(names: &[&str]) -> Vec<Frame> {
        names
            .iter()
            .map(|name| Frame {
                name: Arc::from(*name),
                runtime: is_runtime(name, None),
                std: is_std_library(name, None),
            })
            .collect()
    }

    #[test]
    fn a_stage_sample_keeps_what_ran_below_the_toolkit() {
        let path = frames(&[
            "std::sys::thread::start",
            "pipeline_runtime::workers::work",
            "<app::Fraud as pipeline_runtime::stage::Stage<app::Order>>::process",
            "<pipeline_runtime::__private::StageCall>::run",
            "app::Fraud::process",
            "app::score",
        ]);
        assert_eq!(below_runtime(path), frames(&["app::Fraud::process", "app::score"]));
    }

    #[test]
    fn a_sample_inside_the_toolkit_is_charged_to_it() {
        let path = frames(&["app::Fraud::process", "pipeline_runtime::recorder::stack::exit"]);
        let charged: Vec<Arc<str>> = below_runtime(path).into_iter().map(|f| f.name).collect();
        assert_eq!(charged, [Arc::from(RUNTIME_FRAME)]);
        let user_only = frames(&["app::main", "app::score"]);
        assert_eq!(below_runtime(user_only.clone()), user_only);
    }

    #[test]
    fn inlined_functions_are_told_apart_by_their_source_file() {
        let registry = Path::new("/home/u/.cargo/registry/src/x/pipeline-runtime-0.1.0/src/a.rs");
        assert!(is_runtime("enter<app::rank::{closure_env#0}>", Some(registry)));
        assert!(is_runtime(
            "exit",
            Some(Path::new("/work/pipeline-runtime/src/recorder/stack.rs"))
        ));
        assert!(!is_runtime("run_model", Some(Path::new("/work/app/src/model.rs"))));
        assert!(is_std_library("lt", Some(Path::new("/rustc/0123/library/core/src/cmp.rs"))));
        assert!(is_std_library("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop", None));
        assert!(!is_std_library("lt", Some(Path::new("/work/app/src/library/core.rs"))));
    }

    #[test]
    fn the_standard_library_is_charged_to_its_caller() {
        let path =
            frames(&["app::score", "core::iter::range::next", "app::mix", "core::hint::black_box"]);
        assert_eq!(without_std_library(path), frames(&["app::score", "app::mix"]));
        let only_std = frames(&["std::rt::lang_start", "std::thread::sleep"]);
        assert_eq!(without_std_library(only_std), frames(&["std::thread::sleep"]));
    }

    #[test]
    fn this_functions_own_address_resolves_to_its_name() {
        #[inline(never)]
        fn probe() -> usize {
            probe as *const () as usize
        }
        let mut resolver = Resolver::default();
        let found = resolver.frames(std::hint::black_box(probe)(), true).to_vec();
        assert!(
            found.iter().any(|frame| frame
                .name
                .contains("this_functions_own_address_resolves_to_its_name")),
            "{found:?}"
        );
    }
}
