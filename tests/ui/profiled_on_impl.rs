use pipeline::profiled;

struct Scorer;

#[profiled]
impl Scorer {
    fn score(&self) -> u64 {
        1
    }
}

fn main() {}
