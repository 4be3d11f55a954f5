//! The printed form of a [`Profile`]: the in-process report's table, read back from a file.

use std::fmt;

use comfy_table::{CellAlignment, Table};

use super::profile::{Profile, ProfileSource, RowKind};
use crate::callsite::OUTSIDE_STAGES;
use crate::format::{bytes, duration_ns, per_call, percent, time_header, timing_cells, STYLE};

/// Rows the printed table shows (a trace with per-request span names can have 100,000).
const MAX_TABLE_ROWS: usize = 200;

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ProfileSource::Merged(from) = &self.source {
            writeln!(
                f,
                "Merged from {} profiles ({}):",
                from.inputs.len(),
                if from.exact_percentiles {
                    "every call of every trace: percentiles exact"
                } else {
                    "a saved report among them: percentiles weighted by calls, an estimate"
                }
            )?;
            for input in &from.inputs {
                let stop = if input.cut.is_some() { ", cut short" } else { "" };
                writeln!(
                    f,
                    "  {} ({}, {} stage calls{stop})",
                    input.path, input.kind, input.stage_calls
                )?;
            }
        }
        if let ProfileSource::Trace(read) = &self.source {
            writeln!(
                f,
                "Trace: {} events, {} slices{}",
                read.events,
                read.counts.slices,
                if read.counts.unmatched_ends > 0 {
                    format!(" ({} ends without a begin ignored)", read.counts.unmatched_ends)
                } else {
                    String::new()
                }
            )?;
            if let Some(stop) = &read.cut {
                writeln!(
                    f,
                    "The trace stops early at {stop}. The figures cover the {} events before \
                     that point; {} slices still open there are left out.",
                    read.events, read.counts.unclosed
                )?;
            } else if read.counts.unclosed > 0 && read.extras.flight_window.is_some() {
                writeln!(
                    f,
                    "{} calls were still running when the window was taken: left out.",
                    read.counts.unclosed
                )?;
            } else if read.counts.unclosed > 0 {
                writeln!(f, "{} slices never ended and are left out.", read.counts.unclosed)?;
            }
            if read.counts.too_deep > 0 {
                writeln!(
                    f,
                    "{} slices nested deeper than {} levels are left out (as Perfetto does).",
                    read.counts.too_deep,
                    super::tree::MAX_DEPTH
                )?;
            }
            let extras = &read.extras;
            if let Some(window) = &extras.flight_window {
                let ms = |us: f64| us / 1e3;
                let complete_from = if window.complete_after_us > 0.0 {
                    window.complete_after_us
                } else {
                    window.first_record_us
                };
                writeln!(
                    f,
                    "A flight recorder window, not a whole run: dumped because {}. It holds \
                     every call from {:.0} ms before that to {:.0} ms after (a {:.0} ms \
                     window was asked for).",
                    window.trigger,
                    ms(window.triggered_at_us - complete_from).max(0.0),
                    ms(window.dumped_at_us - window.triggered_at_us).max(0.0),
                    window.window_ms
                )?;
            }
            if let Some(left_out) = extras.records_left_out.filter(|n| *n > 0) {
                writeln!(
                    f,
                    "The writer left {left_out} records out (its buffers were full): the trace \
                     holds fewer calls than ran."
                )?;
            }
            for counter in &extras.counters {
                writeln!(
                    f,
                    "Counter {}: {} samples, {} to {}, last {}",
                    counter.name, counter.samples, counter.min, counter.max, counter.last
                )?;
            }
            if !extras.instants.is_empty() {
                let instants: Vec<String> =
                    extras.instants.iter().map(|(name, n)| format!("{name} {n}")).collect();
                writeln!(f, "Instants: {}", instants.join(", "))?;
            }
            if extras.flows > 0 {
                writeln!(f, "Flow arrows: {}", extras.flows)?;
            }
        }
        if self.rows.is_empty() {
            return write!(f, "No stage or function slices.");
        }
        let with_memory = self.rows.iter().any(|row| row.allocations.is_some());
        let with_busy = self.rows.iter().any(|row| row.timing.waiting_ns > 0);
        let mut header = time_header(with_busy);
        if with_memory {
            header.extend(["allocs/call", "bytes/call"]);
        }
        let mut table = Table::new();
        table.load_preset(STYLE).set_header(header.clone());
        let mut outside_heading = false;
        for row in self.rows.iter().take(MAX_TABLE_ROWS) {
            let name = match (row.kind, &row.stage) {
                (RowKind::Stage, _) => row.name.clone(),
                (RowKind::Function, Some(_)) => format!("  └ {}", row.name),
                (RowKind::Function, None) => {
                    if !outside_heading {
                        table.add_row(vec![OUTSIDE_STAGES.to_owned()]);
                        outside_heading = true;
                    }
                    format!("  └ {}", row.name)
                }
            };
            let mut cells = timing_cells(name, &row.timing, row.share, with_busy);
            if with_memory {
                let calls = row.timing.calls.max(1) as f64;
                let per = |count: Option<u64>| count.map(|c| per_call(c as f64 / calls));
                cells.push(per(row.allocations).unwrap_or_default());
                cells.push(per(row.bytes_allocated).map(|b| format!("{b} B")).unwrap_or_default());
            }
            table.add_row(cells);
        }
        for index in 1..header.len() {
            if let Some(column) = table.column_mut(index) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        writeln!(f, "{table}")?;
        if self.rows.len() > MAX_TABLE_ROWS {
            writeln!(
                f,
                "… and {} more rows (the largest are above; `--json` has every row).",
                self.rows.len() - MAX_TABLE_ROWS
            )?;
        }
        if let Some(stage) = self.slowest_stage() {
            write!(
                f,
                "Slowest stage: {} ({} of stage time, {} per call on average)",
                stage.name,
                percent(stage.share),
                duration_ns(stage.timing.mean_ns)
            )?;
            let hottest = self.rows.iter().find(|row| row.stage.as_deref() == Some(&stage.name));
            if let Some(hot) = hottest {
                write!(
                    f,
                    "; its hot function is {} ({} of its time)",
                    hot.name,
                    percent(hot.share)
                )?;
            }
            write!(f, ".")?;
        }
        if let Some(events) = &self.events {
            // "End-to-end" means what it means in a run's summary: queue wait plus processing.
            write!(f, "\nEvents: {} traced; ", events.events)?;
            if let (Some(p50), Some(p99)) = (events.end_to_end_p50_ns, events.end_to_end_p99_ns) {
                write!(
                    f,
                    "end-to-end latency p50 {}, p99 {}: ",
                    duration_ns(p50),
                    duration_ns(p99)
                )?;
            }
            write!(
                f,
                "queue wait p50 {}, p99 {}, then processing p50 {}, p99 {}.",
                duration_ns(events.queue_wait_p50_ns),
                duration_ns(events.queue_wait_p99_ns),
                duration_ns(events.processing_p50_ns),
                duration_ns(events.processing_p99_ns),
            )?;
        }
        if with_memory && self.rows.iter().any(|r| r.kind == RowKind::Stage) {
            let total: u64 = self.stages().filter_map(|r| r.bytes_allocated).sum();
            write!(
                f,
                "\nAllocations in stages: {} in total (nested calls included).",
                bytes(total)
            )?;
        }
        Ok(())
    }
}
