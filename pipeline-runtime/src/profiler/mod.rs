//! [`Profiler`]: switches recording on, and turns what was recorded into a [`Report`].

mod heap;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::alloc::{self, AllocatorKind, Heap};
use crate::call_stats;
use crate::clock::now_ns;
use crate::error::Error;
#[cfg(feature = "prometheus")]
use crate::metrics::MetricsServer;
#[cfg(feature = "cpu-sampling")]
use crate::report::cpu::CpuProfile;
use crate::report::{self, HeapReadings, Report};
use crate::run;
#[cfg(feature = "cpu-sampling")]
use crate::sampler::Sampler;
use crate::trace::{
    FlightDump, FlightRecorder, FlightSession, TraceBackend, TraceOptions, TraceSession,
};
use heap::{heap_now, HeapSampler};

/// Whether a [`ProfilingSession`] exists; only one may at a time.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Configures a profiling session; [`start`](Profiler::start) begins it.
///
/// Until a session starts, instrumented stages and functions cost one relaxed atomic load per
/// call and record nothing.
///
/// ```
/// let session = pipeline_runtime::Profiler::new().start()?;
/// // ... run the pipeline ...
/// let report = session.finish()?;
/// assert!(report.stages.is_empty());
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a profiler records nothing until `start()` is called"]
pub struct Profiler {
    chrome_trace: Option<PathBuf>,
    name: Option<String>,
    trace_one_in: u64,
    backlog_limit: Option<u64>,
    backend: TraceBackend,
    flight: Option<FlightRecorder>,
    #[cfg(feature = "cpu-sampling")]
    cpu_hz: Option<u32>,
    #[cfg(feature = "prometheus")]
    metrics_address: Option<String>,
}

impl Profiler {
    /// A profiler with the default settings.
    pub fn new() -> Self {
        Profiler::default()
    }

    /// Also writes a Chrome trace JSON to `path` (open it in ui.perfetto.dev): one track per
    /// thread, a slice per stage call with its profiled functions nested inside, counter tracks
    /// for queue depth and live heap, and instant events for panics, rejections and a full
    /// queue. The file is streamed as the run goes and completed by `finish()` or on drop.
    pub fn chrome_trace(mut self, path: impl Into<PathBuf>) -> Self {
        self.chrome_trace = Some(path.into());
        self
    }

    /// Keeps the last seconds of trace in bounded memory instead of writing a whole-session
    /// trace, and writes them as a Chrome trace when a trigger fires (a stage too slow, a
    /// panic, a queue full too long, `SIGUSR2`) or when asked ([`ProfilingSession::dump`]):
    /// the trace of the incident itself, at a fraction of a full trace's cost. See
    /// [`FlightRecorder`] for the settings. Not together with [`Self::chrome_trace`].
    pub fn flight_recorder(mut self, flight: FlightRecorder) -> Self {
        self.flight = Some(flight);
        self
    }

    /// Which writer writes the Chrome trace: the native one (the default) or, with the
    /// `tracing-chrome` feature, `TraceBackend::TracingChrome`.
    ///
    /// ```
    /// use pipeline_runtime::{trace::TraceBackend, Profiler};
    /// let profiler = Profiler::new().chrome_trace("trace.json").trace_backend(TraceBackend::Native);
    /// # drop(profiler);
    /// ```
    pub fn trace_backend(mut self, backend: TraceBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Traces one event in `n` (from `run_concurrent` and `WorkerPool`), cutting the trace's size
    /// and cost in proportion. Statistics still cover every call. `0` and `1` trace every event
    /// (the default: the native writer keeps every span at a small cost).
    pub fn trace_one_in(mut self, n: u64) -> Self {
        self.trace_one_in = n.max(1);
        self
    }

    /// How many trace records may wait for the trace writer (default
    /// [`crate::trace::NATIVE_BUFFER_RECORDS`], 3 MiB, for the native writer;
    /// [`crate::trace::MAX_BACKLOG`] entries, ~25 MB, for tracing-chrome). This bounds the memory
    /// a trace can take. The native writer makes a thread that outruns it wait (and do the
    /// writer's work while it waits; left out of the calls' figures), lets each running thread
    /// hold one small buffer (1.5 KiB) beyond the limit so that none is ever without one, and
    /// leaves spans out only when the writer is stalled for a second (a stuck disk);
    /// tracing-chrome leaves spans out past its limit. Whole spans are left out, the report says
    /// how many, and statistics stay complete.
    pub fn trace_backlog_limit(mut self, entries: u64) -> Self {
        self.backlog_limit = Some(entries);
        self
    }

    /// Also samples what every thread is running, `hz` times per second of CPU time, and charges
    /// each sample to the stage (and `#[profiled]` function) that thread was in: the report's
    /// CPU section ([`Report::cpu_samples`]) names the hot functions inside each stage, including
    /// the ones nobody annotated, like cProfile on a Python worker. 99 Hz is a good default (it
    /// keeps ≥ 99 % of a pipeline's throughput; see BENCHMARKS.md).
    ///
    /// Linux (x86_64, aarch64), feature `cpu-sampling`. It uses SIGPROF and the process CPU-time
    /// timer (`setitimer(ITIMER_PROF)`) for the session, and puts back whatever disposition
    /// SIGPROF had when the session ends. Function names come from the binary's symbol table;
    /// with `debug = "line-tables-only"` in the release profile, inlined functions are named too.
    ///
    /// `start()` fails with [`Error::CpuSampling`] when `hz` is 0 or above 10,000, or when the
    /// timer cannot be set up.
    ///
    /// ```
    /// # #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))] {
    /// let session = pipeline_runtime::Profiler::new().sample_cpu(99).start()?;
    /// // ... run the pipeline ...
    /// let report = session.finish()?;
    /// let cpu = report.cpu_samples.expect("sampled");
    /// assert_eq!(cpu.samples_taken, cpu.samples_in_stages + cpu.samples_outside_stages + cpu.samples_dropped);
    /// # }
    /// # Ok::<(), pipeline_runtime::Error>(())
    /// ```
    #[cfg(feature = "cpu-sampling")]
    pub fn sample_cpu(mut self, hz: u32) -> Self {
        self.cpu_hz = Some(hz);
        self
    }

    /// Also serves the session's figures live for Prometheus at `http://address/metrics`
    /// (`host:port`; port 0 picks a free one, [`ProfilingSession::metrics_address`] says which):
    /// calls, latency histograms and allocations per stage and function, stopped events, queue
    /// depth and worker time per running pool, the heap. The endpoint stops with the session.
    /// Feature `prometheus`; the metric names are in [`crate::metrics`].
    ///
    /// `start()` fails with [`Error::Metrics`] naming the address when it cannot listen there.
    ///
    /// ```
    /// let session = pipeline_runtime::Profiler::new().serve_metrics("127.0.0.1:0").start()?;
    /// let address = session.metrics_address().expect("serving");
    /// // Prometheus scrapes http://{address}/metrics while the pipeline runs.
    /// # drop(address);
    /// session.finish()?;
    /// # Ok::<(), pipeline_runtime::Error>(())
    /// ```
    #[cfg(feature = "prometheus")]
    pub fn serve_metrics(mut self, address: impl Into<String>) -> Self {
        self.metrics_address = Some(address.into());
        self
    }

    /// The process name shown in the trace (default: the executable's name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Starts recording every instrumented call, on every thread.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyProfiling`] if another session is running in this process;
    /// [`Error::Write`] naming the path if the trace file cannot be created;
    /// [`Error::SubscriberTaken`] if a trace is asked for but another tracing subscriber is
    /// installed without [`trace::layer`](crate::trace::layer).
    pub fn start(self) -> Result<ProfilingSession, Error> {
        if RUNNING.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyProfiling);
        }
        // Before the trace starts: its writer declares (and its slices carry) allocations only
        // when they are measured.
        let allocator = alloc::installed_allocator();
        crate::mode::note_allocator(allocator);
        if self.flight.is_some() && self.chrome_trace.is_some() {
            RUNNING.store(false, Ordering::Release);
            return Err(Error::InvalidConfig(
                "`chrome_trace` and `flight_recorder` both write the trace: choose one (a flight recorder dumps the last seconds as a Chrome trace when asked)",
            ));
        }
        let flight = match self.flight.clone() {
            Some(config) => {
                let name = self.name.clone().unwrap_or_else(process_name);
                match FlightSession::start(config, &name, self.trace_one_in.max(1)) {
                    Ok(flight) => Some(flight),
                    Err(error) => {
                        RUNNING.store(false, Ordering::Release);
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        let trace = match &self.chrome_trace {
            Some(path) => {
                let name = self.name.clone().unwrap_or_else(process_name);
                let options = TraceOptions {
                    path,
                    process_name: &name,
                    backend: self.backend,
                    trace_one_in: self.trace_one_in.max(1),
                    backlog_limit: self.backlog_limit,
                };
                match TraceSession::start(&options) {
                    Ok(trace) => Some(trace),
                    Err(error) => {
                        RUNNING.store(false, Ordering::Release);
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        let heap_at_start = heap_now(allocator);
        if allocator == AllocatorKind::Counting {
            alloc::reset_peak(); // the run's peak, not the process's
        }
        let session = crate::mode::begin_session(allocator);
        #[cfg(feature = "cpu-sampling")]
        let sampler = match self.cpu_hz.map(Sampler::start).transpose() {
            Ok(sampler) => sampler,
            Err(error) => return Err(abandon_start(trace, error)),
        };
        #[cfg(feature = "prometheus")]
        let metrics = match self
            .metrics_address
            .as_deref()
            .map(|address| MetricsServer::start(address, session, allocator))
            .transpose()
        {
            Ok(metrics) => metrics,
            Err(error) => return Err(abandon_start(trace, error)),
        };
        let traced = trace.is_some() || flight.is_some();
        let heap_sampler = match (traced, allocator) {
            (true, AllocatorKind::Counting) => HeapSampler::start(),
            _ => None,
        };
        Ok(ProfilingSession {
            #[cfg(feature = "cpu-sampling")]
            sampler,
            #[cfg(feature = "prometheus")]
            metrics,
            session,
            started_ns: now_ns(),
            allocator,
            heap_at_start,
            trace,
            flight,
            heap_sampler,
        })
    }
}

/// A running profile. [`finish`](Self::finish) stops it and returns the [`Report`]; dropping it
/// stops it too.
#[derive(Debug)]
#[must_use = "dropping the session stops profiling at once"]
pub struct ProfilingSession {
    session: u64,
    started_ns: u64,
    allocator: AllocatorKind,
    heap_at_start: Option<Heap>,
    trace: Option<TraceSession>,
    flight: Option<FlightSession>,
    heap_sampler: Option<HeapSampler>,
    #[cfg(feature = "cpu-sampling")]
    sampler: Option<Sampler>,
    #[cfg(feature = "prometheus")]
    metrics: Option<MetricsServer>,
}

/// Undoes a start that failed after the session began: recording stops, the trace (if any) is
/// completed, and another session may start. Returns `error`.
#[cfg(any(feature = "cpu-sampling", feature = "prometheus"))]
fn abandon_start(trace: Option<TraceSession>, error: Error) -> Error {
    crate::mode::end_session();
    drop(trace);
    RUNNING.store(false, Ordering::Release);
    error
}

/// The executable's file name, for the trace's process name.
fn process_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "pipeline".to_owned())
}

impl ProfilingSession {
    /// Where the metrics endpoint listens (`Profiler::serve_metrics`), if it was asked for.
    #[cfg(feature = "prometheus")]
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::address)
    }

    /// Writes the flight recorder's window now as a Chrome trace in its directory, named with
    /// the time and `reason` (`flight-2026-12-05T11-45-12.345Z-on-demand-{reason}.json`), and
    /// goes on recording; the next dump holds what comes after this one. Not subject to the
    /// triggers' cooldown.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if the session has no flight recorder
    /// ([`Profiler::flight_recorder`]); [`Error::Write`] naming the file if it cannot be
    /// written (the window is lost then, the session goes on).
    pub fn dump(&self, reason: &str) -> Result<FlightDump, Error> {
        match &self.flight {
            Some(flight) => flight.dump(reason),
            None => Err(Error::InvalidConfig(
                "this session has no flight recorder: start it with `Profiler::flight_recorder`",
            )),
        }
    }

    /// The flight recorder dumps written so far (none without a flight recorder).
    pub fn flight_dumps(&self) -> Vec<FlightDump> {
        self.flight.as_ref().map(FlightSession::dumps).unwrap_or_default()
    }

    /// The figures recorded so far, without stopping.
    pub fn report(&self) -> Report {
        #[allow(unused_mut)]
        let mut report = self.build_report(now_ns().saturating_sub(self.started_ns));
        #[cfg(feature = "cpu-sampling")]
        {
            report.cpu_samples =
                self.sampler.as_ref().map(|sampler| CpuProfile::from_samples(&sampler.samples()));
        }
        report
    }

    fn build_report(&self, wall_time_ns: u64) -> Report {
        let heap = HeapReadings {
            allocator: self.allocator,
            at_start: self.heap_at_start,
            at_end: heap_now(self.allocator),
        };
        let rows = call_stats::collect(self.session);
        let mut report = report::build(rows, wall_time_ns, heap);
        report.runs = run::finished_in(self.session);
        report.trace = self.trace.as_ref().map(TraceSession::summary);
        report
    }

    /// Stops recording and returns what was measured.
    ///
    /// With a Chrome trace, waits until the trace is written out before reading the heap at the
    /// end, so trace messages still queued for the file do not count as the program's memory.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] if the trace file could not be written completely (the report is lost
    /// only in that case; what reached the file stays there).
    pub fn finish(mut self) -> Result<Report, Error> {
        crate::mode::end_session();
        let wall_time_ns = now_ns().saturating_sub(self.started_ns);
        #[cfg(feature = "cpu-sampling")]
        let samples = self.sampler.take().map(Sampler::finish);
        drop(self.heap_sampler.take());
        let flight = self.flight.take().map(|mut flight| flight.finish());
        let trace = self.trace.take();
        let (summary, traced) = match trace {
            Some(mut trace) => (Some(trace.summary()), Some(trace.finish())),
            None => (None, None),
        };
        let mut report = self.build_report(wall_time_ns);
        report.trace = summary;
        report.flight = flight;
        #[cfg(feature = "cpu-sampling")]
        {
            report.cpu_samples = samples.as_ref().map(CpuProfile::from_samples);
        }
        traced.transpose()?;
        Ok(report)
    }
}

impl Drop for ProfilingSession {
    fn drop(&mut self) {
        #[cfg(feature = "prometheus")]
        drop(self.metrics.take());
        crate::mode::end_session();
        #[cfg(feature = "cpu-sampling")]
        drop(self.sampler.take());
        // Complete the trace (also while a panic unwinds) before another session may start.
        drop(self.heap_sampler.take());
        drop(self.trace.take());
        drop(self.flight.take());
        run::forget_finished(self.session);
        RUNNING.store(false, Ordering::Release);
    }
}
