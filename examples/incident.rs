//! Launch day with the flight recorder on instead of a full trace: the last two seconds of
//! trace are kept in memory while orders flow, nothing is written, and when doubled traffic
//! fills the queue for a quarter of a second the recorder writes that window (the normal traffic
//! before, the queue filling, half a second after) as a Chrome trace.
//!
//! `cargo run --release --example incident` prints the report (with the dump it wrote) and the
//! dump's summary; open the dump in https://ui.perfetto.dev and look at the `queue depth`
//! counter climbing to its capacity.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline::analysis::Profile;
use pipeline::trace::{DumpTrigger, FlightDump, FlightRecorder};
use pipeline::{Profiler, Report, WorkerConfig};

// Its stages, its orders and its counting allocator (`#[global_allocator]`).
#[allow(dead_code)]
#[path = "launch_day.rs"]
mod launch_day;

const WORKERS: usize = 2;
const QUEUE: usize = 1024;

/// What the day left behind.
pub struct Incident {
    /// Orders per second the workers took when fed as fast as they could.
    pub capacity_per_sec: f64,
    pub report: Report,
}

impl Incident {
    /// The dump the queue filling wrote, if it wrote one.
    pub fn queue_full_dump(&self) -> Option<&FlightDump> {
        let flight = self.report.flight.as_ref()?;
        flight.dumps.iter().find(|dump| matches!(dump.trigger, DumpTrigger::QueueFull { .. }))
    }
}

/// The flight recorder as a service would arm it: two seconds kept, a dump when the queue
/// stays full for 250 ms, with half a second after it. A span takes 80 bytes in memory and
/// about half of `max_bytes` holds the window: at ~400,000 spans/s (55,000 orders/s, seven
/// spans each) 2.5 s need ~80 MB of window, so 256 MiB.
pub fn flight_recorder(dir: &Path) -> FlightRecorder {
    FlightRecorder::new(Duration::from_secs(2))
        .max_bytes(256 << 20)
        .dir(dir)
        .when_queue_full_for(Duration::from_millis(250))
        .tail(Duration::from_millis(500))
}

/// Measures capacity, then runs `events` orders at 60 % of it and `events` at 120 %, all in one
/// session with the flight recorder armed; dumps go to `dir`.
pub fn run_incident(events: u64, dir: &Path) -> Result<Incident, pipeline::Error> {
    let _ = std::fs::remove_dir_all(dir);
    let pipeline = launch_day::pipeline();
    let workers = WorkerConfig::new(WORKERS).queue(QUEUE);
    // Capacity with the same recording on, and no trigger (a queue fed as fast as it takes
    // events is full all along: that is no incident).
    let armed_without_triggers = FlightRecorder::new(Duration::from_secs(2)).max_bytes(256 << 20);
    let calibration = Profiler::new().flight_recorder(armed_without_triggers).start()?;
    let capacity_per_sec = pipeline
        .run_concurrent(launch_day::orders(events / 2), workers.clone())?
        .throughput_per_sec;
    calibration.finish()?;
    let session = Profiler::new().name("incident").flight_recorder(flight_recorder(dir)).start()?;
    pipeline.run_concurrent(
        launch_day::orders(events),
        workers.clone().arrival_rate(0.6 * capacity_per_sec),
    )?;
    pipeline
        .run_concurrent(launch_day::orders(events), workers.arrival_rate(1.2 * capacity_per_sec))?;
    let report = session.finish()?;
    Ok(Incident { capacity_per_sec, report })
}

fn main() -> Result<(), pipeline::Error> {
    let dir = PathBuf::from("target/incident");
    let incident = run_incident(60_000, &dir)?;
    println!(
        "Capacity: {:.0} orders/s; normal traffic at 60 %, then 120 %.\n",
        incident.capacity_per_sec
    );
    println!("{}\n", incident.report);
    match incident.queue_full_dump() {
        Some(dump) => {
            println!(
                "=== The dump, as `pipeline-prof summary {}` reads it ===",
                dump.path.display()
            );
            println!("{}", Profile::read(&dump.path)?);
            println!("\nOpen {} in https://ui.perfetto.dev", dump.path.display());
        }
        None => println!("The queue never stayed full for 250 ms: no dump was written."),
    }
    Ok(())
}
