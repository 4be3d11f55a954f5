//! The one clock every measurement uses: nanoseconds since the process first asked.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds elapsed since the first call in this process (monotonic).
#[inline]
pub(crate) fn now_ns() -> u64 {
    let epoch = EPOCH.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years.
    epoch.elapsed().as_nanos() as u64
}
