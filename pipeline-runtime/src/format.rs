//! Human-readable numbers and table pieces, shared by everything that prints figures: the
//! report, a run's summary, and the trace reader's tables. A leaf: it knows only [`Timing`].

use crate::durations::Timing;

/// `1.23 ms`, `850 ns`, `12.3 µs`, `2.50 s`: three significant digits, the unit that fits.
pub(crate) fn duration_ns(ns: u64) -> String {
    let ns_f = ns as f64;
    let (value, unit) = if ns < 1_000 {
        return format!("{ns} ns");
    } else if ns < 1_000_000 {
        (ns_f / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        (ns_f / 1e6, "ms")
    } else {
        (ns_f / 1e9, "s")
    };
    format!("{} {unit}", three_significant(value))
}

/// `61.8 %`.
pub(crate) fn percent(fraction: f64) -> String {
    format!("{:.1} %", fraction * 100.0)
}

fn three_significant(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// `512 B`, `9999 B`, `12.3 KiB`, `4.50 MiB`: exact below 10,000 bytes, then binary units.
pub(crate) fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if n < 10_000 {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{} KiB", three_significant(f / KIB))
    } else if f < KIB * KIB * KIB {
        format!("{} MiB", three_significant(f / (KIB * KIB)))
    } else {
        format!("{} GiB", three_significant(f / (KIB * KIB * KIB)))
    }
}

/// [`bytes`] with a sign: `+1000 B`, `-12.3 KiB`, `0 B`.
pub(crate) fn signed_bytes(n: i64) -> String {
    match n {
        0 => "0 B".to_owned(),
        n if n > 0 => format!("+{}", bytes(n as u64)),
        n => format!("-{}", bytes(n.unsigned_abs())),
    }
}

/// A per-call figure: integers exactly, fractions with up to one decimal.
pub(crate) fn per_call(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round() as i64)
    } else {
        format!("{value:.1}")
    }
}

/// Rules above and below the table and under the header; none between rows (comfy-table preset).
pub(crate) const STYLE: &str = "  ── ──      ──    ";

/// The timing table's columns; with `busy` (some call was `async` and waited) a `busy` column
/// after `total`: the time the calls held a thread, where `total` is what their callers waited.
pub(crate) fn time_header(busy: bool) -> Vec<&'static str> {
    let mut header =
        vec!["stage / function", "calls", "total", "self", "mean", "p50", "p99", "max", "share"];
    if busy {
        header.insert(3, "busy");
    }
    header
}

/// One row of the timing table ([`time_header`]).
pub(crate) fn timing_cells(name: String, t: &Timing, share: f64, busy: bool) -> Vec<String> {
    let mut cells = vec![
        name,
        calls_cell(t),
        duration_ns(t.total_ns),
        duration_ns(t.self_ns),
        duration_ns(t.mean_ns),
        duration_ns(t.p50_ns),
        duration_ns(t.p99_ns),
        duration_ns(t.max_ns),
        percent(share),
    ];
    if busy {
        cells.insert(3, duration_ns(t.busy_ns()));
    }
    cells
}

/// The calls, with how many a panic ended or (async) were dropped before completing:
/// `12 (2 cancelled)`.
fn calls_cell(t: &Timing) -> String {
    let mut notes = Vec::new();
    if t.panicked > 0 {
        notes.push(format!("{} panicked", t.panicked));
    }
    if t.cancelled > 0 {
        notes.push(format!("{} cancelled", t.cancelled));
    }
    if notes.is_empty() {
        t.calls.to_string()
    } else {
        format!("{} ({})", t.calls, notes.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_the_unit_that_fits() {
        assert_eq!(duration_ns(0), "0 ns");
        assert_eq!(duration_ns(999), "999 ns");
        assert_eq!(duration_ns(1_000), "1.00 µs");
        assert_eq!(duration_ns(12_345), "12.3 µs");
        assert_eq!(duration_ns(1_234_567), "1.23 ms");
        assert_eq!(duration_ns(250_000_000), "250 ms");
        assert_eq!(duration_ns(2_500_000_000), "2.50 s");
    }

    #[test]
    fn percent_has_one_decimal() {
        assert_eq!(percent(0.618), "61.8 %");
        assert_eq!(percent(1.0), "100.0 %");
    }

    #[test]
    fn bytes_are_exact_when_small_and_binary_when_large() {
        assert_eq!(bytes(1000), "1000 B");
        assert_eq!(bytes(12 * 1024 + 300), "12.3 KiB");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(signed_bytes(-1000), "-1000 B");
        assert_eq!(signed_bytes(0), "0 B");
        assert_eq!(per_call(3.0), "3");
        assert_eq!(per_call(2.25), "2.2");
    }
}
