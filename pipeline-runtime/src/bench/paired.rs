//! Paired comparison of two builds: the old and the new build of one benchmark run as two
//! processes, fed the same batches of events in alternation (ABAB or BABA at random), so that
//! whatever the machine does affects both sides of each pair alike. This is CI's case: the old
//! code and the new code are two builds, and no stored baseline is needed.
//!
//! The benchmark binary calls [`Bench::main`]. Started by [`Bench::paired`] (or `pipeline-prof
//! paired`) with [`SERVE_ENV`] set, it serves batches on its standard input and output instead
//! of running: one line in, `batch FIRST`; one line out, `pipeline-bench batch NS ALLOCATIONS`.
//! Anything before `pipeline-bench ` on a line, and lines without it, are ignored, so a test
//! harness or the benchmark's own prints cannot confuse the protocol.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::runner::{Bench, PairedSamples};
use crate::alloc::{installed_allocator, AllocatorKind};
use crate::error::Error;
use crate::pipeline::Pipeline;

/// Set (to anything) in a benchmark binary's environment by [`Bench::paired`]: [`Bench::main`]
/// then serves batches instead of running.
pub const SERVE_ENV: &str = "PIPELINE_BENCH_SERVE";

/// Every protocol line starts with this.
const PREFIX: &str = "pipeline-bench ";
/// The protocol's version, in the greeting.
const PROTOCOL: u32 = 1;

impl Bench {
    /// A benchmark binary's `main` (with `harness = false`): runs the benchmark and prints its
    /// result; started by [`Bench::paired`] or `pipeline-prof paired`, serves timed batches to
    /// it instead.
    ///
    /// Given `--against OLD` (`cargo bench --bench fraud -- --against path/to/old/fraud-<hash>`),
    /// it is the CI gate itself: this build paired with the old build `OLD`, the table printed,
    /// and the process exits with status 1 when [`Comparison::gate`](super::Comparison::gate)
    /// fails (a regression, or in CI a comparison that could not judge).
    ///
    /// ```no_run
    /// // benches/fraud.rs, with `harness = false` for it in Cargo.toml
    /// use pipeline_runtime::{bench::Bench, Pipeline, Stage, StageResult};
    /// struct Fraud;
    /// impl Stage<u64> for Fraud {
    ///     type Out = u64;
    ///     fn name(&self) -> &str { "Fraud" }
    ///     fn process(&self, amount: u64) -> StageResult<u64> { Ok(Some(amount.rotate_left(3))) }
    /// }
    /// fn main() -> Result<(), pipeline_runtime::Error> {
    ///     Bench::new("fraud").main(&Pipeline::new().stage(Fraud), |i| i)
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run); [`Error::PairedBench`] when serving and the coordinator's input
    /// cannot be read.
    pub fn main<E, O>(
        &self,
        pipeline: &Pipeline<E, O>,
        workload: impl Fn(u64) -> E,
    ) -> Result<(), Error> {
        if std::env::var_os(SERVE_ENV).is_some() {
            return self.serve(pipeline, &workload);
        }
        let args: Vec<String> = std::env::args().collect();
        if args.iter().any(|arg| arg == "--test") {
            return Ok(()); // `cargo test --benches`: nothing to time
        }
        if let Some(at) = args.iter().position(|arg| arg == "--against") {
            let Some(old) = args.get(at + 1) else {
                return Err(Error::PairedBench {
                    program: args[0].clone(),
                    reason: "`--against` needs the old build's benchmark binary after it".into(),
                });
            };
            let this = std::env::current_exe().map_err(|error| Error::PairedBench {
                program: args[0].clone(),
                reason: format!("cannot find its own binary to pair with `{old}`: {error}"),
            })?;
            let comparison = self.paired(Command::new(old), Command::new(this))?;
            println!("{comparison}");
            if let Err(failure) = comparison.gate(super::in_ci()) {
                eprintln!("{}", failure.lines().next().unwrap_or_default());
                std::process::exit(1);
            }
            return Ok(());
        }
        println!("{}", self.run(pipeline, workload)?);
        Ok(())
    }

    /// Serves batches on stdin/stdout until told to quit or stdin closes.
    fn serve<E, O>(
        &self,
        pipeline: &Pipeline<E, O>,
        workload: &impl Fn(u64) -> E,
    ) -> Result<(), Error> {
        let allocations = installed_allocator() == AllocatorKind::Counting;
        let mut out = std::io::stdout().lock();
        let failed = |error: std::io::Error| Error::PairedBench {
            program: std::env::args().next().unwrap_or_default(),
            reason: format!("lost its coordinator: {error}"),
        };
        // On a line of its own, whatever was printed before.
        writeln!(out, "\n{PREFIX}hello {PROTOCOL} {} {}", self.batch, self.name).map_err(failed)?;
        out.flush().map_err(failed)?;
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(failed)?;
            let mut words = line.split_whitespace();
            match (words.next(), words.next().and_then(|first| first.parse::<u64>().ok())) {
                (Some("batch"), Some(first)) => {
                    let (ns, allocated) = self.measure_batch(pipeline, workload, first);
                    let per_event =
                        if allocations { allocated as f64 / self.batch as f64 } else { -1.0 };
                    writeln!(out, "{PREFIX}batch {ns} {per_event}").map_err(failed)?;
                    out.flush().map_err(failed)?;
                }
                _ => break, // `quit`, or anything else: the coordinator is done
            }
        }
        Ok(())
    }

    /// Compares two builds of one benchmark (each a program that calls [`Bench::main`]): both
    /// started with [`SERVE_ENV`] set, fed the same batches of events in alternation (each side
    /// twice per sample, ABAB or BABA at random, each side's faster batch kept), and decided on
    /// the median of the per-pair ratios with a bootstrap interval, as [`compare`](Self::compare)
    /// decides two pipelines in one process. This `Bench`'s samples, warm-up, tolerances and
    /// seed apply; the name and batch are the builds' own, and must agree.
    ///
    /// # Errors
    ///
    /// [`Error::PairedBench`] when a build cannot be started, does not answer as a benchmark
    /// (it does not call `Bench::main`), dies, or names another benchmark or batch than the
    /// other.
    pub fn paired(
        &self,
        mut before: Command,
        mut after: Command,
    ) -> Result<super::Comparison, Error> {
        for command in [&mut before, &mut after] {
            same_cpu_and_layout(command);
        }
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut pairs = PairedSamples::default();
        let mut measured = true;
        let mut bench: Option<Bench> = None;
        let mut programs = (String::new(), String::new());
        // The samples are spread over several launches of each build: a process's memory
        // layout can make it run a few percent faster or slower all its life, identical code
        // or not, and only other launches tell that apart from the code.
        let launches = LAUNCHES.min(self.samples.max(1));
        for launch in 0..launches {
            let samples = self.samples / launches + usize::from(launch < self.samples % launches);
            // Started in alternating order, so neither build is always the first.
            let (mut old, mut new) = if launch % 2 == 0 {
                let old = Served::start(&mut before)?;
                (old, Served::start(&mut after)?)
            } else {
                let new = Served::start(&mut after)?;
                (Served::start(&mut before)?, new)
            };
            if (old.name.as_str(), old.batch) != (new.name.as_str(), new.batch) {
                return Err(new.error(format!(
                    "serves benchmark `{}` with batches of {}, and the other build `{}` with \
                     batches of {}: pair two builds of the same benchmark",
                    new.name, new.batch, old.name, old.batch
                )));
            }
            let bench = bench.get_or_insert_with(|| Bench {
                name: old.name.clone(),
                batch: old.batch,
                ..self.clone()
            });
            for round in 0..bench.warmup as u64 {
                old.batch(round * bench.batch)?;
                new.batch(round * bench.batch)?;
            }
            for sample in 0..samples as u64 {
                let first = sample * bench.batch;
                let (mut b, mut a) = ((f64::INFINITY, 0.0), (f64::INFINITY, 0.0));
                let old_first = rng.bool();
                for turn in 0..4 {
                    let (side, best) = if (turn % 2 == 0) == old_first {
                        (&mut old, &mut b)
                    } else {
                        (&mut new, &mut a)
                    };
                    let (ns, allocations) = side.batch(first)?;
                    measured &= allocations >= 0.0;
                    *best = (best.0.min(ns), allocations);
                }
                pairs.push(b, a);
            }
            old.quit();
            new.quit();
            programs = (old.program.clone(), new.program.clone());
        }
        let bench = bench.expect("at least one launch");
        let mut comparison = pairs.judge(&bench, measured, &mut rng);
        comparison.notes.push(format!(
            "two builds, paired over {launches} launches of each: `{}` against `{}`",
            programs.0, programs.1
        ));
        Ok(comparison)
    }
}

/// How many times each build is started in a paired comparison (the samples are spread over
/// the launches).
const LAUNCHES: usize = 3;

/// One build, serving batches.
struct Served {
    program: String,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    name: String,
    batch: u64,
}

impl Served {
    fn start(command: &mut Command) -> Result<Self, Error> {
        let program = format!("{:?}", command.get_program());
        let program = program.trim_matches('"').to_owned();
        let mut child = command
            .env(SERVE_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| Error::PairedBench {
                program: program.clone(),
                reason: format!("cannot be started: {error}"),
            })?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        let mut served = Served { program, child, input, output, name: String::new(), batch: 0 };
        let hello = served.line()?;
        let mut words = hello.splitn(4, ' ');
        match (words.next(), words.next(), words.next().and_then(|b| b.parse().ok()), words.next())
        {
            (Some("hello"), Some(version), Some(batch), Some(name))
                if version == PROTOCOL.to_string() =>
            {
                served.batch = batch;
                served.name = name.to_owned();
                Ok(served)
            }
            _ => Err(served.error(format!("greeted with {hello:?}, not a benchmark's hello"))),
        }
    }

    /// The next protocol line (without its prefix), skipping any other output.
    fn line(&mut self) -> Result<String, Error> {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.output.read_line(&mut line);
            match read {
                Ok(0) | Err(_) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(self.error(format!(
                        "ended ({status}) without answering as a benchmark: does its `main` call \
                         `Bench::main`?"
                    )));
                }
                Ok(_) => {
                    // Anywhere in the line: a test harness may have printed before it.
                    if let Some(at) = line.find(PREFIX) {
                        return Ok(line[at + PREFIX.len()..].trim_end().to_owned());
                    }
                }
            }
        }
    }

    /// Times the batch starting at event `first`: (ns per event, allocations per event or -1).
    fn batch(&mut self, first: u64) -> Result<(f64, f64), Error> {
        if let Err(error) = writeln!(self.input, "batch {first}").and_then(|()| self.input.flush())
        {
            return Err(self.error(format!("stopped reading its input: {error}")));
        }
        let answer = self.line()?;
        let mut words = answer.split(' ');
        match (
            words.next(),
            words.next().and_then(|ns| ns.parse::<f64>().ok()),
            words.next().and_then(|a| a.parse::<f64>().ok()),
        ) {
            (Some("batch"), Some(ns), Some(allocations)) if ns.is_finite() && ns > 0.0 => {
                Ok((ns, allocations))
            }
            _ => Err(self.error(format!("answered {answer:?} to a batch"))),
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::PairedBench { program: self.program.clone(), reason }
    }

    fn quit(&mut self) {
        let _ = writeln!(self.input, "quit");
        let _ = self.input.flush();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // A build left serving after an error is stopped, never left running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Pins the build to one CPU, the same for both builds, and turns off address-space
/// randomisation for it. Two identical processes left to the scheduler settle on different
/// cores, and on a shared machine (a VM's vCPUs, cores another process uses) cores are not
/// alike: identical builds then read up to 15 % apart, every run. The builds never run at once,
/// so sharing one core costs nothing, and each pair of batches then meets the same core. A
/// randomised layout (where the stack and heap land) can move a process's speed by a few
/// percent for its whole life; without it, identical builds lay out alike.
#[cfg(target_os = "linux")]
fn same_cpu_and_layout(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // The last CPU this process may use (read before the fork, so the child only sets it).
    // SAFETY: `sched_getaffinity` writes into the set it is given, of the size given.
    let cpu = unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        (0..libc::CPU_SETSIZE as usize).rev().find(|&cpu| libc::CPU_ISSET(cpu, &allowed))
    };
    // SAFETY: between fork and exec the closure only makes system calls (async-signal-safe),
    // on values built on its own stack; it does not allocate.
    unsafe {
        command.pre_exec(move || {
            if let Some(cpu) = cpu {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                // Best effort: a build that cannot be pinned still runs.
                let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            let current = libc::personality(0xffff_ffff);
            if current != -1 {
                let _ = libc::personality((current | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong);
            }
            Ok(())
        });
    }
}

/// Elsewhere the scheduler places the builds and lays them out.
#[cfg(not(target_os = "linux"))]
fn same_cpu_and_layout(_: &mut Command) {}
