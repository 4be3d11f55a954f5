use pipeline::stage;

struct Fetcher {
    seen: u64,
}

#[stage]
impl Fetcher {
    async fn process(&mut self, event: u64) -> u64 {
        self.seen += 1;
        event
    }
}

fn main() {}
