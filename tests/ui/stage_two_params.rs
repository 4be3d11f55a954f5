use pipeline::stage;

struct FraudStage;

#[stage]
impl FraudStage {
    fn process(&self, event: u64, limit: u64) -> u64 {
        event.min(limit)
    }
}

fn main() {}
