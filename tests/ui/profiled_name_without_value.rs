use pipeline::profiled;

#[profiled(name)]
fn score() -> u64 {
    1
}

fn main() {}
