//! Sampled CPU profiles (feature `cpu-sampling`): what every thread was running, taken at a fixed
//! rate of process CPU time, each sample charged to the stage and `#[profiled]` function the
//! recorder's [`marker`] says the thread was in.
//!
//! - [`signal`]: the timer, the SIGPROF handler and the ring it fills (no lock, no allocation);
//! - this module: the collector thread that empties the ring into counts per distinct stack;
//! - [`symbols`]: names for the addresses, once, when the profile is read.

pub(crate) mod marker;
mod names;
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod signal;
#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
#[path = "unsupported.rs"]
mod signal;
mod symbols;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) use signal::in_handler;
pub(crate) use symbols::NamedStack;

use crate::alloc;
use crate::clock::process_cpu_ns;
use crate::error::Error;

/// The highest rate [`Sampler::start`] accepts: the kernel checks CPU timers on its tick, so
/// rates past a few kHz only add handler cost.
pub(crate) const MAX_HZ: u32 = 10_000;

/// How often the collector empties the ring.
const COLLECT_EVERY: Duration = Duration::from_millis(10);

/// Distinct call paths kept whole (about 0.5 KB each). Past this many, a new path keeps only
/// its innermost frame, so that a long session of ever-different stacks (deep recursion of
/// varying depth) cannot grow the collector without bound: the function's self samples stay
/// right, its callers are counted as `truncated`.
const MAX_DISTINCT_PATHS: usize = 100_000;

/// Samples counted per distinct (marker, stack).
struct Counted {
    /// By packed marker, then by the stack's addresses (innermost first).
    stacks: HashMap<u64, HashMap<Box<[usize]>, u64>>,
    not_unwound: u64,
    truncated: u64,
    /// Distinct paths held, and how many are kept whole.
    paths: usize,
    max_paths: usize,
}

impl Counted {
    fn new(max_paths: usize) -> Self {
        Counted { stacks: HashMap::new(), not_unwound: 0, truncated: 0, paths: 0, max_paths }
    }

    fn add(&mut self, sample: &signal::SampleData) {
        let mut frames = &sample.frames[..sample.len];
        let mut truncated = sample.flags & signal::TRUNCATED != 0;
        let full = self.paths >= self.max_paths;
        let per_marker = self.stacks.entry(sample.marker).or_default();
        if full && frames.len() > 1 && !per_marker.contains_key(frames) {
            frames = &frames[..1];
            truncated = true;
        }
        match per_marker.get_mut(frames) {
            Some(count) => *count += 1,
            None => {
                per_marker.insert(frames.into(), 1);
                self.paths += 1;
            }
        }
        if sample.flags & signal::NOT_UNWOUND != 0 {
            self.not_unwound += 1;
        }
        if truncated {
            self.truncated += 1;
        }
    }
}

/// What sampling gathered, with names: the input of the report's CPU section.
#[derive(Clone, Debug, Default)]
pub(crate) struct Samples {
    /// The rate asked for (samples per second of CPU time per thread).
    pub(crate) hz: u32,
    /// Signals handled: every sample the timer triggered.
    pub(crate) taken: u64,
    /// Of `taken`, samples lost to a full ring (the collector fell behind).
    pub(crate) dropped: u64,
    /// Of the kept samples, those with only the interrupted address (no call path).
    pub(crate) not_unwound: u64,
    /// Of the kept samples, those whose stacks were deeper than the frames kept.
    pub(crate) truncated: u64,
    /// Time the sampled threads spent in the signal handler: sampling's own cost.
    pub(crate) handler_ns: u64,
    /// CPU time of the whole process (user + system) while sampling ran.
    pub(crate) process_cpu_ns: u64,
    /// When sampling began (nanoseconds since the Unix epoch) and how long it ran.
    pub(crate) started_unix_ns: u64,
    pub(crate) duration_ns: u64,
    /// The kept samples, by stage and call path.
    pub(crate) stacks: Vec<NamedStack>,
}

/// A running sampler: the timer is armed and the collector thread empties the ring.
pub(crate) struct Sampler {
    hz: u32,
    installed: Option<signal::Installed>,
    counted: Arc<Mutex<Counted>>,
    stop: Arc<AtomicBool>,
    collector: Option<JoinHandle<()>>,
    cpu_at_start: u64,
    started_at: (std::time::SystemTime, std::time::Instant),
    /// The markers of this run (see [`marker::new_epoch`]).
    epoch: u64,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").field("hz", &self.hz).finish_non_exhaustive()
    }
}

impl Sampler {
    /// Starts sampling every thread at `hz` samples per second of CPU time.
    ///
    /// # Errors
    ///
    /// [`Error::CpuSampling`] when `hz` is 0 or above [`MAX_HZ`], on a platform without the
    /// sampler, or when the signal handler, the timer or the collector thread cannot be set up.
    pub(crate) fn start(hz: u32) -> Result<Sampler, Error> {
        if !(1..=MAX_HZ).contains(&hz) {
            return Err(Error::CpuSampling(format!(
                "a sampling rate of {hz} Hz is outside 1..={MAX_HZ}"
            )));
        }
        let _bookkeeping = alloc::bookkeeping();
        let counted = Arc::new(Mutex::new(Counted::new(MAX_DISTINCT_PATHS)));
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (counted, stop) = (Arc::clone(&counted), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("cpu-sampler".to_owned())
                .spawn(move || collect(&counted, &stop))
                .map_err(|error| {
                    Error::CpuSampling(format!("cannot start the collector thread: {error}"))
                })?
        };
        let cpu_at_start = process_cpu_ns();
        // Recorded calls keep the marker from now on, tagged with this run's epoch.
        let epoch = marker::new_epoch();
        crate::mode::set_cpu_sampling(true);
        let installed = match signal::start(hz) {
            Ok(installed) => installed,
            Err(error) => {
                crate::mode::set_cpu_sampling(false);
                stop.store(true, Ordering::Release);
                let _ = collector.join();
                return Err(Error::CpuSampling(format!("cannot arm the SIGPROF timer: {error}")));
            }
        };
        Ok(Sampler {
            hz,
            installed: Some(installed),
            counted,
            stop,
            collector: Some(collector),
            cpu_at_start,
            started_at: (std::time::SystemTime::now(), std::time::Instant::now()),
            epoch,
        })
    }

    /// The samples so far, with names, without stopping.
    pub(crate) fn samples(&self) -> Samples {
        let _bookkeeping = alloc::bookkeeping();
        let mut counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
        signal::drain(|sample| counted.add(sample));
        self.name(&counted, process_cpu_ns())
    }

    /// Stops sampling and returns every sample taken, with names.
    pub(crate) fn finish(mut self) -> Samples {
        let cpu_at_end = process_cpu_ns();
        self.stop_sampling();
        let _bookkeeping = alloc::bookkeeping();
        let counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
        self.name(&counted, cpu_at_end)
    }

    fn name(&self, counted: &Counted, cpu_now: u64) -> Samples {
        let counts = signal::counts();
        Samples {
            hz: self.hz,
            taken: counts.taken,
            dropped: counts.dropped,
            not_unwound: counted.not_unwound,
            truncated: counted.truncated,
            handler_ns: counts.handler_ns,
            process_cpu_ns: cpu_now.saturating_sub(self.cpu_at_start),
            started_unix_ns: self
                .started_at
                .0
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64),
            duration_ns: self.started_at.1.elapsed().as_nanos() as u64,
            stacks: symbols::name(counted.stacks.iter().flat_map(|(&marker, stacks)| {
                let marker = marker::unpack(marker, self.epoch);
                stacks.iter().map(move |(frames, &count)| (marker, &**frames, count))
            })),
        }
    }

    /// Disarms the timer, waits for running handlers, restores SIGPROF, and collects what the
    /// ring still holds. Idempotent.
    fn stop_sampling(&mut self) {
        if let Some(installed) = self.installed.take() {
            signal::stop(installed);
            crate::mode::set_cpu_sampling(false);
        }
        self.stop.store(true, Ordering::Release);
        if let Some(collector) = self.collector.take() {
            collector.thread().unpark();
            let _ = collector.join();
        }
        let _bookkeeping = alloc::bookkeeping();
        let mut counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
        signal::drain(|sample| counted.add(sample));
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop_sampling();
    }
}

/// The collector thread: empties the ring every [`COLLECT_EVERY`] until told to stop.
fn collect(counted: &Mutex<Counted>, stop: &AtomicBool) {
    // Everything this thread allocates is the profiler's memory.
    let _bookkeeping = alloc::bookkeeping();
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(COLLECT_EVERY);
        let mut counted = counted.lock().unwrap_or_else(PoisonError::into_inner);
        signal::drain(|sample| counted.add(sample));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(frames: &[usize]) -> signal::SampleData {
        let mut data = signal::SampleData {
            marker: 1,
            flags: 0,
            len: frames.len(),
            frames: [0; signal::MAX_FRAMES],
        };
        data.frames[..frames.len()].copy_from_slice(frames);
        data
    }

    #[test]
    fn past_the_distinct_path_limit_new_paths_keep_their_innermost_frame() {
        let mut counted = Counted::new(2);
        counted.add(&sample(&[10, 20, 30]));
        counted.add(&sample(&[11, 20, 30]));
        counted.add(&sample(&[10, 20, 30])); // known: still counted whole
        counted.add(&sample(&[12, 21, 31])); // new, past the limit: its leaf only
        let paths = &counted.stacks[&1];
        assert_eq!(paths[&[10, 20, 30][..]], 2);
        assert_eq!(paths[&[12][..]], 1);
        assert_eq!(counted.truncated, 1);
        assert_eq!(paths.values().sum::<u64>(), 4, "no sample is lost");
    }
}
