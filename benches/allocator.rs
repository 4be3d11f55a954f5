//! Cost of one allocate + free pair (64 bytes): `System`, stats_alloc's `StatsAlloc<System>` and
//! `pipeline::CountingAllocator`, on one thread and on two threads allocating at once.
//!
//! Run: `cargo bench --bench allocator`
//!
//! Each allocator is called directly (not installed), so all three run in one binary. The machine
//! is noisy, so the three are measured in interleaved rounds, in a rotating order, and the median
//! and the fastest of the rounds are reported, each with its ratio to `System`'s. The fastest
//! round is the least disturbed by other processes; the median shows what a typical round saw.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

use pipeline::CountingAllocator;
use stats_alloc::StatsAlloc;

static STATS_ALLOC: StatsAlloc<System> = StatsAlloc::system();
static COUNTING: CountingAllocator = CountingAllocator::system();

const PAIRS_PER_THREAD: u32 = 5_000_000;
const ROUNDS: usize = 21;

/// Nanoseconds per allocate + free pair, each of `threads` threads doing `PAIRS_PER_THREAD`.
fn ns_per_pair(allocator: &'static (dyn GlobalAlloc + Sync), threads: usize) -> f64 {
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(move || {
                for _ in 0..PAIRS_PER_THREAD {
                    // SAFETY: freed once, by the allocator that made it, with its layout.
                    unsafe {
                        let ptr = allocator.alloc(black_box(layout));
                        allocator.dealloc(black_box(ptr), layout);
                    }
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / f64::from(PAIRS_PER_THREAD)
}

/// (median, fastest) of the rounds.
fn median_and_min(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0])
}

fn main() {
    // `cargo test` runs benches in test mode with `--test`: keep that quick.
    let rounds = if std::env::args().any(|a| a == "--test") { 1 } else { ROUNDS };
    let allocators: [(&str, &'static (dyn GlobalAlloc + Sync)); 3] = [
        ("System", &System),
        ("stats_alloc StatsAlloc<System>", &STATS_ALLOC),
        ("pipeline CountingAllocator", &COUNTING),
    ];
    println!("| allocator | threads | median ns per alloc+free | vs System | fastest round | vs System |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for threads in [1, 2] {
        let mut samples = vec![Vec::new(); allocators.len()];
        for round in 0..rounds {
            for offset in 0..allocators.len() {
                let index = (round + offset) % allocators.len();
                samples[index].push(ns_per_pair(allocators[index].1, threads));
            }
        }
        let figures: Vec<(f64, f64)> = samples.into_iter().map(median_and_min).collect();
        let (system_median, system_min) = figures[0];
        for ((name, _), (median, min)) in allocators.iter().zip(&figures) {
            println!(
                "| {name} | {threads} | {median:.1} | {:.2}× | {min:.1} | {:.2}× |",
                median / system_median,
                min / system_min
            );
        }
    }
}
