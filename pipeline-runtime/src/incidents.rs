//! What the flight recorder's triggers watch that only the runners see: stage panics, and how
//! long a queue has been full. Runners report here whether or not a flight recorder runs (an
//! atomic add per panic, an atomic store per queue sample); the flight recorder reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static STAGE_PANICS: AtomicU64 = AtomicU64::new(0);
static LAST_PANICKED_STAGE: Mutex<String> = Mutex::new(String::new());
/// When the queue being sampled was first seen full in its current stretch of being full
/// ([`crate::clock::now_ns`]); 0 while it is not full.
static QUEUE_FULL_SINCE: AtomicU64 = AtomicU64::new(0);

/// A call of stage `stage` panicked (the runner caught it).
pub(crate) fn stage_panicked(stage: &str) {
    let mut last = LAST_PANICKED_STAGE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    last.clear();
    last.push_str(stage);
    STAGE_PANICS.fetch_add(1, Ordering::Release);
}

/// Stage panics so far in this process, and the stage of the last one.
pub(crate) fn stage_panics() -> (u64, String) {
    let count = STAGE_PANICS.load(Ordering::Acquire);
    let last = LAST_PANICKED_STAGE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    (count, last.clone())
}

/// A runner sampled its queue at `now_ns`: `depth` events of `capacity` waiting. A stretch of
/// being full begins at capacity and ends only once the queue drains to half of it: a backed-up
/// queue oscillates below its capacity (workers take events while the waiting producer is
/// woken; a paced producer that fell behind sends a burst), and those dips are the same
/// incident.
pub(crate) fn queue_sampled(depth: usize, capacity: usize, now_ns: u64) {
    if depth >= capacity {
        let _ = QUEUE_FULL_SINCE.compare_exchange(
            0,
            now_ns.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    } else if depth <= capacity / 2 && QUEUE_FULL_SINCE.load(Ordering::Relaxed) != 0 {
        QUEUE_FULL_SINCE.store(0, Ordering::Relaxed);
    }
}

/// Since when a queue has been full without a break (`None`: not full at its last sample).
pub(crate) fn queue_full_since() -> Option<u64> {
    match QUEUE_FULL_SINCE.load(Ordering::Relaxed) {
        0 => None,
        since => Some(since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_keeps_its_first_moment_until_it_drains() {
        queue_sampled(4, 4, 100);
        queue_sampled(4, 4, 200);
        assert_eq!(queue_full_since(), Some(100));
        queue_sampled(3, 4, 250); // a worker took one; the producer puts the next in
        assert_eq!(queue_full_since(), Some(100));
        queue_sampled(2, 4, 300); // drained to half
        assert_eq!(queue_full_since(), None);
        queue_sampled(5, 4, 400);
        assert_eq!(queue_full_since(), Some(400));
        queue_sampled(0, 4, 500);
    }
}
