use std::rc::Rc;

use pipeline::stage;

struct Cache {
    shared: Rc<Vec<u64>>,
}

#[stage]
impl Cache {
    fn process(&self, event: u64) -> u64 {
        event + self.shared.len() as u64
    }
}

fn main() {}
