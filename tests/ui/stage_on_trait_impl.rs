use pipeline::{stage, Stage, StageError};

struct FraudStage;

#[stage]
impl Stage<u64> for FraudStage {
    fn name(&self) -> &str {
        "fraud"
    }
    fn process(&self, event: u64) -> Result<u64, StageError> {
        Ok(event)
    }
}

fn main() {}
