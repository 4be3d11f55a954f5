//! Sampled CPU profiles (`Profiler::sample_cpu`): hot functions nobody annotated, charged to the
//! stage they ran in; samples outside stages counted apart; and a signal handler that neither
//! allocates nor waits on a lock the workers hold, checked with the counting allocator installed.
// Asserts recorded figures (`tests/off.rs` covers the off build); the sampler is Linux-only.
#![cfg(all(
    not(feature = "off"),
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use pipeline::{
    profiled, stage, CountingAllocator, Pipeline, Profiler, Report, StageError, WorkerConfig,
};

/// The counting allocator, plus a count of allocations made inside the sampler's handler.
struct Checked;

static COUNTING: CountingAllocator = CountingAllocator::system();
static ALLOCATIONS_IN_HANDLER: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Checked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if pipeline::__private::in_cpu_sampler() {
            ALLOCATIONS_IN_HANDLER.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { COUNTING.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if pipeline::__private::in_cpu_sampler() {
            ALLOCATIONS_IN_HANDLER.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { COUNTING.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if pipeline::__private::in_cpu_sampler() {
            ALLOCATIONS_IN_HANDLER.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { COUNTING.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Checked = Checked;

/// Burns about `rounds` units of CPU.
#[inline(always)]
fn spin(seed: u64, rounds: u64) -> u64 {
    let mut h = seed;
    for round in 0..rounds {
        h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Four fifths of the split stage's work. Not annotated.
#[inline(never)]
fn heavy_helper(n: u64) -> u64 {
    spin(n, 4 * UNIT)
}

/// One fifth of it. Not annotated.
#[inline(never)]
fn light_helper(n: u64) -> u64 {
    spin(n ^ 1, UNIT)
}

const UNIT: u64 = 20_000;
/// One to two seconds of CPU, optimised or not: the kernel fires CPU timers on its tick (250 Hz
/// here), so the stage gets 250 to 400 samples, enough to judge shares within a few points.
const EVENTS: u64 = if cfg!(debug_assertions) { 2_500 } else { 10_000 };

struct SplitStage;

#[stage]
impl SplitStage {
    fn process(&self, n: u64) -> u64 {
        heavy_helper(n) ^ light_helper(n)
    }
}

fn cpu(report: &Report) -> &pipeline::report::cpu::CpuProfile {
    report.cpu_samples.as_ref().expect("the session sampled")
}

fn assert_counts_add_up(cpu: &pipeline::report::cpu::CpuProfile) {
    assert!(cpu.samples_taken > 0);
    assert_eq!(
        cpu.samples_in_stages + cpu.samples_outside_stages + cpu.samples_dropped,
        cpu.samples_taken,
        "{cpu:?}"
    );
    let per_stage: u64 = cpu.stages.iter().map(|stage| stage.samples).sum();
    assert_eq!(per_stage, cpu.samples_in_stages);
    let per_stack: u64 = cpu.stacks.iter().map(|stack| stack.samples).sum();
    assert_eq!(per_stack, cpu.samples_in_stages + cpu.samples_outside_stages);
}

/// Annotated: inlined into its stage or not as the compiler likes, its samples must carry the
/// report's name either way.
#[profiled]
fn weigh_order(n: u64) -> u64 {
    heavy_helper(n) ^ spin(n, UNIT)
}

struct WeighStage;

#[stage]
impl WeighStage {
    fn process(&self, n: u64) -> u64 {
        weigh_order(n)
    }
}

#[test]
fn the_pprof_file_names_functions_as_the_report_does_and_says_their_lines() {
    let _serial = common::exclusive();
    let session = Profiler::new().sample_cpu(999).start().unwrap();
    let pipeline = Pipeline::new().stage(WeighStage);
    pipeline.run_concurrent(0..EVENTS / 2, WorkerConfig::new(2).queue(64)).unwrap();
    let report = session.finish().unwrap();
    let cpu = cpu(&report);
    let path = std::env::temp_dir().join(format!("names-{}.pb", std::process::id()));
    cpu.write_pprof(&path).unwrap();
    let pprof = common::pprof::read(&std::fs::read(&path).unwrap());
    let _ = std::fs::remove_file(&path);
    let in_pprof = pprof.function_names();

    // Every function the report names is spelled the same wherever the pprof file has it: a
    // function of this file whose last segment is the report's is the report's (another
    // crate's `Backoff::spin` is not this file's `spin`).
    let weigh = report.stage("WeighStage").expect("the stage ran");
    let named: Vec<&str> = weigh.functions.iter().map(|f| f.name.as_str()).collect();
    assert!(named.contains(&"cpu_sampling::weigh_order"), "{named:?}");
    let of_this_file: Vec<&str> = pprof
        .functions
        .values()
        .filter(|(_, file)| file.ends_with("cpu_sampling.rs"))
        .map(|(name, _)| name.as_str())
        .collect();
    // `spin` is inlined even in a debug build: debug info names it without its module.
    for name in named.iter().chain(&["cpu_sampling::heavy_helper", "cpu_sampling::spin"]) {
        let last = name.rsplit("::").next().unwrap();
        let spelled: Vec<&&str> =
            of_this_file.iter().filter(|f| f.rsplit("::").next() == Some(last)).collect();
        assert!(!spelled.is_empty(), "{name} was never sampled: {of_this_file:?}");
        assert!(spelled.iter().all(|f| **f == *name), "{name} spelled {spelled:?}");
    }
    // The stage's body is the stage's `process`, and no closure of the toolkit sits above it.
    assert!(in_pprof.contains(&"WeighStage::process"), "{in_pprof:?}");
    for stack in cpu.stacks.iter().filter(|s| s.stage == "WeighStage") {
        assert!(!stack.frames[0].contains("{closure"), "{:?}", stack.frames);
    }
    // Functions carry their file, locations their lines; the profile its time and duration,
    // and a comment with the rate asked for and the one achieved.
    let lines = pprof.lines_of("cpu_sampling::heavy_helper");
    assert!(!lines.is_empty(), "no line for heavy_helper: {:?}", pprof.locations);
    assert!(pprof
        .functions
        .values()
        .any(|(name, file)| name == "cpu_sampling::heavy_helper"
            && file.ends_with("cpu_sampling.rs")));
    assert!(pprof.time_nanos > 1_700_000_000_000_000_000, "{}", pprof.time_nanos);
    assert!(pprof.duration_nanos > 0);
    assert!(pprof
        .comments
        .iter()
        .any(|c| c.contains("asked for 999 Hz") && c.contains("per CPU second")));
}

#[test]
fn an_80_20_split_between_two_unannotated_helpers_comes_out_within_10_points() {
    let _serial = common::exclusive();
    let pipeline = Pipeline::new().stage(SplitStage);
    let session = Profiler::new().sample_cpu(999).start().unwrap();
    let run = pipeline.run_concurrent(0..EVENTS, WorkerConfig::new(2).queue(64)).unwrap();
    let report = session.finish().unwrap();
    assert_eq!(run.completed, EVENTS);
    let cpu = cpu(&report);
    assert_counts_add_up(cpu);
    let stage = cpu.stage("SplitStage").unwrap_or_else(|| panic!("no SplitStage in {cpu:#?}"));
    assert!(stage.samples >= 150, "too few samples to judge: {}", stage.samples);
    let share = |name: &str| {
        stage
            .function_ending_with(name)
            .unwrap_or_else(|| panic!("{name} not among {:#?}", stage.functions))
            .total_share
    };
    let (heavy, light) = (share("heavy_helper"), share("light_helper"));
    println!("{report}\nheavy {heavy:.3}, light {light:.3}");
    assert!((heavy - 0.8).abs() <= 0.10, "heavy_helper has {heavy:.3} of the stage's samples");
    assert!((light - 0.2).abs() <= 0.10, "light_helper has {light:.3} of the stage's samples");
    // The paths under the stage start below the toolkit's frames and go through a helper.
    for path in cpu.stacks.iter().filter(|s| s.stage == "SplitStage" && s.samples > 5) {
        assert!(path.frames.iter().any(|f| f.ends_with("_helper")), "{:?}", path.frames);
        assert!(
            !path.frames.iter().any(|f| f.starts_with("pipeline_runtime::")),
            "{:?}",
            path.frames
        );
    }
}

/// Busy work on the test's own thread, outside every stage.
#[inline(never)]
fn work_outside_stages(until: std::time::Instant) -> u64 {
    let mut h = 0;
    while std::time::Instant::now() < until {
        h ^= spin(h, 1_000);
    }
    h
}

#[test]
fn samples_outside_stages_are_reported_apart_and_the_counts_add_up() {
    let _serial = common::exclusive();
    let pipeline = Pipeline::new().stage(SplitStage);
    let session = Profiler::new().sample_cpu(999).start().unwrap();
    for n in 0..200 {
        pipeline.run(n).unwrap();
    }
    black_box(work_outside_stages(std::time::Instant::now() + Duration::from_millis(200)));
    // A report taken while the session runs has the samples so far.
    let so_far = session.report().cpu_samples.expect("sampled so far");
    assert!(so_far.samples_taken > 0);
    let report = session.finish().unwrap();
    assert!(cpu(&report).samples_taken >= so_far.samples_taken);
    let cpu = cpu(&report);
    assert_counts_add_up(cpu);
    assert!(cpu.samples_outside_stages > 0 && cpu.samples_in_stages > 0, "{cpu:#?}");
    let outside = &cpu.outside_stages;
    assert_eq!(outside.name, pipeline::report::cpu::OUTSIDE_STAGES);
    assert!(
        outside.functions.iter().any(|f| f.name.ends_with("work_outside_stages")),
        "{:#?}",
        outside.functions
    );
    assert!(cpu
        .stage("SplitStage")
        .unwrap()
        .function("cpu_sampling::work_outside_stages")
        .is_none());
    // The JSON carries the section; the text report prints it.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["cpu_samples"]["samples_taken"], cpu.samples_taken);
    assert!(report.to_string().contains("CPU samples at 999 Hz"), "{report}");
}

/// Allocates, takes a lock every worker wants, and sometimes panics (so the unwinder runs on
/// the workers while they are sampled).
struct HostileStage {
    shared: Arc<Mutex<Vec<u64>>>,
}

#[stage]
impl HostileStage {
    fn process(&self, n: u64) -> Result<u64, StageError> {
        let mut shared = self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        shared.push(spin(n, 20_000));
        let scratch: Vec<u64> = (0..64).map(|i| i * n).collect();
        if shared.len() > 256 {
            shared.clear();
        }
        drop(shared);
        if n % 50 == 7 {
            panic!("stage {n} panics on purpose");
        }
        Ok(black_box(scratch).len() as u64 + n)
    }
}

#[test]
fn the_handler_never_allocates_nor_waits_for_the_workers_locks() {
    let _serial = common::exclusive();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // the stage's panics are expected
    let shared = Arc::new(Mutex::new(Vec::new()));
    let pipeline = Pipeline::new().stage(HostileStage { shared });
    ALLOCATIONS_IN_HANDLER.store(0, Ordering::Relaxed);
    // The highest rate, so that many samples land inside malloc, the lock and the unwinder.
    let session = Profiler::new().sample_cpu(10_000).start().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let run = pipeline.run_concurrent(0..20_000u64, WorkerConfig::new(2).queue(32));
        let _ = done.send(());
        run
    });
    let in_time = finished.recv_timeout(Duration::from_secs(120)).is_ok();
    assert!(in_time, "the sampled run did not finish in 120 s: a handler is stuck");
    let run = worker.join().unwrap().unwrap();
    let report = session.finish().unwrap();
    std::panic::set_hook(previous_hook);
    assert_eq!(run.submitted, run.completed + run.rejected + run.failed);
    assert_eq!(run.failed, 400);
    let cpu = cpu(&report);
    assert_counts_add_up(cpu);
    assert!(cpu.samples_taken >= 50, "{cpu:#?}");
    assert_eq!(ALLOCATIONS_IN_HANDLER.load(Ordering::Relaxed), 0);
}

#[test]
fn a_bad_rate_is_refused_and_the_next_session_starts() {
    let _serial = common::exclusive();
    for hz in [0, 10_001, u32::MAX] {
        let error = Profiler::new().sample_cpu(hz).start().unwrap_err();
        assert!(matches!(error, pipeline::Error::CpuSampling(_)), "{error}");
        assert!(error.to_string().contains(&hz.to_string()), "{error}");
    }
    let session = Profiler::new().start().unwrap();
    assert!(session.finish().unwrap().cpu_samples.is_none());
}

/// SIGPROF's disposition now.
fn sigprof_handler() -> libc::sighandler_t {
    unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut now);
        now.sa_sigaction
    }
}

extern "C" fn programs_own_handler(_: libc::c_int) {}

#[test]
fn the_programs_own_sigprof_handler_is_put_back() {
    let _serial = common::exclusive();
    let own = programs_own_handler as *const () as libc::sighandler_t;
    unsafe { libc::signal(libc::SIGPROF, own) };
    let session = Profiler::new().sample_cpu(99).start().unwrap();
    assert_ne!(sigprof_handler(), own);
    drop(session); // dropping stops sampling as finishing does
    assert_eq!(sigprof_handler(), own);
    unsafe { libc::signal(libc::SIGPROF, libc::SIG_DFL) };
    let session = Profiler::new().sample_cpu(99).start().unwrap();
    session.finish().unwrap();
    // Default before: ignored after, so that a signal still pending cannot end the process.
    assert_eq!(sigprof_handler(), libc::SIG_IGN);
}

/// The user's model: it spends its time in libm's cosine.
#[inline(never)]
fn risk_model(x: f64) -> f64 {
    let mut acc = 0.0;
    for i in 0..2_000 {
        acc += black_box(x + f64::from(i)).cos().sin().exp();
    }
    acc
}

struct Risk;

#[stage]
impl Risk {
    fn process(&self, n: u64) -> u64 {
        risk_model(n as f64) as u64
    }
}

#[test]
fn a_hot_spot_inside_libm_is_named_by_the_users_function_that_called_it() {
    let _serial = common::exclusive();
    let profiler = Profiler::new().sample_cpu(999).start().unwrap();
    let events = if cfg!(debug_assertions) { 4_000 } else { 8_000 };
    Pipeline::new().stage(Risk).run_concurrent(0..events, WorkerConfig::new(2)).unwrap();
    let report = profiler.finish().unwrap();
    let cpu = report.cpu_samples.as_ref().expect("sampled");
    let stage = cpu.stage("Risk").expect("samples in the stage");
    let hot = stage.hot_spot().expect("a hot spot");
    assert!(hot.function.ends_with("risk_model"), "{hot:?}\n{report}");
    let inside = hot.inside.as_ref().unwrap_or_else(|| panic!("in libm: {:?}", stage.hot_spots));
    assert!(inside.library.starts_with("libm"), "{hot:?}");
    assert!(inside.samples * 2 >= hot.samples, "most of its time in libm: {hot:?}");
    let diagnosis = report.diagnosis();
    assert!(diagnosis.contains("risk_model (in libm"), "{diagnosis}");
}
