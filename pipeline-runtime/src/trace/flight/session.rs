//! A running flight recorder: the native writer keeping the window, the trigger thread, and
//! writing a dump (its file's name, its tail, the session's book of dumps).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::super::native::{self, NativeTrace};
use super::pacing::{yield_to_workers, DumpPace, DUMP_DEADLINE, DUMP_MOST_SHARE, DUMP_SHARE};
#[cfg(target_os = "linux")]
use super::signal;
use super::watch::watch;
use super::{DumpTrigger, FlightDump, FlightRecorder, FlightSummary, PUBLISHED};
use crate::clock::now_ns;
use crate::error::Error;

/// What the session and the trigger thread share.
pub(super) struct Shared {
    pub(super) config: FlightRecorder,
    pub(super) trace: NativeTrace,
    pub(super) started_ns: u64,
    pub(super) left_out_at_start: u64,
    pub(super) book: Mutex<Book>,
    /// One dump at a time.
    pub(super) dumping: Mutex<()>,
    pub(super) stop: AtomicBool,
    pub(super) wake: (Mutex<bool>, Condvar),
}

#[derive(Default)]
pub(super) struct Book {
    pub(super) dumps: Vec<FlightDump>,
    pub(super) failed: Vec<String>,
    pub(super) in_cooldown: u64,
    pub(super) last_triggered: Option<Instant>,
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
        let _ = super::super::install_subscriber();
        let keep = config.window + config.tail + native::COLLECT_EVERY * 2;
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
pub(super) fn dump(
    shared: &Shared,
    trigger: DumpTrigger,
    triggered_at: SystemTime,
    triggered_ns: u64,
) -> Result<FlightDump, Error> {
    let _one_at_a_time = shared.dumping.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = &shared.config.dir;
    let path = dir.join(format!(
        "flight-{}-{}.json",
        crate::clock::utc_text(triggered_at, '-', true),
        trigger.slug()
    ));
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
            let mut pace = DumpPace::new(DUMP_SHARE, DUMP_MOST_SHARE, DUMP_DEADLINE);
            let written = shared
                .trace
                .dump(file, &stages, note, &mut |done| pace.keep(done))
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
