//! Names for sampled addresses: each distinct address is resolved once (with the functions
//! inlined at it, when the binary has line tables), and each sample's call path is cut to what
//! ran inside its stage.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::marker::Marker;
use super::names::Qualifier;
use crate::callsite::CallsiteId;

/// The frame shown for a sample taken inside the toolkit itself (the recorder between a stage's
/// calls): the profiler's own cost, charged to the stage it measured.
pub(crate) const RUNTIME_FRAME: &str = "(pipeline runtime)";

/// The end of the name of the method `#[stage]` moves a stage's `process` body to.
const STAGE_BODY: &str = "::__pipeline_stage_process";
/// Its name where it was inlined (debug info has no path for inlined functions).
const INLINED_STAGE_BODY: &str = "__pipeline_stage_process";

/// Where a frame of a sampled stack was: source file and line, and the address for the
/// function the address lies in (0 for the functions inlined into it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct FrameLine {
    pub(crate) file: Option<Arc<str>>,
    /// 0 when unknown.
    pub(crate) line: u32,
    pub(crate) address: u64,
}

/// One distinct call path (by function and line) and how many samples found it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NamedStack {
    /// The stage the thread was in; `None` outside every stage.
    pub(crate) stage: Option<&'static str>,
    /// The innermost `#[profiled]` function inside that stage, if any.
    pub(crate) function: Option<&'static str>,
    /// Function names, outermost first. Inside a stage the path starts below the toolkit's own
    /// frames (the worker loop, `Stage::process`'s wrapper), at the user's code.
    pub(crate) frames: Vec<Arc<str>>,
    /// Where each frame was, in the same order.
    pub(crate) lines: Vec<FrameLine>,
    pub(crate) samples: u64,
    /// Where the path's own code ends: the index in `frames` of the innermost function that is
    /// not a library's (a shared library such as libm, or another crate), and when the path ends
    /// in a library, that library's name (`libm`). A sample in libm's `do_cos` called from the
    /// user's `risk_model` is `risk_model`'s time, spent in libm.
    pub(crate) own: OwnEnd,
}

/// A named path's identity: (stage, innermost profiled function, frames, their lines).
type PathKey = (Option<&'static str>, Option<&'static str>, Vec<Arc<str>>, Vec<FrameLine>);

/// Where a path's own code ends (see [`NamedStack::own`]).
type OwnEnd = Option<(usize, Option<Arc<str>>)>;

/// Names every (marker, addresses innermost first, count) and merges paths that read the same.
pub(crate) fn name<'a>(raw: impl Iterator<Item = (Marker, &'a [usize], u64)>) -> Vec<NamedStack> {
    let mut resolver = Resolver::new(Qualifier::from_annotations());
    let mut merged: HashMap<PathKey, (u64, OwnEnd)> = HashMap::new();
    for (marker, addresses, count) in raw {
        let mut frames: Vec<Frame> = Vec::new();
        for (depth, &address) in addresses.iter().enumerate().rev() {
            // The interrupted address is exact; the others are return addresses, which the
            // resolver moves back by one byte into the call instruction.
            let exact = depth == 0;
            frames.extend(resolver.frames(address, exact).iter().cloned());
        }
        let stage = callsite_name(marker.stage);
        if let Some(stage) = stage {
            frames = without_stage_wrapper(below_runtime(frames));
            // The stage's body is named as the report names the stage.
            for frame in frames.iter_mut().filter(|frame| frame.stage_body) {
                frame.name = resolver.intern(format!("{stage}::process"));
            }
        }
        let frames = without_std_library(frames);
        let own = own_code_end(&frames);
        let lines: Vec<FrameLine> = frames.iter().map(|frame| frame.at.clone()).collect();
        let names: Vec<Arc<str>> = frames.into_iter().map(|frame| frame.name).collect();
        let key = (stage, callsite_name(marker.function), names, lines);
        let entry = merged.entry(key).or_default();
        entry.0 += count;
        entry.1 = own;
    }
    let mut stacks: Vec<NamedStack> = merged
        .into_iter()
        .map(|((stage, function, frames, lines), (samples, own))| NamedStack {
            stage,
            function,
            frames,
            lines,
            samples,
            own,
        })
        .collect();
    stacks.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.frames.cmp(&b.frames)));
    stacks
}

fn callsite_name(id: CallsiteId) -> Option<&'static str> {
    (id != 0).then(|| crate::callsite::lookup(id).name())
}

/// A function on a sampled stack.
#[derive(Clone, Debug, PartialEq)]
struct Frame {
    name: Arc<str>,
    /// Where in its source the sample was (in this function), when the binary has line tables.
    at: FrameLine,
    /// The body of a `#[stage]`'s `process`, which the macro moves to a method of its own.
    stage_body: bool,
    /// The toolkit's own code.
    runtime: bool,
    /// The standard library's (core, alloc, std).
    std: bool,
    /// A library's, not the program's own: the shared object's short name (`libm`) for code
    /// without source lines, or the crate's name for another crate's source.
    library: Option<Arc<str>>,
}

/// The innermost frame of the program's own code, and the library the path ends in if it does.
fn own_code_end(frames: &[Frame]) -> OwnEnd {
    let own = frames.iter().rposition(|frame| frame.library.is_none())?;
    let library = frames.last().and_then(|frame| frame.library.clone());
    Some((own, library))
}

/// Whose code a frame is when it is not the program's own: the shared object the address lies
/// in (`libm` for `libm.so.6`) unless that is the program itself, or the crate of a source file
/// in the cargo registry (`/.cargo/registry/src/<index>/<crate>-<version>/`).
fn library_of(address: usize, file: Option<&Path>) -> Option<String> {
    // The shared object first: libm's code can carry source lines of its own (glibc's inline
    // helpers), and is still not the program's.
    shared_object_of(address).or_else(|| file.and_then(crate_of_registry_file))
}

fn crate_of_registry_file(file: &Path) -> Option<String> {
    let text = file.to_string_lossy();
    let (_, rest) = text.split_once("/.cargo/registry/src/")?;
    let package = rest.split('/').nth(1)?;
    Some(super::names::crate_of_package(package).to_owned())
}

#[cfg(target_os = "linux")]
fn shared_object_of(address: usize) -> Option<String> {
    // SAFETY: `dladdr` only reads the loader's tables and fills `info`; the name it returns
    // lives as long as the object stays loaded, and is copied at once.
    let path = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(address as *const libc::c_void, &mut info) == 0 || info.dli_fname.is_null()
        {
            return None;
        }
        std::ffi::CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned()
    };
    let object = Path::new(&path);
    let program = std::env::current_exe().ok().and_then(|exe| exe.canonicalize().ok());
    if path.is_empty() || object.canonicalize().ok() == program {
        return None; // the program itself
    }
    let name = object.file_name()?.to_string_lossy();
    Some(name.split('.').next().unwrap_or(&name).to_owned())
}

#[cfg(not(target_os = "linux"))]
fn shared_object_of(_: usize) -> Option<String> {
    None
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
        Some(last) if last + 1 == frames.len() => vec![Frame {
            name: Arc::from(RUNTIME_FRAME),
            at: FrameLine::default(),
            stage_body: false,
            runtime: true,
            std: false,
            library: None,
        }],
        Some(last) => frames[last + 1..].to_vec(),
        None => frames,
    }
}

/// The path without the closure `#[stage]` wraps a call to the stage's body in (the toolkit's,
/// though it is compiled into the user's crate): the stage's body follows the toolkit directly.
fn without_stage_wrapper(mut frames: Vec<Frame>) -> Vec<Frame> {
    let is_closure = |frame: &Frame| {
        frame
            .name
            .rsplit("::")
            .next()
            .is_some_and(|last| last.starts_with("{closure") || last.starts_with("{{closure"))
    };
    let mut at = 0;
    while at + 1 < frames.len() {
        if is_closure(&frames[at]) && frames[at + 1].stage_body {
            frames.remove(at);
        } else {
            at += 1;
        }
    }
    frames
}

/// The one `Arc` for `name`.
fn intern(interned: &mut HashMap<String, Arc<str>>, name: String) -> Arc<str> {
    Arc::clone(interned.entry(name).or_insert_with_key(|name| Arc::from(name.as_str())))
}

/// Resolves addresses to functions, each address once.
struct Resolver {
    cache: HashMap<(usize, bool), Vec<Frame>>,
    /// One `Arc` per distinct name.
    interned: HashMap<String, Arc<str>>,
    qualifier: Qualifier,
}

impl Resolver {
    fn new(qualifier: Qualifier) -> Self {
        Resolver { cache: HashMap::new(), interned: HashMap::new(), qualifier }
    }

    fn intern(&mut self, name: String) -> Arc<str> {
        intern(&mut self.interned, name)
    }

    /// The functions at `address`, outermost first: the function the address is in, then the
    /// ones inlined into it (when the binary has line tables).
    fn frames(&mut self, address: usize, exact: bool) -> &[Frame] {
        let Resolver { cache, interned, qualifier } = self;
        cache.entry((address, exact)).or_insert_with(|| {
            // (name, source file, line), innermost first, as `resolve` reports them.
            let mut found: Vec<(String, Option<PathBuf>, u32)> = Vec::new();
            // `resolve` looks up `address - 1`: right for a return address, one byte early
            // for the interrupted instruction.
            let lookup = if exact { address.wrapping_add(1) } else { address };
            backtrace::resolve(lookup as *mut std::ffi::c_void, |symbol| {
                let Some(name) = symbol.name() else { return };
                let file = symbol.filename().map(Path::to_path_buf);
                found.push((format!("{name:#}"), file, symbol.lineno().unwrap_or(0)));
            });
            if found.is_empty() {
                found.push((format!("{address:#x}"), None, 0));
            }
            let outermost = found.len() - 1;
            found
                .into_iter()
                .enumerate()
                .rev()
                .map(|(depth, (name, file, line))| {
                    // `#[stage]` moves the user's `process` body to a hidden method.
                    let (name, stage_body) = match name.strip_suffix(STAGE_BODY) {
                        Some(owner) => (format!("{owner}::process"), true),
                        None if name == INLINED_STAGE_BODY => ("process".to_owned(), true),
                        None => (name, false),
                    };
                    let runtime = is_runtime(&name, file.as_deref());
                    let std = is_std_library(&name, file.as_deref());
                    let library = if runtime || std {
                        None
                    } else {
                        library_of(address, file.as_deref()).map(|l| intern(interned, l))
                    };
                    let mut name = qualifier.name(&name, file.as_deref());
                    if runtime && !name.contains("::") {
                        name = format!("pipeline_runtime::{name}"); // no line tables to tell more
                    }
                    let at = FrameLine {
                        file: file.map(|file| intern(interned, file.display().to_string())),
                        line,
                        // The address lies in the outermost function; the others are inlined.
                        address: if depth == outermost { address as u64 } else { 0 },
                    };
                    Frame { name: intern(interned, name), at, stage_body, runtime, std, library }
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
                at: FrameLine::default(),
                stage_body: name.ends_with("::process") && !name.starts_with('<'),
                runtime: is_runtime(name, None),
                std: is_std_library(name, None),
                library: name.starts_with("libm:").then(|| Arc::from("libm")),
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
        let path = frames(&["app::Fraud::process", "pipeline_runtime::call_stats::stack::exit"]);
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
            Some(Path::new("/work/pipeline-runtime/src/call_stats/stack.rs"))
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
    fn a_path_ending_in_a_library_is_its_callers_own_code_spent_there() {
        let path = frames(&["app::Fraud::process", "app::risk_model", "libm:do_cos"]);
        assert_eq!(own_code_end(&path), Some((1, Some(Arc::from("libm")))));
        assert_eq!(own_code_end(&path[..2]), Some((1, None)));
        let registry =
            Path::new("/root/.cargo/registry/src/index.crates.io-1/hashbrown-0.15.2/src/map.rs");
        assert_eq!(crate_of_registry_file(registry).as_deref(), Some("hashbrown"));
        assert_eq!(crate_of_registry_file(Path::new("/work/app/src/lib.rs")), None);
    }

    #[test]
    fn this_functions_own_address_resolves_to_its_name() {
        #[inline(never)]
        fn probe() -> usize {
            probe as *const () as usize
        }
        let mut resolver = Resolver::new(Qualifier::from_annotations());
        let found = resolver.frames(std::hint::black_box(probe)(), true).to_vec();
        assert!(
            found.iter().any(|frame| frame
                .name
                .contains("this_functions_own_address_resolves_to_its_name")),
            "{found:?}"
        );
    }
}
