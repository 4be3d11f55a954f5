//! The trigger thread: every few milliseconds it checks the latency triggers, the incidents
//! (a panic, a queue full too long) and the signal, and paces a dump so the workers keep most
//! of the CPU.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

use super::pacing::yield_to_workers;
use super::session::{dump, Shared};
#[cfg(target_os = "linux")]
use super::signal;
use super::{DumpTrigger, FlightRecorder, LatencyTrigger};
use crate::clock::now_ns;

/// How often the trigger thread looks.
const CHECK_EVERY: Duration = Duration::from_millis(25);
/// Calls a latency window needs before its quantile is judged.
const MIN_CALLS_TO_JUDGE: u64 = 20;

/// The trigger thread: looks every [`CHECK_EVERY`], and when a trigger fires outside the
/// cooldown, waits out the tail and dumps.
pub(super) fn watch(shared: &Shared) {
    let _bookkeeping = crate::alloc::bookkeeping();
    yield_to_workers();
    let mut panics_seen = crate::incidents::stage_panics().0;
    let mut latency = LatencyWatch::new(&shared.config);
    while !shared.stop.load(Ordering::Acquire) {
        let fired = next_trigger(shared, &mut panics_seen, &mut latency);
        if let Some(trigger) = fired {
            let (at, at_ns) = (SystemTime::now(), now_ns());
            if in_cooldown(shared) {
                shared.book.lock().unwrap_or_else(PoisonError::into_inner).in_cooldown += 1;
            } else {
                shared.book.lock().unwrap_or_else(PoisonError::into_inner).last_triggered =
                    Some(Instant::now());
                nap(shared, shared.config.tail); // the incident's end goes in too
                let _ = dump(shared, trigger, at, at_ns);
                latency.forget_history(); // judged afresh after a dump
            }
        }
        nap(shared, CHECK_EVERY);
    }
}

fn in_cooldown(shared: &Shared) -> bool {
    let book = shared.book.lock().unwrap_or_else(PoisonError::into_inner);
    book.last_triggered.is_some_and(|last| last.elapsed() < shared.config.cooldown)
}

/// Sleeps `how_long`, or less if the session finishes.
fn nap(shared: &Shared, how_long: Duration) {
    let (woken, condvar) = &shared.wake;
    let guard = woken.lock().unwrap_or_else(PoisonError::into_inner);
    if !*guard {
        let _ = condvar.wait_timeout(guard, how_long);
    }
}

/// The first trigger that fires now, if any.
fn next_trigger(
    shared: &Shared,
    panics_seen: &mut u64,
    latency: &mut LatencyWatch,
) -> Option<DumpTrigger> {
    let config = &shared.config;
    #[cfg(target_os = "linux")]
    if config.on_signal && signal::take() {
        return Some(DumpTrigger::Signal);
    }
    let (panics, stage) = crate::incidents::stage_panics();
    if panics != *panics_seen {
        *panics_seen = panics;
        if config.on_panic {
            return Some(DumpTrigger::StagePanicked { stage });
        }
    }
    if let (Some(limit), Some(since)) =
        (config.queue_full_for, crate::incidents::queue_full_since())
    {
        let for_ns = now_ns().saturating_sub(since);
        if for_ns >= u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX) {
            return Some(DumpTrigger::QueueFull { for_ns });
        }
    }
    latency.check(crate::mode::current_session())
}

/// Each watched stage's call-time distribution over the last `over`, from the session's
/// running totals: what they are now, less what they were `over` ago.
struct LatencyWatch {
    triggers: Vec<LatencyTrigger>,
    over_ns: u64,
    /// Per trigger, (when, the totals then), oldest first.
    history: Vec<std::collections::VecDeque<(u64, Histogram<u64>)>>,
}

impl LatencyWatch {
    fn new(config: &FlightRecorder) -> Self {
        LatencyWatch {
            triggers: config.latency.clone(),
            over_ns: u64::try_from(config.latency_over.as_nanos()).unwrap_or(u64::MAX),
            history: vec![std::collections::VecDeque::new(); config.latency.len()],
        }
    }

    fn forget_history(&mut self) {
        self.history.iter_mut().for_each(std::collections::VecDeque::clear);
    }

    fn check(&mut self, session: u64) -> Option<DumpTrigger> {
        if self.triggers.is_empty() {
            return None;
        }
        let now = now_ns();
        let mut fired = None;
        for (trigger, history) in self.triggers.iter().zip(&mut self.history) {
            let totals = crate::call_stats::stage_distribution(session, &trigger.stage);
            // The totals `over` ago (the oldest kept that is at least that old).
            while history.len() > 1 && history[1].0 + self.over_ns <= now {
                history.pop_front();
            }
            let judged = match history.front() {
                Some((then, before)) if *then + self.over_ns <= now => {
                    let mut recent = totals.clone();
                    recent.subtract(before).ok().map(|()| recent)
                }
                _ => None, // not `over` of history yet
            };
            history.push_back((now, totals));
            let Some(recent) = judged else { continue };
            if recent.len() < MIN_CALLS_TO_JUDGE || fired.is_some() {
                continue;
            }
            let observed_ns = recent.value_at_quantile(trigger.quantile);
            if observed_ns > trigger.threshold_ns {
                fired = Some(DumpTrigger::Latency {
                    stage: trigger.stage.clone(),
                    quantile: trigger.quantile,
                    observed_ns,
                    threshold_ns: trigger.threshold_ns,
                });
            }
        }
        fired
    }
}
