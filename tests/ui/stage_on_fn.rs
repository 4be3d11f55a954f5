use pipeline::stage;

#[stage]
fn process(event: u64) -> u64 {
    event
}

fn main() {}
