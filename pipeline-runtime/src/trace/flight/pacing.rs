//! Pacing a dump: its thread yields to the workers and keeps its CPU under a share of the
//! machine, so writing an incident does not cause another.

use std::time::{Duration, Instant};

/// Lowers the calling thread's priority (Linux: nice +5 for this thread alone) before it
/// formats a dump, so that a worker waking on a busy core runs before it. The dump's share of
/// the CPU is set by [`DumpPace`], not by its priority: at nice +10 the scheduler gave it ~10 %
/// of a core beside a busy worker, whatever its share allowed, and a 2 s window of two busy
/// workers took 0.85–1.4 s to write (BENCHMARKS.md); at nice +5 it may have ~25 %, more than
/// [`DUMP_MOST_SHARE`] lets it take.
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

/// The share of the machine's CPU a dump takes while it is on time (its thread sleeps when it
/// has used more). A dump costs ~100 ns of CPU per slice whatever its priority, and on a machine
/// whose workers keep every core busy that CPU is theirs: they lose about this share of their
/// throughput while it writes. On 2 cores a 2 s window of two busy workers (~1,000,000 slices,
/// 90–150 ms of CPU as the machine's speed varies) takes 0.65–1.06 s at this share alone
/// (BENCHMARKS.md, "The flight recorder"); [`DUMP_DEADLINE`] takes more when that is too slow.
pub(super) const DUMP_SHARE: f64 = 0.07;

/// When a dump should be written by: a dump that would finish later at [`DUMP_SHARE`] takes
/// just enough more, up to [`DUMP_MOST_SHARE`], to finish by then.
pub(super) const DUMP_DEADLINE: Duration = Duration::from_millis(850);

/// The most of the machine's CPU a late dump takes. At nice +5 beside a busy worker the
/// scheduler gives a thread ~25 % of that core, so on 2 cores little more than this is there
/// to take; a dump too big for the deadline even at this share (a long window, a slow
/// machine) finishes late rather than starving the workers further.
pub(super) const DUMP_MOST_SHARE: f64 = 0.10;

/// Keeps the calling thread's CPU at most a share of the wall time: the base share while the
/// work is on time for a deadline, more (up to a ceiling) when the work done so far says it
/// would finish late. Each step's CPU is divided by the share chosen for it, so a share raised
/// late applies to the work left and does not let the thread run unpaced to catch up.
pub(super) struct DumpPace {
    started: Instant,
    cpu_at_start: u64,
    /// The CPU used up to the last step.
    used: Duration,
    /// When, from the start, the work done so far may end at the shares chosen for it.
    due: Duration,
    /// Shares of one core: the machine's share times its cores.
    base: f64,
    most: f64,
    deadline: Duration,
}

impl DumpPace {
    /// At least `base`, at most `most` of all the machine's cores, finishing by `deadline`
    /// (from now) when `most` allows it.
    pub(super) fn new(base: f64, most: f64, deadline: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        DumpPace {
            started: Instant::now(),
            cpu_at_start: crate::clock::thread_cpu_ns(),
            used: Duration::ZERO,
            due: Duration::ZERO,
            base: (base * cores).min(1.0),
            most: (most.max(base) * cores).min(1.0),
            deadline,
        }
    }

    /// With `done` (0 to 1) of the work done: sleeps until the CPU of the step since the last
    /// call is within the share that finishes the rest by the deadline.
    pub(super) fn keep(&mut self, done: f64) {
        let used =
            Duration::from_nanos(crate::clock::thread_cpu_ns().saturating_sub(self.cpu_at_start));
        if let Some(ahead) = self.step(used, self.started.elapsed(), done) {
            std::thread::sleep(ahead);
        }
    }

    /// Books a step that brought the CPU used to `used` at `elapsed` from the start, and says
    /// how long to sleep before the next.
    fn step(&mut self, used: Duration, elapsed: Duration, done: f64) -> Option<Duration> {
        let share = self.share_for(used, elapsed.max(self.due), done);
        self.due += used.saturating_sub(self.used).div_f64(share);
        self.used = used;
        self.due.checked_sub(elapsed).filter(|ahead| !ahead.is_zero())
    }

    /// The share of one core that finishes the rest of the work by the deadline, if the rest
    /// costs what the work done so far did, within the base and the ceiling. `from` is when,
    /// from the start, the rest may begin.
    fn share_for(&self, used: Duration, from: Duration, done: f64) -> f64 {
        if !(done > 0.0 && done < 1.0) {
            return self.base;
        }
        let rest = used.as_secs_f64() * (1.0 - done) / done;
        let left = self.deadline.saturating_sub(from).as_secs_f64();
        if left <= 0.0 {
            return self.most;
        }
        (rest / left).clamp(self.base, self.most)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(base: f64, most: f64) -> DumpPace {
        DumpPace {
            started: Instant::now(),
            cpu_at_start: 0,
            used: Duration::ZERO,
            due: Duration::ZERO,
            base,
            most,
            deadline: Duration::from_millis(800),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_on_time_dump_keeps_the_base_share() {
        // 10 ms of CPU for a tenth of the work in 100 ms: 90 ms more fits 700 ms at 0.13.
        assert_eq!(pace(0.14, 0.2).share_for(ms(10), ms(100), 0.1), 0.14);
    }

    #[test]
    fn a_late_dump_takes_just_enough_more_to_finish_by_the_deadline() {
        // 15 ms for a tenth in 107 ms: 135 ms more in the 693 ms left needs 0.195 of a core.
        let share = pace(0.14, 0.25).share_for(ms(15), ms(107), 0.1);
        assert!((share - 135.0 / 693.0).abs() < 1e-9, "{share}");
    }

    #[test]
    fn a_dump_too_big_for_the_deadline_takes_at_most_the_ceiling() {
        assert_eq!(pace(0.14, 0.2).share_for(ms(50), ms(350), 0.1), 0.2);
        assert_eq!(pace(0.14, 0.2).share_for(ms(100), ms(900), 0.9), 0.2, "past the deadline");
    }

    #[test]
    fn without_progress_to_judge_by_the_base_share_holds() {
        assert_eq!(pace(0.14, 0.2).share_for(ms(10), ms(70), 0.0), 0.14);
        assert_eq!(pace(0.14, 0.2).share_for(ms(10), ms(70), f64::NAN), 0.14);
        assert_eq!(pace(0.14, 0.2).share_for(ms(100), ms(900), 1.0), 0.14, "nothing left");
    }

    #[test]
    fn each_step_is_paced_at_its_own_share() {
        let mut pace = pace(0.1, 0.2);
        // On time (45 ms more fits the 795 ms left at 0.1 of a core): 5 ms of CPU take 50.
        assert_eq!(pace.step(ms(5), ms(5), 0.1), Some(ms(45)));
        // A slow step makes it late (200 ms more in 700): this step's 45 ms go at the
        // ceiling, 225 ms, and the step before keeps its pace (no catching up unpaced).
        assert_eq!(pace.step(ms(50), ms(100), 0.2), Some(ms(275) - ms(100)));
        // Slept 20 ms too long: the next steps (5 ms each at the ceiling) make it up by not
        // sleeping until their pace is due again.
        assert_eq!(pace.step(ms(51), ms(295), 0.21), None);
        assert_eq!(pace.step(ms(52), ms(296), 0.22), None);
        assert_eq!(pace.step(ms(56), ms(300), 0.26), Some(ms(305) - ms(300)));
    }

    #[test]
    fn the_ceiling_is_never_below_the_base() {
        let pace = DumpPace::new(0.1, 0.05, ms(800));
        assert!(pace.most >= pace.base);
    }
}
