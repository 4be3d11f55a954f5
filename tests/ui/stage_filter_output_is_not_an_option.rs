// A filter hands on the value inside the `Option`: the next stage takes `Tx`, not `Option<Tx>`.
use pipeline::{stage, Pipeline};

struct Tx {
    amount: u64,
}

struct Large;

#[stage]
impl Large {
    fn process(&self, tx: Tx) -> Option<Tx> {
        (tx.amount > 100).then_some(tx)
    }
}

struct Audit;

#[stage]
impl Audit {
    fn process(&self, tx: Option<Tx>) -> u64 {
        tx.map_or(0, |tx| tx.amount)
    }
}

fn main() {
    let _pipeline = Pipeline::new().stage(Large).stage(Audit);
}
