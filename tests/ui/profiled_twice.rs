use pipeline::profiled;

#[profiled]
#[profiled]
fn score() -> u64 {
    1
}

fn main() {}
