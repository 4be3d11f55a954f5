use pipeline::profiled;

#[profiled]
struct Scorer {
    weight: u64,
}

fn main() {}
