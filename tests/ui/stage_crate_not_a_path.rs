use pipeline::stage;

struct FraudStage;

#[stage(crate = "pipeline")]
impl FraudStage {
    fn process(&self, event: u64) -> u64 {
        event
    }
}

fn main() {}
