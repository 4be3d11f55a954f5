//! What a baseline records about where it was measured, and the probes that tell whether the
//! machine is as quiet now as it was then.

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// The machine a baseline was recorded on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Machine {
    /// `linux`, `macos`, ...
    pub os: String,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// The CPU model, where the system says it.
    pub cpu_model: Option<String>,
}

impl Machine {
    /// This machine.
    pub fn current() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        });
        Machine {
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
        }
    }
}

/// Now, as `2026-11-24T18:30:05Z`.
pub(crate) fn utc_now() -> String {
    crate::clock::utc_text(SystemTime::now(), ':', false)
}

/// A fixed amount of integer work: the yardstick samples are divided by.
pub(crate) fn calibration_kernel(rounds: u64) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..rounds {
        h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Nanoseconds the calibration kernel takes now, on this thread.
pub(crate) fn time_calibration(rounds: u64) -> f64 {
    let started = Instant::now();
    black_box(calibration_kernel(rounds));
    started.elapsed().as_nanos() as f64
}

/// Involuntary context switches of the calling thread so far: how often the scheduler took its
/// core away from it. `None` where the system does not count them per thread.
pub(crate) fn preemptions() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_THREAD fills it for the calling
        // thread and touches nothing else.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } == 0 {
            // SAFETY: getrusage returned 0, so it wrote the whole struct (zeroed before anyway).
            let usage = unsafe { usage.assume_init() };
            return u64::try_from(usage.ru_nivcsw).ok();
        }
    }
    None
}

/// Most timings [`fastest_uninterrupted`] takes of one thing.
const MOST_TRIES: u32 = 6;

/// The fastest of at least two timings of `time`, taking more (up to [`MOST_TRIES`]) while the
/// scheduler preempted every one so far; the fastest uninterrupted one if any was.
///
/// "An interrupted batch is never the faster" fails when both are interrupted: on a core shared
/// with a busy process the thread runs in slices about a millisecond long, so a batch that long
/// is often cut in two and a short yardstick is not. Timing both until each ran uninterrupted
/// measures both at the machine's speed, not at the scheduler's whim.
pub(crate) fn fastest_uninterrupted(mut time: impl FnMut() -> f64) -> f64 {
    let (mut fastest, mut fastest_whole) = (f64::INFINITY, f64::INFINITY);
    for tries in 1..=MOST_TRIES {
        let before = preemptions();
        let ns = time();
        let preempted = matches!((before, preemptions()), (Some(a), Some(b)) if b > a);
        fastest = fastest.min(ns);
        if !preempted {
            fastest_whole = fastest_whole.min(ns);
        }
        if tries >= 2 && fastest_whole.is_finite() {
            break;
        }
    }
    if fastest_whole.is_finite() {
        fastest_whole
    } else {
        fastest
    }
}

/// Calls of the calibration kernel one yardstick reading takes the fastest of.
const YARDSTICK_CALLS: u64 = 8;

/// Nanoseconds `rounds` of the calibration kernel take on this thread at the machine's speed:
/// the fastest of [`YARDSTICK_CALLS`] calls of an eighth each, times eight. A call the scheduler
/// interrupted is never the fastest, and short calls are rarely interrupted at all.
pub(crate) fn time_yardstick(rounds: u64) -> f64 {
    let per_call = (rounds / YARDSTICK_CALLS).max(1);
    let fastest =
        (0..YARDSTICK_CALLS).map(|_| time_calibration(per_call)).fold(f64::INFINITY, f64::min);
    fastest * YARDSTICK_CALLS as f64
}

const PROBE_ROUNDS: u64 = 400_000;

/// How much slower the kernel runs on two threads at once than on one: about 1 on an idle
/// machine with two free cores, about 2 when another process holds one of them. A single-thread
/// yardstick cannot see a core being taken; this can.
pub(crate) fn two_thread_probe() -> f64 {
    // The fastest of several tries on each side: a try the scheduler interrupted is never the
    // fastest, so this reads ~1.0 whenever two cores are free at all, ~2.0 when one is held.
    let (mut one, mut two) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..7 {
        one = one.min(time_calibration(PROBE_ROUNDS));
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| black_box(calibration_kernel(PROBE_ROUNDS)));
            }
        });
        two = two.min(started.elapsed().as_nanos() as f64);
    }
    two / one
}

/// Waits, up to about two seconds, for the two-thread probe to read within `tolerance` of
/// `recorded` (the machine as quiet, or as busy, as when the baseline was taken); whether it had
/// to wait.
pub(crate) fn wait_for_probe(recorded: f64, tolerance: f64) -> bool {
    const TRIES: u32 = 4;
    for attempt in 0..TRIES {
        if (two_thread_probe() / recorded - 1.0).abs() <= tolerance {
            return attempt > 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    true
}
