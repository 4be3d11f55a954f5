//! Human-readable numbers for the printed report.

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
}
