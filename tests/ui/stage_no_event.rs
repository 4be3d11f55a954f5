use pipeline::stage;

struct Ticker;

#[stage]
impl Ticker {
    fn process(&self) -> u64 {
        1
    }
}

fn main() {}
