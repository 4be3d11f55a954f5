//! The report's printed CPU section: the totals, then each stage's hottest functions.

use std::fmt;

use comfy_table::{CellAlignment, Table};

use super::{CpuProfile, HOT_FUNCTIONS_SHOWN};
use crate::format::{duration_ns, percent, STYLE};

/// Names longer than this are shortened in the printed table (the JSON keeps them whole).
const NAME_WIDTH: usize = 72;

/// `name`, its middle replaced by `…` when it is longer than [`NAME_WIDTH`] characters.
fn shortened(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= NAME_WIDTH {
        return name.to_owned();
    }
    let head: String = chars[..NAME_WIDTH / 2].iter().collect();
    let tail: String = chars[chars.len() - (NAME_WIDTH / 2 - 1)..].iter().collect();
    format!("{head}…{tail}")
}

/// The printed section: the totals, then each stage's hottest functions by self samples.
pub(crate) fn write(cpu: &CpuProfile, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let per_cpu_second = if cpu.process_cpu_ns == 0 {
        0.0
    } else {
        cpu.samples_taken as f64 / (cpu.process_cpu_ns as f64 / 1e9)
    };
    writeln!(
        f,
        "CPU samples at {} Hz: {} taken over {} of process CPU ({per_cpu_second:.0} per CPU \
         second); {} in stages, {} outside stages, {} dropped; the sampler's own cost {}",
        cpu.hz,
        cpu.samples_taken,
        duration_ns(cpu.process_cpu_ns),
        cpu.samples_in_stages,
        cpu.samples_outside_stages,
        cpu.samples_dropped,
        duration_ns(cpu.sampler_cost_ns),
    )?;
    let mut table = Table::new();
    table.load_preset(STYLE).set_header(vec![
        "stage / sampled function",
        "samples",
        "self",
        "self %",
        "total",
        "total %",
    ]);
    let outside = (cpu.outside_stages.samples > 0).then_some(&cpu.outside_stages);
    for stage in cpu.stages.iter().chain(outside) {
        table.add_row(vec![
            stage.name.clone(),
            format!("{} ({})", stage.samples, percent(stage.share_of_samples)),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let hot = stage.functions.iter().filter(|function| function.self_samples > 0);
        for function in hot.take(HOT_FUNCTIONS_SHOWN) {
            table.add_row(vec![
                format!("  {}", shortened(&function.name)),
                String::new(),
                function.self_samples.to_string(),
                percent(function.self_share),
                function.total_samples.to_string(),
                percent(function.total_share),
            ]);
        }
    }
    for index in 1..6 {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    write!(f, "{table}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_in_the_middle() {
        let long = format!("<{} as Trait>::method", "a".repeat(100));
        let short = shortened(&long);
        assert_eq!(short.chars().count(), NAME_WIDTH);
        assert!(short.starts_with("<aaa") && short.ends_with("as Trait>::method"));
        assert!(short.contains('…'));
        assert_eq!(shortened("app::score"), "app::score");
    }
}
