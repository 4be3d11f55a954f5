//! Call sites: one `static` per annotated stage or function, given a small numeric id on its first
//! call so that recording indexes arrays instead of hashing names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The name figures taken outside every stage go by: in the CPU profile, its flame graph and
/// pprof file, and the metrics' `stage` label.
pub const OUTSIDE_STAGES: &str = "(outside stages)";

/// What an instrumented call site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallsiteKind {
    /// A `#[stage]`'s `process`.
    Stage,
    /// A `#[profiled]` function or method.
    Function,
}

/// The static description of one instrumented stage or function, emitted by the macros.
#[derive(Debug)]
pub struct Callsite {
    name: &'static str,
    kind: CallsiteKind,
    module_path: &'static str,
    file: &'static str,
    line: u32,
    /// 0 until registered; then the index in [`REGISTRY`] plus one.
    id: AtomicU32,
    /// For a method: the call site of the first type it was called on (see
    /// [`Callsite::for_type`]), found without a lock.
    first_type: OnceLock<(usize, usize, &'static Callsite)>,
}

/// The call sites of methods per type they were called on, by the type name's address (the
/// usual look-up) and by the name itself (one type's name may live at two addresses).
#[derive(Default)]
struct Typed {
    by_address: HashMap<(usize, usize, usize), &'static Callsite>,
    by_name: HashMap<(usize, String), &'static Callsite>,
}

static TYPED: Mutex<Option<Typed>> = Mutex::new(None);

/// A registered call site's id: never 0, so that 0 can mean "no enclosing stage".
pub(crate) type CallsiteId = u32;

/// Every call site that has been called at least once, indexed by `id - 1`.
static REGISTRY: Mutex<Vec<&'static Callsite>> = Mutex::new(Vec::new());

impl Callsite {
    /// Describes a call site. Used by the macro expansions in a `static`.
    pub const fn new(
        name: &'static str,
        kind: CallsiteKind,
        module_path: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        Callsite {
            name,
            kind,
            module_path,
            file,
            line,
            id: AtomicU32::new(0),
            first_type: OnceLock::new(),
        }
    }

    /// This method's call site for calls on `type_name` (`std::any::type_name::<Self>()`): its
    /// row is named `type::method`, so the same method of two types (or a trait's default
    /// method, per implementor) are two rows. One look-up without a lock for the first type a
    /// method is called on; a locked map for the others.
    #[inline]
    pub fn for_type(&'static self, type_name: &'static str) -> &'static Callsite {
        self.derived(type_name, |site, type_name| {
            let method = site.name.rsplit("::").next().unwrap_or(site.name);
            format!("{type_name}::{method}")
        })
    }

    /// A generic stage's call site for one instantiation, `type_name` being
    /// `std::any::type_name::<Self>()`: its row is named by the type without module paths
    /// (`Dedup<u64>`), so two instantiations in one pipeline are two rows.
    #[inline]
    pub fn for_stage_type(&'static self, type_name: &'static str) -> &'static Callsite {
        self.derived(type_name, |_, type_name| short_type_name(type_name))
    }

    /// The call site derived from this one for `type_name`, named by `name_of` once.
    #[inline]
    fn derived(
        &'static self,
        type_name: &'static str,
        name_of: fn(&Callsite, &str) -> String,
    ) -> &'static Callsite {
        let key = (type_name.as_ptr() as usize, type_name.len());
        if let Some(&(ptr, len, site)) = self.first_type.get() {
            if (ptr, len) == key {
                return site;
            }
        }
        self.typed_slow(type_name, key, name_of)
    }

    #[cold]
    #[inline(never)]
    fn typed_slow(
        &'static self,
        type_name: &'static str,
        key: (usize, usize),
        name_of: fn(&Callsite, &str) -> String,
    ) -> &'static Callsite {
        // The profiler's memory: neither the call's allocation nor the program's heap.
        let _bookkeeping = crate::alloc::bookkeeping();
        let mut typed = TYPED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let typed = typed.get_or_insert_with(Typed::default);
        let this = self as *const Callsite as usize;
        if let Some(&site) = typed.by_address.get(&(this, key.0, key.1)) {
            return site;
        }
        let site = *typed.by_name.entry((this, type_name.to_owned())).or_insert_with(|| {
            let name: &'static str = Box::leak(name_of(self, type_name).into_boxed_str());
            Box::leak(Box::new(Callsite::new(
                name,
                self.kind,
                self.module_path,
                self.file,
                self.line,
            )))
        });
        typed.by_address.insert((this, key.0, key.1), site);
        let _ = self.first_type.set((key.0, key.1, site));
        site
    }

    /// The call site of a stage instance named where it was added to a pipeline
    /// (`Pipeline::stage_named`), or of a run's sink: one per name for the whole process, so
    /// building the same pipeline again adds no memory.
    pub fn named_stage(name: &str) -> &'static Callsite {
        static NAMED: Mutex<Option<HashMap<String, &'static Callsite>>> = Mutex::new(None);
        let _bookkeeping = crate::alloc::bookkeeping();
        let mut named = NAMED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let named = named.get_or_insert_with(HashMap::new);
        if let Some(site) = named.get(name) {
            return site;
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        let site: &'static Callsite =
            Box::leak(Box::new(Callsite::new(leaked, CallsiteKind::Stage, "", "", 0)));
        named.insert(name.to_owned(), site);
        site
    }

    /// The name shown in reports: the stage's name or `module::function`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Stage or function.
    pub fn kind(&self) -> CallsiteKind {
        self.kind
    }

    /// The module that declared it.
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    /// Source file and line of the annotation.
    pub fn location(&self) -> (&'static str, u32) {
        (self.file, self.line)
    }

    /// The id, registering the call site on its first call.
    #[inline]
    pub(crate) fn id(&'static self) -> CallsiteId {
        match self.id.load(Ordering::Acquire) {
            0 => self.register(),
            id => id,
        }
    }

    #[cold]
    fn register(&'static self) -> CallsiteId {
        // The registry is the profiler's memory: not the call's, nor the program's live heap.
        let _bookkeeping = crate::alloc::bookkeeping();
        let mut registry = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another thread may have registered it while we waited for the lock.
        let id = self.id.load(Ordering::Acquire);
        if id != 0 {
            return id;
        }
        registry.push(self);
        let id = u32::try_from(registry.len()).expect("fewer than 2^32 call sites");
        self.id.store(id, Ordering::Release);
        id
    }
}

/// The names of every `#[stage]` called so far in the process.
pub(crate) fn stage_names() -> Vec<&'static str> {
    let registry = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    registry.iter().filter(|site| site.kind == CallsiteKind::Stage).map(|site| site.name).collect()
}

/// Every call site called so far in the process.
#[cfg(feature = "cpu-sampling")]
pub(crate) fn callsites() -> Vec<&'static Callsite> {
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// The call site with this id.
pub(crate) fn lookup(id: CallsiteId) -> &'static Callsite {
    let registry = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    registry[id as usize - 1]
}

/// [`short_type_name`], kept for the process (one copy per type).
pub(crate) fn interned_short_type_name(type_name: &'static str) -> &'static str {
    static NAMES: Mutex<Option<HashMap<&'static str, &'static str>>> = Mutex::new(None);
    let _bookkeeping = crate::alloc::bookkeeping();
    let mut names = NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    names
        .get_or_insert_with(HashMap::new)
        .entry(type_name)
        .or_insert_with(|| Box::leak(short_type_name(type_name).into_boxed_str()))
}

/// A type's name without module paths: `app::dedup::Dedup<alloc::string::String, u64>` reads
/// `Dedup<String, u64>`.
pub(crate) fn short_type_name(type_name: &str) -> String {
    let mut short = String::with_capacity(type_name.len());
    let mut segment_start = 0;
    for (at, c) in type_name.char_indices() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            continue;
        }
        push_last_segment(&mut short, &type_name[segment_start..at]);
        short.push(c);
        segment_start = at + c.len_utf8();
    }
    push_last_segment(&mut short, &type_name[segment_start..]);
    short
}

fn push_last_segment(out: &mut String, path: &str) {
    out.push_str(path.rsplit("::").next().unwrap_or(path));
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn type_names_lose_their_module_paths_but_keep_their_arguments() {
        assert_eq!(
            short_type_name("app::dedup::Dedup<alloc::string::String, u64>"),
            "Dedup<String, u64>"
        );
        assert_eq!(short_type_name("Limit<3>"), "Limit<3>");
        assert_eq!(short_type_name("a::B<(c::D, [e::F; 2]), &g::H>"), "B<(D, [F; 2]), &H>");
    }
}
