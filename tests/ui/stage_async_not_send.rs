use std::rc::Rc;

use pipeline::stage;

struct Fetcher;

async fn fetch(id: u64) -> u64 {
    id
}

#[stage]
impl Fetcher {
    async fn process(&self, event: u64) -> u64 {
        // An `Rc` held across an await: the future cannot move between the runner's threads.
        let cached = Rc::new(event);
        fetch(*cached).await + *cached
    }
}

fn main() {}
