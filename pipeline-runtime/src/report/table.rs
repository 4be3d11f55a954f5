//! The printed form of a [`Report`].

use std::fmt;

use comfy_table::{CellAlignment, Table};

use super::{Allocations, HeapSummary, Report};
use crate::alloc::AllocatorKind;
use crate::callsite::OUTSIDE_STAGES;
use crate::format::{bytes, duration_ns, per_call, signed_bytes, time_header, timing_cells, STYLE};

const MEMORY_HEADER: [&str; 7] = [
    "stage / function",
    "allocs/call",
    "bytes/call",
    "retained/call",
    "allocs",
    "bytes",
    "retained",
];

fn memory_cells(name: String, m: &Allocations) -> Vec<String> {
    vec![
        name,
        per_call(m.allocations_per_call),
        format!("{} B", per_call(m.bytes_per_call)),
        format!("{} B", per_call(m.retained_per_call)),
        m.total.allocations.to_string(),
        bytes(m.total.bytes_allocated),
        signed_bytes(m.total.retained_bytes),
    ]
}

/// A table of every stage, each followed by its functions, one row per `cells` result.
fn rows_table<T>(
    report: &Report,
    header: &[&str],
    cells: impl Fn(String, &T, f64) -> Vec<String>,
    pick_stage: impl Fn(&super::StageStats) -> Option<&T>,
    pick_function: impl Fn(&super::FunctionStats) -> Option<&T>,
) -> Table {
    let mut table = Table::new();
    table.load_preset(STYLE).set_header(header.to_vec());
    for stage in &report.stages {
        if let Some(figures) = pick_stage(stage) {
            table.add_row(cells(stage.name.clone(), figures, stage.share_of_stage_time));
        }
        for function in &stage.functions {
            if let Some(figures) = pick_function(function) {
                table.add_row(cells(
                    format!("  └ {}", function.name),
                    figures,
                    function.share_of_stage,
                ));
            }
        }
    }
    if !report.outside_stages.is_empty() {
        table.add_row(vec![OUTSIDE_STAGES.to_owned()]);
        for function in &report.outside_stages {
            if let Some(figures) = pick_function(function) {
                table.add_row(cells(format!("  └ {}", function.name), figures, 0.0));
            }
        }
    }
    for index in 1..header.len() {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

pub(super) fn write(report: &Report, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let with_busy = report.stages.iter().any(|stage| {
        stage.timing.waiting_ns > 0 || stage.functions.iter().any(|f| f.timing.waiting_ns > 0)
    }) || report.outside_stages.iter().any(|f| f.timing.waiting_ns > 0);
    let time = rows_table(
        report,
        &time_header(with_busy),
        |name, timing, share| timing_cells(name, timing, share, with_busy),
        |s| Some(&s.timing),
        |func| Some(&func.timing),
    );
    writeln!(f, "Profile over {} of wall time", duration_ns(report.wall_time_ns))?;
    writeln!(f, "{time}")?;
    writeln!(f, "{}", report.diagnosis())?;
    writeln!(f)?;
    write_memory(report, f)?;
    if let Some(cpu) = &report.cpu_samples {
        write!(f, "\n\n")?;
        super::cpu::write(cpu, f)?;
    }
    for run in &report.runs {
        write!(f, "\n\n{run}")?;
    }
    if let Some(trace) = &report.trace {
        write!(f, "\n\nTrace: {} (open in https://ui.perfetto.dev)", trace.path.display())?;
        if trace.traced_one_in > 1 {
            write!(f, "; 1 in {} events traced", trace.traced_one_in)?;
        }
        if trace.spans_left_out > 0 {
            write!(
                f,
                "; {} spans left out because the trace writer fell behind (statistics are complete)",
                trace.spans_left_out
            )?;
        }
    }
    if let Some(flight) = &report.flight {
        write_flight(flight, f)?;
    }
    Ok(())
}

/// The flight recorder's line: its window, and each dump with why and how far back it holds
/// everything.
fn write_flight(flight: &crate::trace::FlightSummary, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
        f,
        "\n\nFlight recorder: kept the last {} in at most {} MiB; {} dump{} written",
        duration_ns(flight.window.as_nanos() as u64),
        flight.max_bytes >> 20,
        flight.dumps.len(),
        if flight.dumps.len() == 1 { "" } else { "s" }
    )?;
    if flight.triggers_in_cooldown > 0 {
        write!(f, " ({} more triggers during the cooldown)", flight.triggers_in_cooldown)?;
    }
    for dump in &flight.dumps {
        write!(f, "\n  {} ({}): ", dump.path.display(), dump.trigger)?;
        write!(
            f,
            "{} before the trigger, {} after, written in {} ({} of CPU)",
            duration_ns(dump.complete_before_trigger.as_nanos() as u64),
            duration_ns(dump.after_trigger.as_nanos() as u64),
            duration_ns(dump.write_time.as_nanos() as u64),
            duration_ns(dump.cpu_time.as_nanos() as u64)
        )?;
        if dump.complete_before_trigger < flight.window {
            write!(f, " (less than the window: the session or the last dump began later, or `max_bytes` is too small)")?;
        }
    }
    if flight.spans_left_out > 0 {
        write!(
            f,
            "\n  {} spans left out: no buffer was free (statistics are complete)",
            flight.spans_left_out
        )?;
    }
    for failed in &flight.failed {
        write!(f, "\n  not written: {failed}")?;
    }
    Ok(())
}

fn write_memory(report: &Report, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let summary = &report.memory;
    match summary.allocator {
        AllocatorKind::None => {
            return write!(
                f,
                "Memory: not measured. Install the counting allocator (one line):\n  \
                 #[global_allocator] static ALLOC: pipeline::CountingAllocator = \
                 pipeline::CountingAllocator::system();"
            );
        }
        AllocatorKind::StatsAllocInstrumentedSystem => {
            writeln!(
                f,
                "Memory per call: not measured (stats_alloc's INSTRUMENTED_SYSTEM counts for the \
                 whole process; install pipeline::CountingAllocator for per-stage figures)."
            )?;
        }
        AllocatorKind::Counting => {
            let memory = rows_table(
                report,
                &MEMORY_HEADER,
                |name, m: &Allocations, _| memory_cells(name, m),
                |s| s.memory.as_ref(),
                |func| func.memory.as_ref(),
            );
            writeln!(f, "Memory (allocations inside each call, nested calls included)")?;
            writeln!(f, "{memory}")?;
        }
    }
    write_heap(summary, f)
}

fn write_heap(summary: &HeapSummary, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if let (Some(start), Some(end), Some(growth)) =
        (summary.live_at_start, summary.live_at_end, summary.growth_bytes)
    {
        write!(f, "Heap: {} live at start", bytes(start))?;
        if let Some(peak_before) = summary.peak_before_start {
            write!(f, " (peak so far {})", bytes(peak_before))?;
        }
        write!(f, ", {} at end ({} over the run)", bytes(end), signed_bytes(growth))?;
        if let Some(peak) = summary.peak_during_run {
            write!(f, "; peak {} during the run (to within 64 KiB per thread)", bytes(peak))?;
        }
        writeln!(f, ".")?;
    }
    if !summary.per_call_measured() {
        return Ok(());
    }
    if summary.retaining_stages.is_empty() {
        return match &summary.most_retaining_stage {
            Some(stage) => write!(
                f,
                "Retention: none flagged ({stage} retains the most per call, but the heap did \
                 not keep it: it was freed after the call, e.g. with the event)."
            ),
            None => write!(f, "Retention: no stage kept memory after its calls."),
        };
    }
    for (index, retention) in summary.retaining_stages.iter().enumerate() {
        if index > 0 {
            writeln!(f)?;
        }
        write!(
            f,
            "Retention: {} keeps {} per call ({} over the run) and the heap still holds it: \
             a cache or buffer that only grows?",
            retention.stage,
            format_args!("{} B", per_call(retention.retained_per_call)),
            signed_bytes(retention.retained_bytes),
        )?;
    }
    Ok(())
}
