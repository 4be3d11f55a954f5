use pipeline::profiled;

#[profiled(level = "debug")]
fn score() -> u64 {
    1
}

fn main() {}
