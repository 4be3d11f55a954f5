use pipeline::profiled;

#[profiled(name = 5)]
fn score() -> u64 {
    1
}

fn main() {}
