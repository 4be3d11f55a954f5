use pipeline::stage;

struct Logger;

#[stage]
impl Logger {
    fn process(&self, event: u64) {
        println!("{event}");
    }
}

fn main() {}
