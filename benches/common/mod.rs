//! Helpers the benchmark harnesses share.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Instant;

/// The median of `values` (the upper one of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Nanoseconds per call of `call`, over `calls` calls with their results kept alive.
pub fn ns_per_call(calls: u64, mut call: impl FnMut(u64) -> u64) -> f64 {
    let started = Instant::now();
    let mut acc = 0u64;
    for i in 0..calls {
        acc = acc.wrapping_add(call(black_box(i)));
    }
    black_box(acc);
    started.elapsed().as_nanos() as f64 / calls as f64
}
