//! The regression gate's detection and false-alarm rates, the long version of the trials in
//! `tests/bench_gate.rs`: 100 trials each of a 30 % and an 8 % slowdown, and of no change, on a
//! quiet machine and with another process holding one core.
//!
//! Run: `cargo bench --bench gate`

use std::hint::black_box;
use std::process::Command;

use pipeline::bench::{Bench, Verdict};
use pipeline::{Pipeline, Stage, StageResult};

struct Work(u64);

impl Stage<u64> for Work {
    type Out = u64;
    fn name(&self) -> &str {
        "Work"
    }
    fn process(&self, event: u64) -> StageResult<u64> {
        let mut h = event ^ 0x9e37_79b9_7f4a_7c15;
        for round in 0..self.0 {
            h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
        }
        Ok(Some(h))
    }
}

const TRIALS: u64 = 100;

/// (regressed, inconclusive) out of TRIALS.
fn rates(after_rounds: u64) -> (u64, u64) {
    let before = Pipeline::new().stage(Work(10_000));
    let after = Pipeline::new().stage(Work(after_rounds));
    let (mut regressed, mut inconclusive) = (0, 0);
    for trial in 0..TRIALS {
        let bench = Bench::new("gate").samples(15).batch(10).warmup(1).seed(trial).tolerance(0.05);
        match bench.compare(&before, &after, |i| i).expect("compare").verdict("time per event") {
            Some(Verdict::Regressed) => regressed += 1,
            Some(Verdict::Inconclusive(_)) => inconclusive += 1,
            _ => {}
        }
    }
    (regressed, inconclusive)
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    println!("| case | machine | regressed | inconclusive | of |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (case, rounds) in [("30 % slower", 13_000), ("8 % slower", 10_800), ("no change", 10_000)] {
        let (r, i) = rates(rounds);
        println!("| {case} | quiet | {r} | {i} | {TRIALS} |");
        let mut hog = Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("sh");
        let (r, i) = rates(rounds);
        let _ = hog.kill();
        let _ = hog.wait();
        println!("| {case} | one core taken | {r} | {i} | {TRIALS} |");
    }
}
