use pipeline::profiled;

#[profiled(name = "a" "b")]
fn score() -> u64 {
    1
}

fn main() {}
