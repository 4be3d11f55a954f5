use pipeline::{profiled, stage};

struct FraudStage;

#[stage]
impl FraudStage {
    #[profiled]
    fn process(&self, event: u64) -> u64 {
        event
    }
}

fn main() {}
