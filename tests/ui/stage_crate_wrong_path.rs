// `crate = path` is where the expansion looks for the facade: a path that does not lead to it is
// reported at that path.
use pipeline::stage;

mod toolkit {}

struct FraudStage;

#[stage(crate = crate::toolkit)]
impl FraudStage {
    fn process(&self, event: u64) -> u64 {
        event
    }
}

fn main() {}
