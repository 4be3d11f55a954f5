//! What an async stage call costs, next to a sync recorded call and to the tools a user would
//! otherwise pick for futures (`tracing`'s `Instrument` with a registry subscriber, fastrace's
//! `#[trace]` on an `async fn`), in one run.
//!
//! Run: `cargo bench --bench async_call`.
//!
//! Each case awaits its call 400,000 times in a loop on a current-thread tokio runtime (no
//! spawn per call: what is timed is the call, not the scheduler), with the futures completing
//! in one poll (`ready`) or after one `Pending` (`1 yield`: two polls and a wake). Cases are
//! interleaved over rounds; the median of each is shown as time on the calling thread and as
//! whole-process CPU (getrusage), per call.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use pipeline::{stage, AsyncPipeline, CountingAllocator, Profiler};
use tracing::Instrument;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

const CALLS: u64 = 400_000;
const ROUNDS: usize = 7;

#[inline(never)]
fn work(x: u64) -> u64 {
    black_box(x.rotate_left(5) ^ 0x9e37).wrapping_mul(0x100_0000_01b3)
}

/// Pending once (waking itself), then ready: the smallest await that gives the thread back.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

struct SyncStage;

#[stage]
impl SyncStage {
    fn process(&self, x: u64) -> u64 {
        work(x)
    }
}

struct ReadyStage;

#[stage]
impl ReadyStage {
    async fn process(&self, x: u64) -> u64 {
        work(x)
    }
}

struct YieldingStage;

#[stage]
impl YieldingStage {
    async fn process(&self, x: u64) -> u64 {
        YieldOnce(false).await;
        work(x)
    }
}

async fn bare_ready(x: u64) -> u64 {
    work(x)
}

async fn bare_yielding(x: u64) -> u64 {
    YieldOnce(false).await;
    work(x)
}

#[fastrace::trace]
async fn fastrace_ready(x: u64) -> u64 {
    work(x)
}

#[fastrace::trace]
async fn fastrace_yielding(x: u64) -> u64 {
    YieldOnce(false).await;
    work(x)
}

/// Takes fastrace's spans and drops them (its collector thread's work stays in the CPU figure).
struct NullReporter;

impl fastrace::collector::Reporter for NullReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

/// One case: a name and a loop that awaits `CALLS` calls.
type Case = (&'static str, fn(&tokio::runtime::Runtime) -> ());

fn cases() -> Vec<Case> {
    vec![
        ("sync #[stage], recorded", |_| {
            let stage = SyncStage;
            for i in 0..CALLS {
                black_box(stage.process(black_box(i)));
            }
        }),
        ("bare async fn, ready", |rt| {
            rt.block_on(async {
                for i in 0..CALLS {
                    black_box(bare_ready(black_box(i)).await);
                }
            })
        }),
        ("async #[stage], recorded, ready", |rt| {
            rt.block_on(async {
                for i in 0..CALLS {
                    black_box(ReadyStage.process(black_box(i)).await);
                }
            })
        }),
        ("tracing Instrument, ready", |rt| {
            rt.block_on(async {
                for i in 0..CALLS {
                    let span = tracing::info_span!("ReadyStage");
                    black_box(bare_ready(black_box(i)).instrument(span).await);
                }
            })
        }),
        ("fastrace #[trace], ready", |rt| {
            rt.block_on(async {
                let mut root = None;
                for i in 0..CALLS {
                    if i % common::FASTRACE_CALLS_PER_ROOT == 0 {
                        drop(root.take()); // the guard first, then the span: the root reports
                        let span = fastrace::Span::root(
                            "root",
                            fastrace::collector::SpanContext::random(),
                        );
                        root = Some((span.set_local_parent(), span));
                    }
                    black_box(fastrace_ready(black_box(i)).await);
                }
                drop(root);
                // Its collector's work on this case's spans is this case's cost, not the next's.
                fastrace::flush();
            })
        }),
        ("bare async fn, 1 yield", |rt| {
            rt.block_on(async {
                for i in 0..CALLS {
                    black_box(bare_yielding(black_box(i)).await);
                }
            })
        }),
        ("async #[stage], recorded, 1 yield", |rt| {
            rt.block_on(async {
                for i in 0..CALLS {
                    black_box(YieldingStage.process(black_box(i)).await);
                }
            })
        }),
        ("tracing Instrument, 1 yield", |rt| {
            rt.block_on(async {
                for i in 0..CALLS {
                    let span = tracing::info_span!("YieldingStage");
                    black_box(bare_yielding(black_box(i)).instrument(span).await);
                }
            })
        }),
        ("fastrace #[trace], 1 yield", |rt| {
            rt.block_on(async {
                let mut root = None;
                for i in 0..CALLS {
                    if i % common::FASTRACE_CALLS_PER_ROOT == 0 {
                        drop(root.take()); // the guard first, then the span: the root reports
                        let span = fastrace::Span::root(
                            "root",
                            fastrace::collector::SpanContext::random(),
                        );
                        root = Some((span.set_local_parent(), span));
                    }
                    black_box(fastrace_yielding(black_box(i)).await);
                }
                drop(root);
                // Its collector's work on this case's spans is this case's cost, not the next's.
                fastrace::flush();
            })
        }),
        ("AsyncPipeline::run, 1 async stage, ready", |rt| {
            let pipeline = AsyncPipeline::new().stage_async(ReadyStage);
            rt.block_on(async {
                for i in 0..CALLS {
                    black_box(pipeline.run(black_box(i)).await.expect("passes"));
                }
            })
        }),
    ]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    // tracing's spans go to a registry (span bookkeeping, no output), as in a service whose
    // subscriber has layers that ignore these spans; fastrace reports to nowhere.
    let subscriber = tracing_subscriber::registry();
    let _tracing = tracing::subscriber::set_default(subscriber);
    fastrace::set_reporter(NullReporter, fastrace::collector::Config::default());
    let session = Profiler::new().start().expect("a session");
    let cases = cases();
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (index, (_, run)) in cases.iter().enumerate() {
            let (started, cpu_before) = (Instant::now(), common::process_cpu_ns());
            run(&runtime);
            let cpu_used = common::process_cpu_ns() - cpu_before;
            wall[index].push(started.elapsed().as_nanos() as f64 / CALLS as f64);
            cpu[index].push(cpu_used as f64 / CALLS as f64);
        }
    }
    let report = session.finish().expect("finish");
    let sync_cpu = common::median(cpu[0].clone());
    println!(
        "{CALLS} calls per case, median of {ROUNDS} rounds, current-thread tokio runtime \
         (`cargo bench --bench async_call`)\n"
    );
    println!("{:<44}{:>14}{:>16}{:>12}", "case", "ns/call", "CPU ns/call", "× sync");
    for (index, (name, _)) in cases.iter().enumerate() {
        let (wall, cpu) = (common::median(wall[index].clone()), common::median(cpu[index].clone()));
        println!("{name:<44}{wall:>14.1}{cpu:>16.1}{:>12.2}", cpu / sync_cpu);
    }
    let calls = |name: &str| report.stage(name).map_or(0, |stage| stage.timing.calls);
    println!(
        "\nrecorded calls: SyncStage {}, ReadyStage {}, YieldingStage {} (every call counted)",
        calls("SyncStage"),
        calls("ReadyStage"),
        calls("YieldingStage")
    );
}
