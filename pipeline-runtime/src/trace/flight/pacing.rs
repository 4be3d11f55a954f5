//! Pacing a dump: its thread yields to the workers and keeps its CPU under a share of the
//! machine, so writing an incident does not cause another.

use std::time::{Duration, Instant};

/// Lowers the calling thread's priority (Linux: nice +5 for this thread alone) before it
/// formats a dump, so that a worker waking on a busy core runs before it. The dump's share of
/// the CPU is set by [`CpuShare`], not by its priority: at nice +10 the scheduler gave it ~10 %
/// of a core beside a busy worker, whatever its share allowed, and a 2 s window of two busy
/// workers took 0.85–1.4 s to write (BENCHMARKS.md); at nice +5 it may have ~25 %, more than
/// [`DUMP_SHARE`] lets it take.
pub(super) fn yield_to_workers() {
    /// How much nicer than the workers the dump runs.
    #[cfg(target_os = "linux")]
    const NICER: libc::c_int = 5;
    #[cfg(target_os = "linux")]
    // SAFETY: gettid takes no arguments; setpriority on this thread's id changes only its own
    // nice value (raising it needs no privilege), and a failure leaves it as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + NICER).min(19));
    }
}

/// The share of the machine's CPU a dump may take while it writes (its thread sleeps when it
/// has used more). A dump costs ~100 ns of CPU per slice whatever its priority, and on a machine
/// whose workers keep every core busy that CPU is theirs: they lose about this share of their
/// throughput while it writes, and the dump takes its CPU divided by this share of the machine.
/// On 2 cores a 2 s window of two busy workers (~1,000,000 slices, 90–150 ms of CPU as the
/// machine's speed varies) is written in 0.65–1.06 s while the workers keep a median ~0.91–0.94
/// of their throughput (BENCHMARKS.md, "The flight recorder").
pub(super) const DUMP_SHARE: f64 = 0.07;

/// Keeps the calling thread's CPU time at most a share of the wall time since it was made.
pub(super) struct CpuShare {
    started: Instant,
    cpu_at_start: u64,
    /// Of one core: the machine's share times its cores.
    of_one_core: f64,
}

impl CpuShare {
    /// At most `share` of all the machine's cores.
    pub(super) fn of_the_machine(share: f64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        CpuShare {
            started: Instant::now(),
            cpu_at_start: crate::clock::thread_cpu_ns(),
            of_one_core: (share * cores as f64).min(1.0),
        }
    }

    /// Sleeps until the CPU used since the start is within the share of the time since.
    pub(super) fn keep(&mut self) {
        let used = crate::clock::thread_cpu_ns().saturating_sub(self.cpu_at_start);
        let allowed_after = Duration::from_nanos((used as f64 / self.of_one_core) as u64);
        if let Some(ahead) = allowed_after.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}
