//! The heap during a session: read at its start and end, and written into the trace as a
//! counter track by a thread of its own while it traces.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::alloc::{self, AllocatorKind, Heap};
use crate::trace_records::{self, CounterTrack};

/// Writes the live heap into the trace as a counter track, every 10 ms.
#[derive(Debug)]
pub(super) struct HeapSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HeapSampler {
    pub(super) fn start() -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("heap-sampler".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    trace_records::mark_counter(
                        CounterTrack::LiveHeap,
                        alloc::heap().live_bytes as f64,
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .ok()?; // without the thread the trace just has no heap track
        Some(HeapSampler { stop, thread: Some(thread) })
    }
}

impl Drop for HeapSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The heap now, from whichever counting allocator is installed.
pub(super) fn heap_now(allocator: AllocatorKind) -> Option<Heap> {
    match allocator {
        AllocatorKind::Counting => Some(alloc::heap()),
        AllocatorKind::StatsAllocInstrumentedSystem => {
            let stats = stats_alloc::INSTRUMENTED_SYSTEM.stats();
            let live = stats.bytes_allocated.saturating_sub(stats.bytes_deallocated) as u64;
            Some(Heap { live_bytes: live, peak_bytes: live, profiler_bytes: 0 })
        }
        AllocatorKind::None => None,
    }
}
