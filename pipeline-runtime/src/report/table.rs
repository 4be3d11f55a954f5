//! The printed form of a [`Report`].

use std::fmt;

use comfy_table::{CellAlignment, Table};

use super::format::{duration_ns, percent};
use super::{Report, Timing};

/// Rules above and below the table and under the header; none between rows (comfy-table preset).
const STYLE: &str = "  ── ──      ──    ";

const HEADER: [&str; 9] = [
    "stage / function",
    "calls",
    "total",
    "self",
    "mean",
    "p50",
    "p99",
    "max",
    "share",
];

fn timing_cells(name: String, t: &Timing, share: f64) -> Vec<String> {
    vec![
        name,
        t.calls.to_string(),
        duration_ns(t.total_ns),
        duration_ns(t.self_ns),
        duration_ns(t.mean_ns),
        duration_ns(t.p50_ns),
        duration_ns(t.p99_ns),
        duration_ns(t.max_ns),
        percent(share),
    ]
}

pub(super) fn write(report: &Report, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut table = Table::new();
    table.load_preset(STYLE).set_header(HEADER);
    for stage in &report.stages {
        table.add_row(timing_cells(
            stage.name.clone(),
            &stage.timing,
            stage.share_of_stage_time,
        ));
        for function in &stage.functions {
            let name = format!("  └ {}", function.name);
            table.add_row(timing_cells(
                name,
                &function.timing,
                function.share_of_stage,
            ));
        }
    }
    if !report.outside_stages.is_empty() {
        table.add_row(vec!["(outside any stage)".to_owned()]);
        for function in &report.outside_stages {
            let name = format!("  └ {}", function.name);
            table.add_row(timing_cells(name, &function.timing, 0.0));
        }
    }
    for index in 1..HEADER.len() {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    writeln!(
        f,
        "Profile over {} of wall time",
        duration_ns(report.wall_time_ns)
    )?;
    writeln!(f, "{table}")?;
    write!(f, "{}", report.verdict())
}
