//! Launch day: orders flow through ranking, fraud checks and enrichment. One stage hides a heavy
//! step inside a `#[profiled]` function; the report finds it instead of people guessing.
//!
//! Run: `cargo run --release --example launch_day`

use std::hint::black_box;

use pipeline::{profiled, stage, CountingAllocator, Pipeline, Profiler, Report, StageError};

// One line makes every memory figure in the report real: per-call allocations, live/peak heap.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

#[derive(Clone, Debug)]
pub struct Order {
    pub id: u64,
    pub user: String,
    pub amount: u64,
    pub rank: u64,
    pub region: Option<String>,
}

/// Ranks orders by a cheap function of the amount.
#[derive(Default)]
pub struct RankingStage;

#[stage]
impl RankingStage {
    fn process(&self, mut order: Order) -> Order {
        order.rank = rank(&order);
        order
    }
}

#[profiled]
fn rank(order: &Order) -> u64 {
    order.amount.rotate_left(7) ^ order.id
}

/// Scores every order for fraud; the scoring model is the heavy step nobody suspected.
pub struct FraudStage {
    pub limit: u64,
}

#[stage]
impl FraudStage {
    fn process(&self, order: Order) -> Result<Order, StageError> {
        if fraud_score(&order) % 100 > self.limit {
            return Err(StageError::rejected("fraud score over limit"));
        }
        Ok(order)
    }
}

/// A synthetic scoring model: a few thousand rounds of mixing per order.
#[profiled]
fn fraud_score(order: &Order) -> u64 {
    let mut h = order.amount ^ 0x9e37_79b9_7f4a_7c15;
    for round in 0..20_000u64 {
        h = black_box(h.rotate_left(5) ^ round).wrapping_mul(0x100_0000_01b3);
    }
    h ^ order.user.len() as u64
}

/// Adds the customer's region from a small in-memory directory.
#[derive(Default)]
pub struct EnrichmentStage;

#[stage]
impl EnrichmentStage {
    fn process(&self, mut order: Order) -> Order {
        order.region = Some(format!("{}/{}", lookup_region(&order.user), order.user));
        order
    }
}

#[profiled]
fn lookup_region(user: &str) -> &'static str {
    const REGIONS: [&str; 4] = ["eu-west", "us-east", "ap-south", "sa-east"];
    REGIONS[user.bytes().map(usize::from).sum::<usize>() % REGIONS.len()]
}

fn orders(count: u64) -> impl Iterator<Item = Order> {
    const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
    (0..count).map(|id| Order {
        id,
        user: USERS[(id % 5) as usize].to_owned(),
        amount: 10 + (id * 37) % 990,
        rank: 0,
        region: None,
    })
}

/// What one run of the scenario produced.
pub struct Outcome {
    pub completed: u64,
    pub rejected: u64,
    pub report: Report,
}

/// Runs `count` orders through ranking, fraud and enrichment under the profiler.
pub fn run_scenario(count: u64) -> Result<Outcome, pipeline::Error> {
    let pipeline =
        Pipeline::new().stage(RankingStage).stage(FraudStage { limit: 95 }).stage(EnrichmentStage);

    let profiler = Profiler::new().start()?;
    let (mut completed, mut rejected) = (0, 0);
    for order in orders(count) {
        match pipeline.run(order) {
            Ok(_) => completed += 1,
            Err(_) => rejected += 1,
        }
    }
    let report = profiler.finish()?;
    Ok(Outcome { completed, rejected, report })
}

#[allow(dead_code)] // tests include this file as a module and call `run_scenario` directly
fn main() -> Result<(), pipeline::Error> {
    let Outcome { completed, rejected, report } = run_scenario(2_000)?;
    println!("Launch day: {completed} orders completed, {rejected} rejected.\n");
    println!("{report}");
    Ok(())
}
