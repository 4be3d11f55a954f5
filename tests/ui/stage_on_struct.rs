use pipeline::stage;

#[stage]
struct FraudStage {
    limit: u64,
}

fn main() {}
