use pipeline::stage;

struct FraudStage;

#[stage(name = "", name = "fraud")]
impl FraudStage {
    fn process(&self, event: u64) -> u64 {
        event
    }
}

struct Ranking;

#[stage(name = "ranking", name = "rank")]
impl Ranking {
    fn process(&self, event: u64) -> u64 {
        event
    }
}

fn main() {}
