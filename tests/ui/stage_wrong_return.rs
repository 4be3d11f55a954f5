use pipeline::stage;

struct Scorer;

#[stage]
impl Scorer {
    fn process(&self, event: String) -> usize {
        event.len()
    }
}

fn main() {}
