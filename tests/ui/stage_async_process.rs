use pipeline::stage;

struct Fetcher;

#[stage]
impl Fetcher {
    async fn process(&self, event: u64) -> u64 {
        event
    }
}

fn main() {}
