//! `pipeline-prof`: summarise a Chrome trace or a saved report (or several, from several
//! processes, merged), compare two runs, draw a flame graph. The logic lives in [`pipeline::analysis`]; this is its command line.
//!
//! Exit status: 0 on success, 1 when `diff --fail-on-regression` or `paired` found a regression
//! (or `paired` could not judge, in CI), 2 when an input cannot be read (or the command line is
//! wrong).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pipeline::analysis::{Profile, ProfileDiff, ProfileSource};
use pipeline::bench::Bench;

/// Read what a profiled pipeline wrote: Chrome traces (`Profiler::chrome_trace`, or any
/// tracing-chrome program) and reports saved with `Report::write_json`.
#[derive(Parser)]
#[command(name = "pipeline-prof", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the per-stage and per-function table (calls, total, self, p50, p99, allocations).
    ///
    /// A trace cut short (the process was killed) is summarised up to where it stops. Several
    /// files (one per process of a fleet) are merged into one profile: calls and totals added,
    /// traces' distributions merged exactly, each input listed.
    Summary {
        /// Chrome trace JSONs or saved report JSONs.
        #[arg(required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        /// Print the figures as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Compare two runs, per stage and function, largest impact first. Each side may be several
    /// files separated by commas (`a1.json,a2.json`): the processes of a fleet, merged.
    Diff {
        /// The run before the change (traces or saved reports; several: comma-separated).
        #[arg(value_parser = paths)]
        before: Paths,
        /// The run after the change (traces or saved reports; several: comma-separated).
        #[arg(value_parser = paths)]
        after: Paths,
        /// Exit with status 1 if any stage's or function's median call got slower by more than
        /// PCT percent (beyond the noise).
        #[arg(long, value_name = "PCT", value_parser = percent)]
        fail_on_regression: Option<f64>,
        /// Median moves under PCT percent count as noise (identical runs of a traced pipeline
        /// differ by up to 5 % for stages of tens of µs, up to 30 % for rows of a few µs).
        #[arg(long, value_name = "PCT", value_parser = percent, default_value = "10")]
        noise: f64,
        /// Print the comparison as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Compare two builds of one benchmark (the old code's and the new code's), interleaved in
    /// one run: the CI gate. Each is a benchmark binary whose `main` calls `Bench::main`; both
    /// are fed the same batches of events in alternation and judged on the paired ratios.
    ///
    /// Exit status 1 when a metric regressed, and, in CI (`CI` set), when the comparison could
    /// not judge (unless --allow-inconclusive).
    Paired {
        /// The old build's benchmark binary (e.g. `target/release/deps/fraud-<hash>` of the
        /// base commit).
        before: PathBuf,
        /// The new build's benchmark binary.
        after: PathBuf,
        /// Pairs of batches to time (each side twice per pair).
        #[arg(long, default_value_t = 30)]
        samples: usize,
        /// Warm-up batches per side.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// A slowdown beyond PCT percent (and beyond the noise) regresses.
        #[arg(long, value_name = "PCT", value_parser = percent, default_value = "10")]
        tolerance: f64,
        /// More allocations per event than PCT percent regresses (default 0: any more).
        #[arg(long, value_name = "PCT", value_parser = percent, default_value = "0")]
        allocation_tolerance: f64,
        /// Let a comparison that could not judge pass in CI too.
        #[arg(long)]
        allow_inconclusive: bool,
        /// Print the comparison as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Draw an SVG flame graph: stages at the bottom, functions above, each as wide as its
    /// total time (its self time is the part with nothing above it).
    Flamegraph {
        /// A Chrome trace JSON or a saved report JSON.
        path: PathBuf,
        /// Where to write the SVG.
        #[arg(short, long, default_value = "profile.svg")]
        output: PathBuf,
        /// The graph's title (default: the input's file name).
        #[arg(long)]
        title: Option<String>,
    },
}

/// One side of a diff: a file, or several separated by commas.
#[derive(Clone, Debug)]
struct Paths(Vec<PathBuf>);

fn paths(text: &str) -> Result<Paths, String> {
    let paths: Vec<PathBuf> =
        text.split(',').filter(|part| !part.is_empty()).map(PathBuf::from).collect();
    if paths.is_empty() {
        return Err(format!("`{text}` names no file"));
    }
    Ok(Paths(paths))
}

/// A percentage on the command line, as a fraction.
fn percent(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim_end_matches('%').parse().map_err(|_| {
        format!("`{text}` is not a percentage: write a number such as 10 (meaning 10 %)")
    })?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("`{text}` is not a percentage: it must be 0 or more"));
    }
    Ok(value / 100.0)
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pipeline-prof: {error}");
            ExitCode::from(2)
        }
    }
}

/// Prints `text` and a newline on standard output; a full disk or a closed pipe is an error
/// (exit status 2 with the reason), not a panic.
fn emit(text: &dyn std::fmt::Display) -> Result<(), pipeline::Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").and_then(|()| stdout.flush()).map_err(|source| {
        pipeline::Error::Write { what: "output", path: "standard output".into(), source }
    })
}

/// Reads one profile, or several merged, warning on stderr when a trace had to be cut short.
fn load_all(paths: &[PathBuf]) -> Result<Profile, pipeline::Error> {
    if let [path] = paths {
        return load(path);
    }
    let profile = Profile::read_merged(paths)?;
    if let ProfileSource::Merged(from) = &profile.source {
        for input in &from.inputs {
            if let Some(stop) = &input.cut {
                eprintln!(
                    "pipeline-prof: warning: `{}` stops early at {stop}; using what comes before",
                    input.path
                );
            }
        }
    }
    Ok(profile)
}

/// Reads a profile, warning on stderr when a trace had to be cut short.
fn load(path: &Path) -> Result<Profile, pipeline::Error> {
    let profile = Profile::read(path)?;
    if let Some(read) = profile.trace_read() {
        if let Some(stop) = &read.cut {
            eprintln!(
                "pipeline-prof: warning: `{}` stops early at {stop}; using the {} events before \
                 that point ({} slices still open there left out)",
                path.display(),
                read.events,
                read.counts.unclosed
            );
        }
    }
    Ok(profile)
}

fn run(command: Command) -> Result<ExitCode, pipeline::Error> {
    match command {
        Command::Summary { paths, json } => {
            let profile = load_all(&paths)?;
            if json {
                emit(&profile.to_json())?;
            } else {
                emit(&profile)?;
            }
        }
        Command::Diff { before, after, fail_on_regression, noise, json } => {
            let diff =
                ProfileDiff::with_noise_floor(&load_all(&before.0)?, &load_all(&after.0)?, noise);
            if json {
                emit(&diff.to_json())?;
            } else {
                emit(&diff)?;
            }
            if let Some(threshold) = fail_on_regression {
                let regressions = diff.regressions(threshold);
                if !regressions.is_empty() {
                    for change in regressions {
                        eprintln!(
                            "pipeline-prof: regression: {} median call {:+.1} % (limit {:.1} %)",
                            change.label(),
                            change.p50_change().unwrap_or_default() * 100.0,
                            threshold * 100.0
                        );
                    }
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::Paired {
            before,
            after,
            samples,
            warmup,
            tolerance,
            allocation_tolerance,
            allow_inconclusive,
            json,
        } => {
            let bench = Bench::new("paired")
                .samples(samples)
                .warmup(warmup)
                .tolerance(tolerance)
                .allocation_tolerance(allocation_tolerance)
                .allow_inconclusive(allow_inconclusive);
            let comparison = bench
                .paired(std::process::Command::new(&before), std::process::Command::new(&after))?;
            if json {
                emit(&comparison.to_json())?;
            } else {
                emit(&comparison)?;
            }
            if let Err(failure) = comparison.gate(pipeline::bench::in_ci()) {
                let first = failure.lines().next().unwrap_or_default();
                eprintln!("pipeline-prof: {first}");
                return Ok(ExitCode::from(1));
            }
        }
        Command::Flamegraph { path, output, title } => {
            let profile = load(&path)?;
            let title = title.unwrap_or_else(|| {
                path.file_name().map_or("profile".to_owned(), |n| n.to_string_lossy().into_owned())
            });
            profile.write_flamegraph(&output, &title)?;
            emit(&format_args!("Flame graph: {}", output.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
