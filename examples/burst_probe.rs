use pipeline::{profiled, Profiler};
use std::sync::Barrier;

#[global_allocator]
static GLOBAL: pipeline::CountingAllocator = pipeline::CountingAllocator::system();

#[profiled]
fn work(n: u64) -> u64 {
    std::hint::black_box(n * 3)
}

fn main() {
    let threads: usize = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(512);
    let calls: u64 = std::env::args().nth(2).map(|a| a.parse().unwrap()).unwrap_or(20);
    let session = Profiler::new().chrome_trace("/tmp/burst.json").start().unwrap();
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for i in 0..calls { work(i); }
                barrier.wait();
            });
        }
    });
    let report = session.finish().unwrap();
    eprintln!("calls {} trace {:?}", report.outside_stages[0].timing.calls, report.trace);
}
