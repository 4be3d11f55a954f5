use pipeline::stage;

struct FraudStage;

#[stage]
impl FraudStage {
    fn run(&self, event: u64) -> u64 {
        event
    }
}

fn main() {}
