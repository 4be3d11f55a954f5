//! Reading the allocator's figures: the process's live and peak heap, which counting allocator
//! is installed, and one thread's allocations over a region of code.

use std::sync::atomic::Ordering;

use super::counting::{
    flush_thread, thread_counters, Counters, Stats, COUNTERS, LIVE, PEAK, PROFILER_OWN,
};

/// Process-wide heap figures from the [`CountingAllocator`](super::CountingAllocator).
///
/// They leave out the profiler's own statistics tables, so that turning profiling on does not
/// look like memory growth in the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Heap {
    /// Bytes the program has allocated and not freed (exact to within 64 KiB per thread).
    pub live_bytes: u64,
    /// The highest `live_bytes` seen since the process started or [`reset_peak`] was called.
    pub peak_bytes: u64,
    /// Bytes the profiler's own bookkeeping holds (not included above).
    pub profiler_bytes: u64,
}

/// Live and peak heap now, after flushing the calling thread's pending change.
///
/// Meaningful only when the [`CountingAllocator`](super::CountingAllocator) is installed ([`installed_allocator`] says).
pub fn heap() -> Heap {
    flush_thread();
    let own = PROFILER_OWN.load(Ordering::Relaxed).max(0);
    let live = (LIVE.load(Ordering::Relaxed) - own).max(0);
    let peak = PEAK.load(Ordering::Relaxed).max(live);
    Heap { live_bytes: live as u64, peak_bytes: peak as u64, profiler_bytes: own as u64 }
}

/// Restarts peak tracking from the current live bytes (as `tracemalloc.reset_peak()`).
pub fn reset_peak() {
    flush_thread();
    let live = LIVE.load(Ordering::Relaxed) - PROFILER_OWN.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
}

/// Which counting allocator, if any, is the process's global allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AllocatorKind {
    /// [`CountingAllocator`](super::CountingAllocator): per-call figures and live/peak heap.
    Counting,
    /// `stats_alloc::INSTRUMENTED_SYSTEM`: process-wide figures only (its counters are global).
    StatsAllocInstrumentedSystem,
    /// Neither: memory is not measured.
    None,
}

/// Finds out, by making one small allocation and seeing which counters move.
pub fn installed_allocator() -> AllocatorKind {
    let before = thread_counters().allocations;
    let stats_before = stats_alloc::INSTRUMENTED_SYSTEM.stats().allocations;
    let was_paused = COUNTERS.try_with(|c| c.paused.replace(false)).unwrap_or(false);
    drop(std::hint::black_box(Box::new(std::hint::black_box(0u64))));
    let _ = COUNTERS.try_with(|c| c.paused.set(was_paused));
    if thread_counters().allocations != before {
        AllocatorKind::Counting
    } else if stats_alloc::INSTRUMENTED_SYSTEM.stats().allocations != stats_before {
        AllocatorKind::StatsAllocInstrumentedSystem
    } else {
        AllocatorKind::None
    }
}

/// The calling thread's allocations between its creation and [`change`](Self::change): the
/// per-thread counterpart of `stats_alloc::Region`, unaffected by other threads.
///
/// ```
/// let region = pipeline_runtime::alloc::ThreadRegion::new();
/// let v: Vec<u8> = Vec::with_capacity(1000);
/// drop(v);
/// // With the CountingAllocator installed: allocations == 1, bytes_allocated == 1000.
/// let change = region.change();
/// assert_eq!(change.allocations, change.deallocations);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ThreadRegion {
    initial: Counters,
}

impl ThreadRegion {
    /// Starts counting from now.
    pub fn new() -> Self {
        ThreadRegion { initial: thread_counters() }
    }

    /// The counters when the region started (or was last reset).
    pub fn initial(&self) -> Stats {
        self.initial.to_stats()
    }

    /// What this thread allocated since then.
    pub fn change(&self) -> Stats {
        thread_counters().since(self.initial).to_stats()
    }

    /// [`change`](Self::change), then [`reset`](Self::reset).
    pub fn change_and_reset(&mut self) -> Stats {
        let now = thread_counters();
        let change = now.since(self.initial).to_stats();
        self.initial = now;
        change
    }

    /// Starts counting afresh from now.
    pub fn reset(&mut self) {
        self.initial = thread_counters();
    }
}

impl Default for ThreadRegion {
    fn default() -> Self {
        Self::new()
    }
}
