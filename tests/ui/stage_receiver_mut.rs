use pipeline::stage;

struct Counter {
    seen: u64,
}

#[stage]
impl Counter {
    fn process(&mut self, event: u64) -> u64 {
        self.seen += 1;
        event
    }
}

fn main() {}
