//! The marker the recorder keeps for the sampler: which stage and which `#[profiled]` function
//! the thread is in right now, read by the SIGPROF handler to charge a sample.
//!
//! One atomic per thread in a const-initialised thread-local without a destructor: reading it
//! from a signal handler is a plain load at a fixed thread-local address (no lazy set-up, no
//! allocation). Recorded calls write it only while the sampler runs, so a session without
//! sampling pays one bit test per call; each marker carries the sampling run's epoch, so a
//! marker left from an earlier run (a call that was in flight when sampling started) is not
//! mistaken for a current one.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::callsite::CallsiteId;

thread_local! {
    /// `epoch << 48 | stage << 24 | function`: call-site ids, 0 for none.
    static CURRENT: AtomicU64 = const { AtomicU64::new(0) };
}

/// The sampling run markers are written for; bumped by [`new_epoch`].
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Call-site ids take 24 bits in a marker.
const ID_BITS: u32 = 24;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
const EPOCH_MASK: u64 = 0xffff;

/// Where the thread is: the innermost stage and the innermost profiled function inside it
/// (0 for none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Marker {
    pub(crate) stage: CallsiteId,
    pub(crate) function: CallsiteId,
}

/// Starts a new sampling run: markers written before it read as "no stage" from now on.
pub(crate) fn new_epoch() -> u64 {
    (EPOCH.fetch_add(1, Ordering::Relaxed) + 1) & EPOCH_MASK
}

/// Packs a marker for `epoch`. Ids past 24 bits (16 million call sites) read as none.
fn pack(marker: Marker, epoch: u64) -> u64 {
    let id = |id: CallsiteId| if u64::from(id) > ID_MASK { 0 } else { u64::from(id) };
    (epoch & EPOCH_MASK) << (2 * ID_BITS) | id(marker.stage) << ID_BITS | id(marker.function)
}

/// The marker in `bits` if it was written during `epoch`'s run; "no stage" otherwise.
pub(crate) fn unpack(bits: u64, epoch: u64) -> Marker {
    if bits >> (2 * ID_BITS) != epoch & EPOCH_MASK {
        return Marker::default();
    }
    Marker {
        stage: ((bits >> ID_BITS) & ID_MASK) as CallsiteId,
        function: (bits & ID_MASK) as CallsiteId,
    }
}

/// Records that the thread is now in `stage` (and `innermost`, when it is not the stage itself).
/// One store; measured against saving and restoring the marker per call, which cost more.
#[inline(always)]
pub(crate) fn set(stage: CallsiteId, innermost: CallsiteId) {
    let function = if innermost == stage { 0 } else { innermost };
    let bits = pack(Marker { stage, function }, EPOCH.load(Ordering::Relaxed));
    // `try_with`'s failure (thread teardown) leaves nothing to mark.
    let _ = CURRENT.try_with(|current| current.store(bits, Ordering::Relaxed));
}

/// The thread's marker now, packed. Async-signal-safe.
#[inline(always)]
pub(crate) fn current() -> u64 {
    CURRENT.try_with(|current| current.load(Ordering::Relaxed)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_packs_and_unpacks_within_its_epoch_only() {
        let marker = Marker { stage: 7, function: 0xff_fffe };
        assert_eq!(unpack(pack(marker, 5), 5), marker);
        assert_eq!(unpack(pack(marker, 5), 6), Marker::default(), "an earlier run's marker");
        let too_big = Marker { stage: 1 << 24, function: 3 };
        assert_eq!(unpack(pack(too_big, 1), 1), Marker { stage: 0, function: 3 });
        let epoch = EPOCH.load(Ordering::Relaxed) & EPOCH_MASK;
        set(3, 3);
        assert_eq!(unpack(current(), epoch), Marker { stage: 3, function: 0 });
        set(3, 9);
        assert_eq!(unpack(current(), epoch), Marker { stage: 3, function: 9 });
        set(0, 0);
        assert_eq!(unpack(current(), epoch), Marker::default());
    }
}
