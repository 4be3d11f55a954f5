use pipeline::stage;

struct Printer;

#[stage]
impl Printer {
    fn process(&self, event: impl std::fmt::Debug) -> u64 {
        println!("{event:?}");
        0
    }
}

fn main() {}
