use pipeline::stage;

struct Raw;

#[stage]
impl Raw {
    const unsafe fn process(&self, event: u64) -> u64 {
        event
    }
}

fn main() {}
