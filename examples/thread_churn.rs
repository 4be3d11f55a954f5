//! Probe: RSS while many short-lived threads record.
use pipeline::{profiled, Profiler};

#[global_allocator]
static GLOBAL: pipeline::CountingAllocator = pipeline::CountingAllocator::system();

#[profiled]
fn work(n: u64) -> u64 {
    std::hint::black_box(n * 3)
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let total: usize = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(20_000);
    let trace = std::env::args().nth(2).is_some_and(|a| a == "trace");
    let mut profiler = Profiler::new();
    if trace { profiler = profiler.chrome_trace("/tmp/churn.json"); }
    let none = std::env::args().nth(2).is_some_and(|a| a == "none");
    let session = (!none).then(|| profiler.start().unwrap());
    let mut done = 0;
    while done < total {
        std::thread::scope(|s| { for _ in 0..8 { s.spawn(|| for i in 0..10 { work(i); }); } });
        done += 8;
        if done % 2000 == 0 || done == 8 { { let h = pipeline::alloc::heap(); eprintln!("{done} threads: {} KB rss, live {} B, profiler {} B", rss_kb(), h.live_bytes, h.profiler_bytes); } }
    }
    let Some(session) = session else { return };
    let report = session.finish().unwrap();
    let calls: u64 = report.outside_stages.iter().map(|f| f.timing.calls).sum();
    eprintln!("trace {:?}", report.trace);
    eprintln!("calls {calls} {:?}", report.outside_stages[0].timing);
}
