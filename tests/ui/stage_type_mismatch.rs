// Two stages whose types do not chain: `Parse` hands on a `Tx`, `Score` takes an `Enriched`.
use pipeline::{stage, Pipeline};

struct Tx {
    amount: u64,
}

struct Enriched {
    amount: u64,
    region: &'static str,
}

struct Parse;

#[stage]
impl Parse {
    fn process(&self, line: String) -> Tx {
        Tx { amount: line.len() as u64 }
    }
}

struct Score;

#[stage]
impl Score {
    fn process(&self, order: Enriched) -> u64 {
        order.amount + order.region.len() as u64
    }
}

fn main() {
    let _pipeline = Pipeline::new().stage(Parse).stage(Score);
}
