//! A stage that keeps memory across calls: a "recent orders" cache that only ever grows. The
//! report flags it: retained bytes per call, and a heap that still holds them at the end.
//!
//! Run: `cargo run --release --example memory_growth`

use std::sync::Mutex;

use pipeline::{stage, CountingAllocator, Pipeline, Profiler};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

#[derive(Clone, Debug)]
pub struct Order {
    pub id: u64,
    pub note: String,
}

/// Remembers every order it sees "for deduplication", and never forgets one.
#[derive(Default)]
pub struct RecentOrders {
    seen: Mutex<Vec<String>>,
}

#[stage]
impl RecentOrders {
    fn process(&self, order: Order) -> Order {
        self.seen.lock().unwrap().push(format!("order-{}-{}", order.id, order.note));
        order
    }
}

/// Allocates per order too, but the memory leaves with the order: not retention.
#[derive(Default)]
pub struct Annotate;

#[stage]
impl Annotate {
    fn process(&self, mut order: Order) -> Order {
        order.note = format!("{} (checked)", order.note);
        order
    }
}

fn main() -> Result<(), pipeline::Error> {
    let pipeline = Pipeline::new().stage(Annotate).stage(RecentOrders::default());
    let profiler = Profiler::new().start()?;
    for id in 0..20_000 {
        let _ = pipeline.run(Order { id, note: "express delivery".to_owned() });
    }
    let report = profiler.finish()?;
    println!("{report}");
    Ok(())
}
