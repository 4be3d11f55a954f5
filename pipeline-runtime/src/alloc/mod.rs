//! [`CountingAllocator`]: a global allocator that counts every allocation on the thread that made
//! it, so each stage call's figures are its own even while other workers allocate, and keeps a
//! process-wide live and peak heap figure.
//!
//! # Why it counts per thread instead of wrapping `StatsAlloc<System>`'s counters
//!
//! `stats_alloc::StatsAlloc` keeps six process-wide `SeqCst` atomics. Two things follow:
//! a `stats_alloc::Region` opened on one thread also counts every other thread's allocations,
//! so it cannot attribute allocations to a stage call while workers run concurrently; and every
//! allocation writes the same cache line from every thread (measured here: 66–71 ns per
//! allocation with two threads allocating, against ~10 ns for `System`). This allocator keeps
//! stats_alloc's figure type ([`Stats`]) and a `Region`-like API ([`ThreadRegion`]), but counts in
//! thread-local cells: the hot path touches no memory shared between threads.
//!
//! The process-wide live-bytes figure is the one shared counter. Each thread batches its changes
//! and adds them to it once its pending change reaches `FLUSH_BYTES` (64 KiB) either way, and the
//! peak is updated at those moments. So **live and peak heap are exact to within 64 KiB per
//! thread**; any single allocation of 64 KiB or more is reflected at once. A thread's pending
//! change is also flushed when its profiled work ends (see [`flush_thread`]).
//!
//! The thread-local state is `const`-initialised `Cell`s with no destructor, so it is usable
//! during thread start-up and teardown; the allocator itself never allocates, never panics and
//! never recurses.
//!
//! You can still wrap stats_alloc to keep its global counters as well (at their cost):
//!
//! ```
//! use stats_alloc::StatsAlloc;
//! use std::alloc::System;
//! static ALLOC: pipeline_runtime::CountingAllocator<StatsAlloc<System>> =
//!     pipeline_runtime::CountingAllocator::new(StatsAlloc::system());
//! // #[global_allocator] on it, then ALLOC.inner().stats() is stats_alloc's process-wide view.
//! ```
//!
//! - `counting`: the allocator and the per-thread counters it writes (what the recorder reads
//!   on every call);
//! - `heap`: reading the figures: the process's live and peak heap, which allocator is installed,
//!   a thread's allocations over a region of code.

mod counting;
mod heap;

pub(crate) use counting::{bookkeeping, pause, thread_counters, Counters};
pub use counting::{flush_thread, CountingAllocator, Stats};
pub use heap::{heap, installed_allocator, reset_peak, AllocatorKind, Heap, ThreadRegion};
