//! The flight recorder: the trace of the last seconds, kept in bounded memory while the program
//! runs, and written as a Chrome trace when something happens (a stage too slow, a panic, a
//! queue full too long, a signal, a call from the program).
//!
//! The native writer keeps whole record chunks in its window instead of formatting them
//! ([`super::native`]); this module holds the settings, watches the triggers on a thread of its
//! own, and names and books the dumps.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

use super::native::NativeTrace;
use crate::clock::now_ns;
use crate::error::Error;

/// Trace memory a flight recorder may use unless told otherwise: 64 MiB.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// How a flight recorder keeps the last seconds of trace and when it writes them
/// ([`Profiler::flight_recorder`](crate::Profiler::flight_recorder)).
///
/// The window is kept in memory (trace records as the threads wrote them, nothing formatted):
/// at most `max_bytes` in all, about half of which holds the window and the rest the buffers
/// threads are filling. Nothing is written until a trigger fires; then the window, and a short
/// `tail` after the trigger, go to `dir` as a Chrome trace named with the time and the trigger
/// (`flight-2026-12-05T11-45-12.345Z-latency-FraudStage.json`), and recording goes on. A dump
/// takes the window with it: the next dump holds what came after.
///
/// ```
/// use std::time::Duration;
/// use pipeline_runtime::trace::FlightRecorder;
///
/// let flight = FlightRecorder::new(Duration::from_secs(2))
///     .dir("target/flight")
///     .when_p99_over("FraudStage", Duration::from_millis(5))
///     .when_queue_full_for(Duration::from_millis(500))
///     .on_stage_panic(true);
/// let session = pipeline_runtime::Profiler::new().flight_recorder(flight).start()?;
/// // ... run the pipeline; a dump is written when a trigger fires ...
/// let report = session.finish()?;
/// assert!(report.flight.expect("armed").dumps.is_empty());
/// # Ok::<(), pipeline_runtime::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a flight recorder does nothing until given to `Profiler::flight_recorder`"]
pub struct FlightRecorder {
    window: Duration,
    max_bytes: usize,
    dir: PathBuf,
    tail: Duration,
    cooldown: Duration,
    latency: Vec<LatencyTrigger>,
    latency_over: Duration,
    queue_full_for: Option<Duration>,
    on_panic: bool,
    on_signal: bool,
    on_exit: bool,
}

/// A stage's latency quantile above which a dump is written.
#[derive(Clone, Debug)]
struct LatencyTrigger {
    stage: String,
    quantile: f64,
    threshold_ns: u64,
}

impl FlightRecorder {
    /// Keeps at least the last `window` of trace. Defaults: [`DEFAULT_MAX_BYTES`], dumps into
    /// `flight/`, a 500 ms tail, a 60 s cooldown between dumps, no trigger but
    /// [`ProfilingSession::dump`](crate::ProfilingSession::dump).
    pub fn new(window: Duration) -> Self {
        FlightRecorder {
            window,
            max_bytes: DEFAULT_MAX_BYTES,
            dir: PathBuf::from("flight"),
            tail: Duration::from_millis(500),
            cooldown: Duration::from_secs(60),
            latency: Vec::new(),
            latency_over: Duration::from_secs(1),
            queue_full_for: None,
            on_panic: false,
            on_signal: false,
            on_exit: false,
        }
    }

    /// All the flight recorder's trace memory, in bytes (at least 1 MiB). When the window does
    /// not fit, the oldest part goes first and the dump says how far back it is complete.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Where dumps go (created when the first is written).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// How long recording goes on after a trigger before the dump is written, so the end of
    /// the incident is in it too (default 500 ms; kept in memory besides the window).
    pub fn tail(mut self, tail: Duration) -> Self {
        self.tail = tail;
        self
    }

    /// The least time between two dumps written by triggers (default 60 s): a long incident
    /// writes a few files, not thousands. Triggers that fire meanwhile are counted.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Dumps when stage `stage`'s 99th percentile call time, over the last second (see
    /// [`Self::latency_over`]), is above `threshold`.
    pub fn when_p99_over(self, stage: impl Into<String>, threshold: Duration) -> Self {
        self.when_quantile_over(stage, 0.99, threshold)
    }

    /// Dumps when stage `stage`'s call time at `quantile` (0 to 1) over the last second is
    /// above `threshold`. At least 20 calls in that second are needed to judge, so a single
    /// slow call among few is not an incident.
    pub fn when_quantile_over(
        mut self,
        stage: impl Into<String>,
        quantile: f64,
        threshold: Duration,
    ) -> Self {
        self.latency.push(LatencyTrigger {
            stage: stage.into(),
            quantile,
            threshold_ns: u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX),
        });
        self
    }

    /// The sliding window latency triggers judge over (default 1 s).
    pub fn latency_over(mut self, over: Duration) -> Self {
        self.latency_over = over;
        self
    }

    /// Dumps when a worker queue stays backed up for `duration`: it reached its capacity and
    /// has not drained to half of it since (producers wait at capacity; the dips between are
    /// the same incident).
    pub fn when_queue_full_for(mut self, duration: Duration) -> Self {
        self.queue_full_for = Some(duration);
        self
    }

    /// Dumps when a stage panics (the runner catches and counts the panic).
    pub fn on_stage_panic(mut self, on: bool) -> Self {
        self.on_panic = on;
        self
    }

    /// Dumps when the process receives `SIGUSR2` (`kill -USR2 <pid>`; Linux). The signal's
    /// previous disposition comes back when the session ends.
    pub fn on_signal(mut self, on: bool) -> Self {
        self.on_signal = on;
        self
    }

    /// Also dumps when the session finishes.
    pub fn on_exit(mut self, on: bool) -> Self {
        self.on_exit = on;
        self
    }

    /// The window asked for.
    pub fn window(&self) -> Duration {
        self.window
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.window.is_zero() {
            return Err(Error::InvalidConfig("the flight recorder's window must be longer than 0"));
        }
        if self.max_bytes < 1 << 20 {
            return Err(Error::InvalidConfig(
                "the flight recorder needs at least 1 MiB (`max_bytes`)",
            ));
        }
        if self.latency.iter().any(|t| !(t.quantile > 0.0 && t.quantile <= 1.0)) {
            return Err(Error::InvalidConfig(
                "a latency trigger's quantile must be above 0 and at most 1",
            ));
        }
        if self.on_signal && !cfg!(target_os = "linux") {
            return Err(Error::InvalidConfig("dumping on SIGUSR2 is supported on Linux only"));
        }
        Ok(())
    }
}

/// Why a flight recorder dump was written.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub enum DumpTrigger {
    /// The program asked ([`ProfilingSession::dump`](crate::ProfilingSession::dump)).
    OnDemand {
        /// The reason it gave.
        reason: String,
    },
    /// The process received `SIGUSR2`.
    Signal,
    /// A stage's call time at a quantile was above its threshold.
    Latency {
        /// The stage.
        stage: String,
        /// The quantile judged (0.99 for p99).
        quantile: f64,
        /// What it was over the sliding window, in nanoseconds.
        observed_ns: u64,
        /// The threshold, in nanoseconds.
        threshold_ns: u64,
    },
    /// A stage panicked.
    StagePanicked {
        /// The stage.
        stage: String,
    },
    /// A worker queue stayed full this long.
    QueueFull {
        /// How long it had been full, in nanoseconds.
        for_ns: u64,
    },
    /// The session finished.
    Exit,
}

impl DumpTrigger {
    /// The trigger as the dump's file name says it: `latency-FraudStage`, `queue-full`...
    pub fn slug(&self) -> String {
        let text = match self {
            DumpTrigger::OnDemand { reason } if reason.is_empty() => "on-demand".to_owned(),
            DumpTrigger::OnDemand { reason } => format!("on-demand-{reason}"),
            DumpTrigger::Signal => "signal".to_owned(),
            DumpTrigger::Latency { stage, .. } => format!("latency-{stage}"),
            DumpTrigger::StagePanicked { stage } => format!("panic-{stage}"),
            DumpTrigger::QueueFull { .. } => "queue-full".to_owned(),
            DumpTrigger::Exit => "exit".to_owned(),
        };
        // Safe in a file name everywhere; at most 60 characters.
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(60)
            .collect()
    }
}

impl std::fmt::Display for DumpTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        match self {
            DumpTrigger::OnDemand { reason } if reason.is_empty() => write!(f, "asked for"),
            DumpTrigger::OnDemand { reason } => write!(f, "asked for: {reason}"),
            DumpTrigger::Signal => write!(f, "SIGUSR2"),
            DumpTrigger::Latency { stage, quantile, observed_ns, threshold_ns } => write!(
                f,
                "{stage} p{} {:.2} ms > {:.2} ms",
                quantile * 100.0,
                ms(*observed_ns),
                ms(*threshold_ns)
            ),
            DumpTrigger::StagePanicked { stage } => write!(f, "{stage} panicked"),
            DumpTrigger::QueueFull { for_ns } => write!(f, "queue full for {:.0} ms", ms(*for_ns)),
            DumpTrigger::Exit => write!(f, "session finished"),
        }
    }
}

/// A flight recorder dump that was written.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct FlightDump {
    /// The Chrome trace file.
    pub path: PathBuf,
    /// Why.
    pub trigger: DumpTrigger,
    /// When the trigger fired.
    pub triggered_at: SystemTime,
    /// How far before the trigger the file holds everything recorded (the window, or less
    /// when `max_bytes` could not hold it, or since the session or the last dump began).
    pub complete_before_trigger: Duration,
    /// How far after the trigger it goes (the tail).
    pub after_trigger: Duration,
    /// Slices and instants in it.
    pub slices: u64,
    /// How long writing it took.
    pub write_time: Duration,
    /// The CPU time writing it took (formatting and the system's file writes): what it cost
    /// the workers on a machine they keep busy.
    pub cpu_time: Duration,
}

/// What the report says about the flight recorder.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct FlightSummary {
    /// The window asked for.
    pub window: Duration,
    /// Its memory bound, in bytes.
    pub max_bytes: usize,
    /// The dumps written, in order.
    pub dumps: Vec<FlightDump>,
    /// Triggers that fired during a cooldown (or while a dump was being written): no file.
    pub triggers_in_cooldown: u64,
    /// Dumps that could not be written, with why.
    pub failed: Vec<String>,
    /// Spans (and instants, counter samples) the recorder could not keep because no buffer was
    /// free: 0 unless the writer stalled or `max_bytes` is far too small for the rate.
    pub spans_left_out: u64,
}

/// The dumps of the running (or last) session, for the metrics endpoint.
static PUBLISHED: Mutex<Vec<FlightDump>> = Mutex::new(Vec::new());

/// The dumps the flight recorder of the running (or last) session wrote, in order.
#[cfg(feature = "prometheus")]
pub(crate) fn dumps_written() -> Vec<FlightDump> {
    PUBLISHED.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// What the session and the trigger thread share.
struct Shared {
    config: FlightRecorder,
    trace: NativeTrace,
    started_ns: u64,
    left_out_at_start: u64,
    book: Mutex<Book>,
    /// One dump at a time.
    dumping: Mutex<()>,
    stop: AtomicBool,
    wake: (Mutex<bool>, Condvar),
}

#[derive(Default)]
struct Book {
    dumps: Vec<FlightDump>,
    failed: Vec<String>,
    in_cooldown: u64,
    last_triggered: Option<Instant>,
}

/// A running flight recorder.
pub(crate) struct FlightSession {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
    #[cfg(target_os = "linux")]
    signal: Option<signal::Installed>,
}

impl std::fmt::Debug for FlightSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSession").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl FlightSession {
    /// Starts keeping the window and watching the triggers.
    pub(crate) fn start(
        config: FlightRecorder,
        process_name: &str,
        trace_one_in: u64,
    ) -> Result<Self, Error> {
        config.validate()?;
        PUBLISHED.lock().unwrap_or_else(PoisonError::into_inner).clear();
        #[cfg(target_os = "linux")]
        let signal = if config.on_signal { Some(signal::install()?) } else { None };
        // The program's own spans join the window through the layer when it can be had.
        let _ = super::install_subscriber();
        let keep = config.window + config.tail + super::native::COLLECT_EVERY * 2;
        let keep_ns = u64::try_from(keep.as_nanos()).unwrap_or(u64::MAX);
        let trace =
            NativeTrace::start_window(process_name, keep_ns, config.max_bytes, trace_one_in);
        let shared = Arc::new(Shared {
            config,
            trace,
            started_ns: now_ns(),
            left_out_at_start: crate::trace_records::left_out(),
            book: Mutex::new(Book::default()),
            dumping: Mutex::new(()),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
        });
        let watcher = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("pipeline-flight-recorder".to_owned())
                .spawn(move || watch(&shared))
                .map_err(|source| Error::Spawn { what: "the flight recorder".to_owned(), source })?
        };
        Ok(FlightSession {
            shared,
            watcher: Some(watcher),
            #[cfg(target_os = "linux")]
            signal,
        })
    }

    /// Writes the window now (no tail), whatever the cooldown, on a thread of lowered priority
    /// as every dump is (see [`yield_to_workers`]); waits for it.
    pub(crate) fn dump(&self, reason: &str) -> Result<FlightDump, Error> {
        let trigger = DumpTrigger::OnDemand { reason: reason.to_owned() };
        let (at, at_ns) = (SystemTime::now(), now_ns());
        let shared = &self.shared;
        std::thread::scope(|scope| {
            let writer = std::thread::Builder::new()
                .name("pipeline-flight-dump".to_owned())
                .spawn_scoped(scope, move || {
                    yield_to_workers();
                    dump(shared, trigger, at, at_ns)
                })
                .map_err(|source| Error::Spawn {
                    what: "a flight recorder dump".to_owned(),
                    source,
                })?;
            writer
                .join()
                .unwrap_or(Err(Error::InvalidConfig("the flight recorder's dump thread panicked")))
        })
    }

    /// Stops watching (a dump whose tail is running is written now), dumps if asked to on exit,
    /// lets the window go, and says what was written.
    pub(crate) fn finish(&mut self) -> FlightSummary {
        self.shared.stop.store(true, Ordering::Release);
        {
            let (woken, condvar) = &self.shared.wake;
            *woken.lock().unwrap_or_else(PoisonError::into_inner) = true;
            condvar.notify_all();
        }
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        #[cfg(target_os = "linux")]
        drop(self.signal.take());
        if self.shared.config.on_exit {
            let _ = dump(&self.shared, DumpTrigger::Exit, SystemTime::now(), now_ns());
        }
        self.shared.trace.stop_window();
        let book = self.shared.book.lock().unwrap_or_else(PoisonError::into_inner);
        FlightSummary {
            window: self.shared.config.window,
            max_bytes: self.shared.config.max_bytes,
            dumps: book.dumps.clone(),
            triggers_in_cooldown: book.in_cooldown,
            failed: book.failed.clone(),
            spans_left_out: crate::trace_records::left_out()
                .saturating_sub(self.shared.left_out_at_start),
        }
    }

    /// The dumps written so far.
    pub(crate) fn dumps(&self) -> Vec<FlightDump> {
        self.shared.book.lock().unwrap_or_else(PoisonError::into_inner).dumps.clone()
    }
}

impl Drop for FlightSession {
    fn drop(&mut self) {
        if self.watcher.is_some() {
            let _ = self.finish();
        }
    }
}

/// Writes the window to a new file in the configured directory and books it.
fn dump(
    shared: &Shared,
    trigger: DumpTrigger,
    triggered_at: SystemTime,
    triggered_ns: u64,
) -> Result<FlightDump, Error> {
    let _one_at_a_time = shared.dumping.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = &shared.config.dir;
    let path = dir.join(format!("flight-{}-{}.json", utc_stamp(triggered_at), trigger.slug()));
    let write_error =
        |source| Error::Write { what: "flight recorder dump", path: path.clone(), source };
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| create_new(&path))
        .map_err(write_error)
        .and_then(|file| {
            let (started, cpu_before) = (Instant::now(), crate::clock::thread_cpu_ns());
            let note = serde_json::json!({
                "trigger": trigger.to_string(),
                "triggered_at_us": triggered_ns as f64 / 1e3,
                "window_ms": shared.config.window.as_secs_f64() * 1e3,
            });
            let stages = crate::callsite::stage_names();
            let mut share = CpuShare::of_the_machine(DUMP_SHARE);
            let written = shared
                .trace
                .dump(file, &stages, note, &mut || share.keep())
                .map_err(write_error)?;
            let complete_from = written.complete_after_ns.max(shared.started_ns);
            Ok(FlightDump {
                path: path.clone(),
                trigger: trigger.clone(),
                triggered_at,
                complete_before_trigger: Duration::from_nanos(
                    triggered_ns.saturating_sub(complete_from),
                ),
                after_trigger: Duration::from_nanos(written.ended_ns.saturating_sub(triggered_ns)),
                slices: written.slices,
                write_time: started.elapsed(),
                cpu_time: Duration::from_nanos(
                    crate::clock::thread_cpu_ns().saturating_sub(cpu_before),
                ),
            })
        });
    let mut book = shared.book.lock().unwrap_or_else(PoisonError::into_inner);
    match &result {
        Ok(dump) => {
            book.dumps.push(dump.clone());
            PUBLISHED.lock().unwrap_or_else(PoisonError::into_inner).push(dump.clone());
        }
        Err(error) => book.failed.push(error.to_string()),
    }
    result
}

/// Creates `path`, never replacing a file (two dumps in the same millisecond get `-2`, `-3`...).
fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut candidate = path.to_owned();
    for n in 2.. {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                candidate = path.with_file_name(format!("{stem}-{n}.json"));
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// `2026-12-05T11-45-12.345Z`: UTC, without colons (file names on every system).
fn utc_stamp(at: SystemTime) -> String {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::clock::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// How often the trigger thread looks.
const CHECK_EVERY: Duration = Duration::from_millis(25);
/// Calls a latency window needs before its quantile is judged.
const MIN_CALLS_TO_JUDGE: u64 = 20;

/// The trigger thread: looks every [`CHECK_EVERY`], and when a trigger fires outside the
/// cooldown, waits out the tail and dumps.
fn watch(shared: &Shared) {
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

/// Lowers the calling thread's priority (Linux: nice +10 for this thread alone) before it
/// formats a dump: on a machine whose cores the workers keep busy, the dump then takes the CPU
/// they leave, instead of a share of theirs (2 workers on 2 cores kept 0.71–0.78 of their
/// throughput during a dump at normal priority; BENCHMARKS.md). Its cost is a slower dump there.
fn yield_to_workers() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid takes no arguments; setpriority on this thread's id changes only its own
    // nice value (raising it needs no privilege), and a failure leaves it as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + 10).min(19));
    }
}

/// The share of the machine's CPU a dump may take while it writes (its thread sleeps when it
/// has used more): a dump's formatting costs ~200 ns of CPU per slice whatever its priority,
/// and on a machine whose workers keep every core busy, that CPU is theirs; capped at a tenth,
/// they keep ~90 % of their throughput, and a 2 s window of two busy workers (~900,000 slices)
/// is still written in about a second (BENCHMARKS.md, "The flight recorder").
const DUMP_SHARE: f64 = 0.1;

/// Keeps the calling thread's CPU time at most a share of the wall time since it was made.
struct CpuShare {
    started: Instant,
    cpu_at_start: u64,
    /// Of one core: the machine's share times its cores.
    of_one_core: f64,
}

impl CpuShare {
    /// At most `share` of all the machine's cores.
    fn of_the_machine(share: f64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        CpuShare {
            started: Instant::now(),
            cpu_at_start: crate::clock::thread_cpu_ns(),
            of_one_core: (share * cores as f64).min(1.0),
        }
    }

    /// Sleeps until the CPU used since the start is within the share of the time since.
    fn keep(&mut self) {
        let used = crate::clock::thread_cpu_ns().saturating_sub(self.cpu_at_start);
        let allowed_after = Duration::from_nanos((used as f64 / self.of_one_core) as u64);
        if let Some(ahead) = allowed_after.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
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

#[cfg(target_os = "linux")]
mod signal {
    //! `SIGUSR2` sets a flag the trigger thread reads.

    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::error::Error;

    static RECEIVED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_sigusr2(_: libc::c_int) {
        RECEIVED.store(true, Ordering::Relaxed); // async-signal-safe: one atomic store
    }

    /// Whether the signal came since the last look.
    pub(super) fn take() -> bool {
        RECEIVED.swap(false, Ordering::Relaxed)
    }

    /// The handler, installed; dropping it puts back the signal's previous disposition.
    pub(super) struct Installed {
        previous: libc::sigaction,
    }

    pub(super) fn install() -> Result<Installed, Error> {
        RECEIVED.store(false, Ordering::Relaxed);
        // SAFETY: a zeroed `sigaction` is valid; the handler has the plain signature (no
        // SA_SIGINFO) and only stores to an atomic.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigusr2 as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGUSR2, &action, &mut previous) != 0 {
                return Err(Error::InvalidConfig("cannot install the SIGUSR2 handler"));
            }
            Ok(Installed { previous })
        }
    }

    impl Drop for Installed {
        fn drop(&mut self) {
            // SAFETY: puts back the disposition `sigaction` gave us.
            unsafe { libc::sigaction(libc::SIGUSR2, &self.previous, std::ptr::null_mut()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_the_utc_time_and_a_safe_trigger() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_470_712_345);
        assert_eq!(utc_stamp(at), "2026-12-05T11-38-32.345Z");
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "1970-01-01T00-00-00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(utc_stamp(leap).starts_with("2000-02-29T"));
        let trigger = DumpTrigger::Latency {
            stage: "my crate::Fraud<Stage>".into(),
            quantile: 0.99,
            observed_ns: 7_000_000,
            threshold_ns: 5_000_000,
        };
        assert_eq!(trigger.slug(), "latency-my_crate__Fraud_Stage_");
        assert_eq!(trigger.to_string(), "my crate::Fraud<Stage> p99 7.00 ms > 5.00 ms");
    }

    #[test]
    fn nonsense_settings_are_errors_naming_the_setting() {
        let zero = FlightRecorder::new(Duration::ZERO).validate().unwrap_err();
        assert!(zero.to_string().contains("window"), "{zero}");
        let small = FlightRecorder::new(Duration::from_secs(1)).max_bytes(1000).validate();
        assert!(small.unwrap_err().to_string().contains("max_bytes"));
        let quantile = FlightRecorder::new(Duration::from_secs(1))
            .when_quantile_over("S", 1.5, Duration::from_millis(1))
            .validate();
        assert!(quantile.unwrap_err().to_string().contains("quantile"));
    }
}
