//! [`ProfileDiff`]: what changed between two profiles (a run before and a run after a change),
//! per stage and function, largest impact first, with changes inside the noise marked as such.

use std::fmt;

use comfy_table::{CellAlignment, Table};
use serde::{Deserialize, Serialize};

use super::profile::{Profile, ProfileRow, RowKind};
use crate::format::{duration_ns, per_call, STYLE};
use crate::report::Timing;

/// The run-to-run noise floor used unless told otherwise: a median that moved less than this
/// fraction is not called a change. Measured (BENCHMARKS.md): between identical `launch_day`
/// runs on a shared 2-core machine, the traced medians of stages of ~40 µs moved by up to
/// 5 %, those of rows of a few µs or less (where the tracer's own cost per slice dominates) by
/// up to 30 %. 10 % keeps the large rows honest; raise it to compare tiny rows.
pub const DEFAULT_NOISE_FLOOR: f64 = 0.10;

/// A row whose median is under this many steps of the clock is tiny: its medians are read in
/// a few steps, and identical runs move them by a few (see [`ProfileDiff`]).
pub const TINY_ROW_STEPS: u64 = 30;

/// How one row changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Shift {
    /// Its median call got slower, beyond the noise.
    Slower,
    /// Its median call got faster, beyond the noise.
    Faster,
    /// Its median moved less than the noise.
    WithinNoise,
    /// Only in the after profile.
    New,
    /// Only in the before profile.
    Gone,
}

impl fmt::Display for Shift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shift::Slower => "slower",
            Shift::Faster => "faster",
            Shift::WithinNoise => "within noise",
            Shift::New => "new",
            Shift::Gone => "gone",
        })
    }
}

/// One stage's or function's figures before and after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RowChange {
    /// Stage or function.
    pub kind: RowKind,
    /// The stage a function ran in.
    pub stage: Option<String>,
    /// The stage's or function's name.
    pub name: String,
    /// Its timing in the before profile, if it ran there.
    pub before: Option<Timing>,
    /// Its timing in the after profile, if it ran there.
    pub after: Option<Timing>,
    /// Allocations per call before, when measured.
    pub allocations_per_call_before: Option<f64>,
    /// Allocations per call after, when measured.
    pub allocations_per_call_after: Option<f64>,
    /// Self time the change added (negative: saved) over the after run's calls: the change in
    /// self time per call times the after run's calls. What the rows are sorted by.
    pub impact_ns: i64,
    /// How far the median could move and still count as noise, nanoseconds: the largest of
    /// the noise floor's share of the median, two standard errors, and the timer's floor.
    #[serde(default)]
    pub noise_band_ns: u64,
    /// Whether the median call changed beyond the noise.
    pub shift: Shift,
}

impl RowChange {
    /// `Stage` or `Stage › function`.
    pub fn label(&self) -> String {
        match &self.stage {
            Some(stage) => format!("{stage} › {}", self.name),
            None => self.name.clone(),
        }
    }

    /// Relative change of the median call (`0.25` = 25 % slower), when it ran in both.
    pub fn p50_change(&self) -> Option<f64> {
        relative(self.before?.p50_ns, self.after?.p50_ns)
    }

    /// Relative change of the 99th percentile call, when it ran in both.
    pub fn p99_change(&self) -> Option<f64> {
        relative(self.before?.p99_ns, self.after?.p99_ns)
    }
}

fn relative(before: u64, after: u64) -> Option<f64> {
    (before > 0).then(|| (after as f64 - before as f64) / before as f64)
}

/// The change between two profiles, largest impact first.
///
/// A row's median counts as changed only when it moved by more than all of: the noise floor
/// (a fraction, [`DEFAULT_NOISE_FLOOR`] by default: run-to-run variation a single pair of runs
/// cannot measure); twice the combined standard error of the two medians (estimated from each
/// row's call count and the spread of its calls: few calls, or widely spread ones, make a wider
/// band); and the timer's floor. That floor is one step of the clock (as the row's durations
/// show it); for a tiny row, whose median is under [`TINY_ROW_STEPS`] steps, it is three steps
/// or the row's own spread between p50 and p90, whichever is larger: identical runs of stages
/// of ~100 ns move their medians by a few steps, which is no change at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProfileDiff {
    /// Every stage and function of either profile, by absolute impact, largest first.
    pub changes: Vec<RowChange>,
    /// The noise floor used, as a fraction.
    pub noise_floor: f64,
}

impl ProfileDiff {
    /// Compares `before` with `after` with the [`DEFAULT_NOISE_FLOOR`].
    pub fn between(before: &Profile, after: &Profile) -> ProfileDiff {
        ProfileDiff::with_noise_floor(before, after, DEFAULT_NOISE_FLOOR)
    }

    /// Compares `before` with `after`, counting median moves below `noise_floor` (a fraction)
    /// as noise.
    pub fn with_noise_floor(before: &Profile, after: &Profile, noise_floor: f64) -> ProfileDiff {
        let key = |row: &ProfileRow| (row.kind, row.stage.clone(), row.name.clone());
        let mut changes: Vec<RowChange> = Vec::new();
        for row in &after.rows {
            let old = before.rows.iter().find(|b| key(b) == key(row));
            changes.push(change(old, Some(row), noise_floor));
        }
        for row in &before.rows {
            if !after.rows.iter().any(|a| key(a) == key(row)) {
                changes.push(change(Some(row), None, noise_floor));
            }
        }
        changes.sort_by(|a, b| {
            b.impact_ns.unsigned_abs().cmp(&a.impact_ns.unsigned_abs()).then(a.name.cmp(&b.name))
        });
        ProfileDiff { changes, noise_floor }
    }

    /// Rows whose median call got slower beyond the noise by more than `threshold` (a
    /// fraction: `0.10` = 10 %).
    pub fn regressions(&self, threshold: f64) -> Vec<&RowChange> {
        self.changes
            .iter()
            .filter(|c| c.shift == Shift::Slower && c.p50_change().is_some_and(|x| x > threshold))
            .collect()
    }

    /// The row with the largest impact, if anything ran.
    pub fn biggest(&self) -> Option<&RowChange> {
        self.changes.first()
    }
}

fn standard_error_of_median(row: &ProfileRow) -> f64 {
    if let Some(se) = row.p50_standard_error_ns {
        return se; // from every call's duration
    }
    // Only percentiles (a saved report): the median's standard error is 1 / (2 f(m) sqrt(n)),
    // with the density at the median taken as 0.4 / (p90 - p50). That over-states the spread
    // of skewed latencies, so the band errs wide.
    let t = &row.timing;
    let spread = t.p90_ns.saturating_sub(t.p50_ns).max(1) as f64;
    spread / (0.8 * (t.calls.max(1) as f64).sqrt())
}

fn change(before: Option<&ProfileRow>, after: Option<&ProfileRow>, noise_floor: f64) -> RowChange {
    let row = after.or(before).expect("a change has a before or an after row");
    let per_call = |r: Option<&ProfileRow>| {
        r.and_then(|r| r.allocations.map(|a| a as f64 / r.timing.calls.max(1) as f64))
    };
    let (b, a) = (before.map(|r| r.timing), after.map(|r| r.timing));
    let mut noise_band_ns = 0;
    let (impact_ns, shift) = match (b, a) {
        (Some(b), Some(a)) => {
            let (b_row, a_row) = (before.expect("has before"), after.expect("has after"));
            let self_per_call = |t: &Timing| t.self_ns as f64 / t.calls.max(1) as f64;
            let impact = (self_per_call(&a) - self_per_call(&b)) * a.calls as f64;
            let moved = a.p50_ns as f64 - b.p50_ns as f64;
            let band = (noise_floor * b.p50_ns as f64)
                .max(2.0 * standard_error_of_median(b_row).hypot(standard_error_of_median(a_row)))
                .max(timer_floor_ns(b_row, a_row));
            noise_band_ns = band.round() as u64;
            let shift = if moved.abs() <= band {
                Shift::WithinNoise
            } else if moved > 0.0 {
                Shift::Slower
            } else {
                Shift::Faster
            };
            (impact as i64, shift)
        }
        (None, Some(a)) => (a.self_ns as i64, Shift::New),
        (Some(b), None) => (-(b.self_ns as i64), Shift::Gone),
        (None, None) => unreachable!("a change has a before or an after row"),
    };
    RowChange {
        kind: row.kind,
        stage: row.stage.clone(),
        name: row.name.clone(),
        before: b,
        after: a,
        allocations_per_call_before: per_call(before),
        allocations_per_call_after: per_call(after),
        impact_ns,
        noise_band_ns,
        shift,
    }
}

/// The floor the clock sets on reading a change of the median, nanoseconds (0 where the
/// profiles do not say the clock's step: saved reports).
fn timer_floor_ns(before: &ProfileRow, after: &ProfileRow) -> f64 {
    let Some(step) = before.timer_resolution_ns.max(after.timer_resolution_ns) else {
        return 0.0;
    };
    if before.timing.p50_ns >= TINY_ROW_STEPS * step {
        return step as f64;
    }
    let spread = |row: &ProfileRow| row.timing.p90_ns.saturating_sub(row.timing.p50_ns);
    (3 * step).max(spread(before).min(spread(after))) as f64
}

fn signed_duration(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "+" };
    format!("{sign}{}", duration_ns(ns.unsigned_abs()))
}

fn signed_percent(change: Option<f64>) -> String {
    change.map(|x| format!("{:+.1} %", x * 100.0)).unwrap_or_default()
}

impl fmt::Display for ProfileDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            "stage / function",
            "calls",
            "self time Δ",
            "p50 before",
            "p50 after",
            "p50 Δ",
            "p99 Δ",
            "noise ±",
            "allocs/call",
            "shift",
        ];
        let mut table = Table::new();
        table.load_preset(STYLE).set_header(header.to_vec());
        for c in &self.changes {
            let calls = match (c.before, c.after) {
                (Some(b), Some(a)) if b.calls == a.calls => a.calls.to_string(),
                (b, a) => format!(
                    "{} → {}",
                    b.map_or("-".to_owned(), |t| t.calls.to_string()),
                    a.map_or("-".to_owned(), |t| t.calls.to_string())
                ),
            };
            let p50 = |t: Option<Timing>| t.map(|t| duration_ns(t.p50_ns)).unwrap_or_default();
            let allocs = match (c.allocations_per_call_before, c.allocations_per_call_after) {
                (None, None) => String::new(),
                (b, a) => format!(
                    "{} → {}",
                    b.map_or("-".to_owned(), per_call),
                    a.map_or("-".to_owned(), per_call)
                ),
            };
            table.add_row(vec![
                c.label(),
                calls,
                signed_duration(c.impact_ns),
                p50(c.before),
                p50(c.after),
                signed_percent(c.p50_change()),
                signed_percent(c.p99_change()),
                if c.noise_band_ns > 0 { duration_ns(c.noise_band_ns) } else { String::new() },
                allocs,
                c.shift.to_string(),
            ]);
        }
        for index in 1..header.len() {
            if let Some(column) = table.column_mut(index) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        writeln!(
            f,
            "Changes, largest impact first (self time Δ: own time per call, after − before, \
             times the calls after; noise ±: how far a median may move and be no change, the \
             largest of {:.0} % of it, two standard errors, and the clock's floor: one step, or \
             for medians under {TINY_ROW_STEPS} steps three steps or the row's p50-p90 spread)",
            self.noise_floor * 100.0
        )?;
        writeln!(f, "{table}")?;
        match self.changes.iter().find(|c| c.shift != Shift::WithinNoise) {
            None => write!(f, "No stage or function changed beyond the noise."),
            Some(c) => {
                write!(f, "Biggest change beyond the noise: {} is {}", c.label(), c.shift)?;
                if let (Some(b), Some(a)) = (c.before, c.after) {
                    write!(
                        f,
                        ": median call {} → {} ({})",
                        duration_ns(b.p50_ns),
                        duration_ns(a.p50_ns),
                        signed_percent(c.p50_change())
                    )?;
                }
                write!(f, ".")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::profile::ProfileSource;

    fn row(name: &str, calls: u64, p50: u64, p90: u64) -> ProfileRow {
        ProfileRow {
            kind: RowKind::Stage,
            stage: None,
            name: name.to_owned(),
            timing: Timing {
                calls,
                total_ns: p50 * calls,
                self_ns: p50 * calls,
                p50_ns: p50,
                p90_ns: p90,
                ..Timing::default()
            },
            share: 0.0,
            allocations: None,
            bytes_allocated: None,
            p50_standard_error_ns: None,
            timer_resolution_ns: None,
        }
    }

    fn profile(rows: Vec<ProfileRow>) -> Profile {
        Profile { source: ProfileSource::Report, rows, stacks: Vec::new(), events: None }
    }

    #[test]
    fn the_slowed_row_comes_first_and_small_moves_are_noise() {
        let before = profile(vec![row("A", 1000, 1000, 1100), row("B", 1000, 5000, 5500)]);
        let after = profile(vec![row("A", 1000, 2000, 2200), row("B", 1000, 5100, 5600)]);
        let diff = ProfileDiff::between(&before, &after);
        assert_eq!(diff.changes[0].name, "A");
        assert_eq!(diff.changes[0].shift, Shift::Slower);
        assert_eq!(diff.changes[0].impact_ns, 1_000_000);
        assert_eq!(diff.changes[1].shift, Shift::WithinNoise, "2 % is under the floor");
        assert_eq!(diff.regressions(0.5).len(), 1);
        assert!(diff.regressions(1.5).is_empty());
    }

    #[test]
    fn few_widely_spread_calls_widen_the_band() {
        let before = profile(vec![row("A", 4, 1000, 9000)]);
        let after = profile(vec![row("A", 4, 1500, 9500)]);
        assert_eq!(ProfileDiff::between(&before, &after).changes[0].shift, Shift::WithinNoise);
    }

    #[test]
    fn a_tiny_row_moving_a_few_clock_steps_is_noise_and_a_doubling_is_not() {
        let traced = |p50, p90| ProfileRow {
            p50_standard_error_ns: Some(0.5),
            timer_resolution_ns: Some(10),
            ..row("Tiny", 20_000, p50, p90)
        };
        let (before, after) = (profile(vec![traced(120, 170)]), profile(vec![traced(150, 190)]));
        let diff = ProfileDiff::between(&before, &after);
        assert_eq!(diff.changes[0].shift, Shift::WithinNoise, "{diff}");
        assert_eq!(diff.changes[0].noise_band_ns, 40, "the spread: 190 - 150");
        let doubled = profile(vec![traced(240, 300)]);
        let diff = ProfileDiff::between(&before, &doubled);
        assert_eq!(diff.changes[0].shift, Shift::Slower, "{diff}");
        // A large row keeps the 10 % floor: one step of the clock is nothing to it.
        let big =
            |p50| ProfileRow { timer_resolution_ns: Some(10), ..row("Big", 20_000, p50, p50) };
        let diff = ProfileDiff::between(&profile(vec![big(10_000)]), &profile(vec![big(11_500)]));
        assert_eq!(diff.changes[0].shift, Shift::Slower, "{diff}");
    }

    #[test]
    fn rows_in_one_profile_only_are_new_or_gone() {
        let diff = ProfileDiff::between(
            &profile(vec![row("A", 1, 10, 10)]),
            &profile(vec![row("B", 1, 10, 10)]),
        );
        let shifts: Vec<Shift> = diff.changes.iter().map(|c| c.shift).collect();
        assert!(shifts.contains(&Shift::New) && shifts.contains(&Shift::Gone));
    }
}
