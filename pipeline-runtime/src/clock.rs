//! The one clock every measurement uses: nanoseconds since the process first asked.
//!
//! `quanta` reads the CPU's time-stamp counter where it is invariant (calibrated against the
//! OS clock once), falling back to the OS monotonic clock elsewhere. On the project's machine a
//! pair of `quanta` reads costs a fraction of a pair of `std::time::Instant::now()` calls, and
//! every recorded call reads the clock twice (`BENCHMARKS.md`, overhead section).

use std::sync::OnceLock;

static CLOCK: OnceLock<(quanta::Clock, u64)> = OnceLock::new();

/// Nanoseconds elapsed since the first call in this process (monotonic).
#[inline]
pub(crate) fn now_ns() -> u64 {
    let (clock, epoch) = CLOCK.get_or_init(|| {
        let clock = quanta::Clock::new();
        let epoch = clock.raw();
        (clock, epoch)
    });
    clock.delta_as_nanos(*epoch, clock.raw())
}

/// The clock's resolution as measured here: the typical (median) step between two readings
/// taken back to back, which is what a measured interval cannot be read finer than (on the
/// project's machine, 10 ns: the counter's own steps and the cost of reading it). Measured once
/// per process, over a few thousand readings, and kept.
pub(crate) fn resolution_ns() -> u64 {
    static RESOLUTION: OnceLock<u64> = OnceLock::new();
    *RESOLUTION.get_or_init(|| {
        let mut steps = Vec::with_capacity(4096);
        let mut previous = now_ns();
        while steps.len() < 4096 {
            let now = now_ns();
            if now > previous {
                steps.push(now - previous);
            }
            previous = now;
        }
        steps.sort_unstable();
        steps[steps.len() / 2].max(1)
    })
}

/// The whole machine's CPU time so far, every process's: (busy, total) in the system's ticks,
/// from `/proc/stat` (Linux); `None` where the system does not say.
pub(crate) fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user already).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((total.saturating_sub(idle), total))
}

/// CPU time of the whole process so far (user + system, every thread), in nanoseconds.
pub(crate) fn process_cpu_ns() -> u64 {
    // SAFETY: `getrusage` fills the zeroed struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// CPU time of the calling thread so far (user + system), in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    // SAFETY: `clock_gettime` fills the zeroed struct; a failure leaves it zero.
    let time = unsafe {
        let mut time: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time);
        time
    };
    time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64
}

/// `at` in UTC, as `2026-12-05T11:45:12Z`: the time's fields joined by `separator`, with
/// milliseconds when `millis`. Baselines say when they were recorded with `:` and whole
/// seconds; dump file names use `-` (every file system takes it) and milliseconds.
pub(crate) fn utc_text(at: std::time::SystemTime, separator: char, millis: bool) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let s = separator;
    let time = format!("{year:04}-{month:02}-{day:02}T{hour:02}{s}{minute:02}{s}{second:02}");
    if millis {
        format!("{time}.{:03}Z", since.subsec_millis())
    } else {
        format!("{time}Z")
    }
}

/// The calendar date (proleptic Gregorian) of `days` since 1970-01-01 (Howard Hinnant's
/// algorithm): for the UTC times in baselines' and dumps' names, without a date crate.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{civil_from_days, now_ns, utc_text};

    #[test]
    fn utc_texts_carry_the_date_and_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_470_712_345);
        assert_eq!(utc_text(at, '-', true), "2026-12-05T11-38-32.345Z");
        assert_eq!(utc_text(at, ':', false), "2026-12-05T11:38:32Z");
        assert_eq!(utc_text(SystemTime::UNIX_EPOCH, '-', true), "1970-01-01T00-00-00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(utc_text(leap, ':', false).starts_with("2000-02-29T"));
    }

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
    use std::time::Instant;

    #[test]
    fn the_clock_is_monotonic_and_agrees_with_std() {
        let (a, started) = (now_ns(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, elapsed) = (now_ns(), started.elapsed().as_nanos() as u64);
        assert!(b > a);
        let measured = b - a;
        // Within 5 % of std's reading of the same interval.
        assert!(measured.abs_diff(elapsed) < elapsed / 20, "{measured} vs {elapsed}");
    }
}
